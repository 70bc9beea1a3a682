#include "policy/policy.h"

namespace corral::policy {

namespace {

// Spells out the built-in values (policy.h), so that the safe default documents itself and every
// resolved value in it names the line that set it.
constexpr std::string_view kSafeDefaultText =
    R"(# corral's safe default policy: in force when corrald starts without --policy.
# Scripts get ctx.log and nothing else, small limits, and every version must be approved by a
# reviewer other than its publisher before an invoker may run it.
defaults:
  limits:
    fuel: 10000000          # Lua instructions per run
    memory_bytes: 33554432  # 32 MiB of Lua heap
    timeout_ms: 1000
    output_bytes: 262144    # 256 KiB
    log_bytes: 16384        # 16 KiB
    subrequests: 16         # capability calls per run
    input_bytes: 262144     # 256 KiB
    batch_inputs: 100       # inputs of one batch invocation
  quotas:
    rate_per_second: 10
    burst: 20
    concurrency: 4
    cpu_ms_per_minute: 30000
    queued_jobs: 100
    publishes_per_minute: 30
    versions: 1000
    version_bytes: 67108864   # 64 MiB of sources
    events: 10000             # the outbox keeps the newest
    event_bytes: 67108864     # and at most 64 MiB of payloads
    jobs: 10000               # jobs kept, finished ones until their retention
    stored_runs: 10000        # stored runs kept, all scripts together (runs.keep is per script)
    store_write_bytes_per_minute: 67108864  # kv puts and events a minute: 64 MiB
  circuit_breaker:
    failures: 5             # crashed or limit_exceeded runs of one version within the window
    window_seconds: 60
    cooldown_seconds: 30    # then probes are let through
    probes: 1
  cache:
    enabled: true           # results of deterministic, capability-free versions may be cached
  jobs:
    max_attempts: 3         # runs of a job that keeps crashing
    webhook_attempts: 5
    webhook_backoff_ms: 1000  # before the second delivery, doubling each time
    inputs: false           # keep a job's input once it has ended
  runs:
    keep: 20                # last results stored per script
    inputs: false           # their inputs too
  alerts:                   # anomaly alerts per version, against its own baseline
    enabled: true
    window_seconds: 60      # runs are judged a window at a time
    min_runs: 20            # runs in a window before it is judged
    warmup_runs: 100        # runs in the baseline before any alert
    error_rate_increase: 0.2  # error rate above the baseline's + 0.2
    latency_factor: 3       # p99 latency above 3 x the baseline's
    fuel_factor: 3          # mean fuel per run above 3 x the baseline's
    memory_factor: 3        # mean memory peak per run above 3 x the baseline's
    contain: none           # auto: an alert also quarantines the version
  capabilities:
    log: {max_entry_bytes: 4096}
  governance:
    approval_required: true
    self_approval_allowed: false
    signature_required: false
  audit:
    allowed_capability_calls: false
)";

}  // namespace

std::string_view Policy::safe_default_text() { return kSafeDefaultText; }

Policy Policy::safe_default() {
  static const Policy policy = parse(kSafeDefaultText);
  return policy;
}

TenantPolicy Policy::for_tenant(std::string_view tenant_name) const {
  if (auto found = tenants_.find(tenant_name); found != tenants_.end()) return found->second;
  TenantPolicy resolved = defaults_;
  resolved.tenant = std::string(tenant_name);
  return resolved;
}

std::vector<std::string> Policy::tenant_names() const { return tenant_order_; }

bool TenantPolicy::grants(std::string_view capability) const {
  if (capability == "log") return true;
  if (capability == "kv") return kv.has_value();
  if (capability == "http") return http.has_value();
  if (capability == "emit") return emit.has_value();
  if (capability == "secrets") return secrets.has_value();
  return false;
}

}  // namespace corral::policy
