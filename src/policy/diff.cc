// diff(): both documents are resolved and flattened to "path → value (and the rule that set it)",
// and the flat lists compared.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "policy/policy.h"

namespace corral::policy {

namespace {

struct Flat {
  std::string value;
  std::string source;
};

// "limits.fuel" → {"1000000", "tenants.acme.limits.fuel"}, "capabilities.kv" → "granted" or
// "not granted", and each parameter of a granted capability under it.
using Flattened = std::map<std::string, Flat>;

std::string show(int64_t value) { return std::to_string(value); }
std::string show(bool value) { return value ? "true" : "false"; }
std::string show(double value) {
  if (value == std::floor(value) && std::abs(value) < 1e15)
    return std::to_string(static_cast<int64_t>(value));
  char buffer[32];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, end);
}
std::string show(const std::vector<std::string>& values) {
  std::string out = "[";
  for (const auto& value : values) out += (out.size() == 1 ? "" : ", ") + value;
  return out + "]";
}
template <typename T, typename Text>
std::string show_each(const std::vector<T>& values, Text text) {
  std::vector<std::string> texts;
  for (const auto& value : values) texts.push_back(text(value));
  return show(texts);
}

std::string show(Containment value) { return value == Containment::quarantine ? "auto" : "none"; }

template <typename T>
void put(Flattened& flat, const std::string& path, const Setting<T>& setting) {
  flat[path] = {show(setting.value), setting.source};
}

void put_grant(Flattened& flat, const TenantPolicy& policy, const std::string& name,
               const std::string& source, const std::map<std::string, std::string>& parameters) {
  std::string path = "capabilities." + name;
  if (source.empty()) {
    auto revoked = policy.revoked.find(name);
    flat[path] = {"not granted", revoked == policy.revoked.end() ? kBuiltIn : revoked->second};
    return;
  }
  flat[path] = {"granted", source};
  for (const auto& [key, value] : parameters) flat[path + "." + key] = {value, source};
}

Flattened flatten(const TenantPolicy& policy) {
  Flattened flat;
  const Limits& limits = policy.limits;
  put(flat, "limits.fuel", limits.fuel);
  put(flat, "limits.memory_bytes", limits.memory_bytes);
  put(flat, "limits.timeout_ms", limits.timeout_ms);
  put(flat, "limits.output_bytes", limits.output_bytes);
  put(flat, "limits.log_bytes", limits.log_bytes);
  put(flat, "limits.subrequests", limits.subrequests);
  put(flat, "limits.input_bytes", limits.input_bytes);
  put(flat, "limits.batch_inputs", limits.batch_inputs);
  const Quotas& quotas = policy.quotas;
  put(flat, "quotas.rate_per_second", quotas.rate_per_second);
  put(flat, "quotas.burst", quotas.burst);
  put(flat, "quotas.concurrency", quotas.concurrency);
  put(flat, "quotas.cpu_ms_per_minute", quotas.cpu_ms_per_minute);
  put(flat, "quotas.queued_jobs", quotas.queued_jobs);
  put(flat, "quotas.publishes_per_minute", quotas.publishes_per_minute);
  put(flat, "quotas.versions", quotas.versions);
  put(flat, "quotas.version_bytes", quotas.version_bytes);
  put(flat, "quotas.events", quotas.events);
  put(flat, "quotas.event_bytes", quotas.event_bytes);
  put(flat, "quotas.store_write_bytes_per_minute", quotas.store_write_bytes_per_minute);
  put(flat, "quotas.jobs", quotas.jobs);
  put(flat, "quotas.stored_runs", quotas.stored_runs);
  const CircuitBreaker& breaker = policy.circuit_breaker;
  put(flat, "circuit_breaker.failures", breaker.failures);
  put(flat, "circuit_breaker.window_seconds", breaker.window_seconds);
  put(flat, "circuit_breaker.cooldown_seconds", breaker.cooldown_seconds);
  put(flat, "circuit_breaker.probes", breaker.probes);
  put(flat, "cache.enabled", policy.cache.enabled);
  put(flat, "jobs.max_attempts", policy.jobs.max_attempts);
  put(flat, "jobs.webhook_attempts", policy.jobs.webhook_attempts);
  put(flat, "jobs.webhook_backoff_ms", policy.jobs.webhook_backoff_ms);
  put(flat, "jobs.inputs", policy.jobs.inputs);
  put(flat, "runs.keep", policy.runs.keep);
  put(flat, "runs.inputs", policy.runs.inputs);
  const Alerts& alerts = policy.alerts;
  put(flat, "alerts.enabled", alerts.enabled);
  put(flat, "alerts.window_seconds", alerts.window_seconds);
  put(flat, "alerts.min_runs", alerts.min_runs);
  put(flat, "alerts.warmup_runs", alerts.warmup_runs);
  put(flat, "alerts.error_rate_increase", alerts.error_rate_increase);
  put(flat, "alerts.latency_factor", alerts.latency_factor);
  put(flat, "alerts.fuel_factor", alerts.fuel_factor);
  put(flat, "alerts.memory_factor", alerts.memory_factor);
  put(flat, "alerts.contain", alerts.contain);

  put_grant(flat, policy, "log", policy.log.source,
            {{"max_entry_bytes", show(policy.log.max_entry_bytes)}});
  if (const auto& kv = policy.kv) {
    put_grant(flat, policy, "kv", kv->source,
              {{"scope", std::string(to_string(kv->scope))},
               {"max_key_bytes", show(kv->max_key_bytes)},
               {"max_value_bytes", show(kv->max_value_bytes)},
               {"max_keys", show(kv->max_keys)},
               {"max_total_bytes", show(kv->max_total_bytes)}});
  } else {
    put_grant(flat, policy, "kv", "", {});
  }
  if (const auto& http = policy.http) {
    put_grant(flat, policy, "http", http->source,
              {{"allow", show_each(http->allow, [](const OriginPattern& p) { return p.text; })},
               {"allow_private",
                show_each(http->allow_private, [](const AddressRange& r) { return r.text; })},
               {"max_response_bytes", show(http->max_response_bytes)},
               {"timeout_ms", show(http->timeout_ms)},
               {"max_redirects", show(http->max_redirects)},
               {"max_request_bytes", show(http->max_request_bytes)}});
  } else {
    put_grant(flat, policy, "http", "", {});
  }
  if (const auto& emit = policy.emit) {
    put_grant(
        flat, policy, "emit", emit->source,
        {{"topics", show(emit->topics)}, {"max_payload_bytes", show(emit->max_payload_bytes)}});
  } else {
    put_grant(flat, policy, "emit", "", {});
  }
  if (const auto& secrets = policy.secrets) {
    put_grant(flat, policy, "secrets", secrets->source,
              {{"names", secrets->names ? show(*secrets->names) : "all"},
               {"bind", show_each(secrets->bind,
                                  [](const SecretBinding& binding) {
                                    return binding.name + ": " +
                                           show_each(binding.origins,
                                                     [](const OriginPattern& p) { return p.text; });
                                  })},
               {"reference_only", show(secrets->reference_only)}});
  } else {
    put_grant(flat, policy, "secrets", "", {});
  }

  const Governance& governance = policy.governance;
  put(flat, "governance.approval_required", governance.approval_required);
  put(flat, "governance.self_approval_allowed", governance.self_approval_allowed);
  put(flat, "governance.signature_required", governance.signature_required);
  flat["governance.public_keys"] = {
      show_each(governance.public_keys.value, [](const PublicKey& key) { return key.base64; }),
      governance.public_keys.source};
  put(flat, "audit.allowed_capability_calls", policy.audit_allowed_capability_calls);
  return flat;
}

bool is_grant(const std::string& path) {
  return path.starts_with("capabilities.") && path.find('.', 13) == std::string::npos;
}

// Lines for what differs between two flattened policies under `prefix`. With `own` set, only
// values that the tenant's own section decides on either side count, so that what a tenant merely
// inherits is reported once, under defaults.
void compare(const Flattened& before, const Flattened& after, const std::string& prefix,
             const std::string& own, std::vector<std::string>& lines) {
  for (const auto& [path, old_value] : before) {
    auto found = after.find(path);
    if (found == after.end()) continue;  // a parameter of a grant that came or went
    const Flat& new_value = found->second;
    if (old_value.value == new_value.value) continue;
    if (!own.empty() && !old_value.source.starts_with(own) && !new_value.source.starts_with(own))
      continue;
    std::string line = prefix + path + ": ";
    if (is_grant(path)) {
      line += new_value.value == "granted" ? "added" : "removed";
    } else {
      line += old_value.value + " → " + new_value.value;
    }
    lines.push_back(line);
  }
}

}  // namespace

std::vector<std::string> diff(const Policy& before, const Policy& after) {
  std::vector<std::string> lines;
  compare(flatten(before.defaults()), flatten(after.defaults()), "defaults.", "", lines);
  auto before_names = before.tenant_names();
  auto after_names = after.tenant_names();
  auto names_in = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  for (const auto& name : before_names) {
    if (!names_in(after_names, name)) lines.push_back("tenants." + name + ": removed");
  }
  for (const auto& name : after_names) {
    if (!names_in(before_names, name)) {
      lines.push_back("tenants." + name + ": added");
      continue;
    }
    std::string prefix = "tenants." + name + ".";
    compare(flatten(before.for_tenant(name)), flatten(after.for_tenant(name)), prefix, prefix,
            lines);
  }
  return lines;
}

}  // namespace corral::policy
