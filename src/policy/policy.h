// The policy: one YAML document in which the operator sets, for every tenant, the limits of a run,
// the quotas, the capabilities a script may be given and the governance of publishing.
// docs/policy.md is its reference; examples/policy.yaml a complete example.
//
// A document holds `defaults` and `tenants: {NAME: {...}}`. A tenant's section overrides the
// defaults key by key: limits, quotas, governance and audit field by field, capabilities grant by
// grant (a tenant's grant replaces the default's whole, parameters it does not give take their
// built-in defaults), and `CAPABILITY: false` revokes a default grant for that tenant. Anything
// neither section gives takes its built-in default (the values of safe_default_text()).
//
// Every resolved value carries the rule that decided it, so that explain() and error messages can
// name it. A Policy is immutable once parsed; share it freely between threads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "policy/grants.h"

namespace corral::policy {

// One thing wrong with a document. line and column are 1-based; 0 when unknown.
struct Problem {
  std::string path;  // e.g. "tenants.acme.limits.fuel"; "" for the document as a whole
  int line = 0;
  int column = 0;
  std::string message;  // what is wrong and what is allowed
};

// A document that cannot be accepted. problems() holds every problem found, in document order;
// reading stops after kMaxProblems, and a last problem without a path says so. what() lists them
// one per line.
class PolicyInvalid : public std::runtime_error {
 public:
  explicit PolicyInvalid(std::vector<Problem> problems);
  const std::vector<Problem>& problems() const { return problems_; }

 private:
  std::vector<Problem> problems_;
};

inline constexpr size_t kMaxProblems = 100;
inline constexpr size_t kMaxDocumentBytes = 1 << 20;

// A resolved value and the rule that decided it: a YAML path ("tenants.acme.limits.fuel",
// "defaults.limits.fuel") or kBuiltIn.
template <typename T>
struct Setting {
  T value{};
  std::string source = kBuiltIn;
};

// Per invocation. Built-in defaults in brackets, allowed range after.
struct Limits {
  Setting<int64_t> fuel{10'000'000};          // Lua instructions; 1000 .. 100,000,000,000
  Setting<int64_t> memory_bytes{32ll << 20};  // Lua heap; 64 KiB .. 1 GiB
  Setting<int64_t> timeout_ms{1000};          // wall time; 1 .. 300,000
  Setting<int64_t> output_bytes{256 << 10};   // encoded output; 1 .. 64 MiB
  Setting<int64_t> log_bytes{16 << 10};       // all log messages of a run; 1 .. 16 MiB
  Setting<int64_t> subrequests{16};           // capability calls per run; 0 .. 1000
  Setting<int64_t> input_bytes{256 << 10};    // encoded input; 1 .. 64 MiB
  Setting<int64_t> batch_inputs{100};         // inputs of one batch invocation; 1 .. 10,000
};

// Per tenant; declared here, enforced by admission (a later issue).
struct Quotas {
  Setting<double> rate_per_second{10};         // invocations; > 0 .. 1,000,000
  Setting<int64_t> burst{20};                  // 1 .. 1,000,000
  Setting<int64_t> concurrency{4};             // runs at once; 1 .. 10,000
  Setting<int64_t> cpu_ms_per_minute{30'000};  // 1 .. 3,600,000
  Setting<int64_t> queued_jobs{100};           // 0 .. 1,000,000
  // Publishing runs the new version's top level in a worker: besides counting against the quotas
  // above, publishes have a rate of their own.
  Setting<int64_t> publishes_per_minute{30};  // 1 .. 10,000
  // What a tenant may keep of versions: their number and their sources' bytes in all.
  Setting<int64_t> versions{1000};             // 1 .. 1,000,000
  Setting<int64_t> version_bytes{64ll << 20};  // 1,024 .. 68,719,476,736 (64 GiB)
  // Events of the outbox kept per tenant, and their payloads' bytes: past either, the oldest are
  // dropped as new ones come.
  Setting<int64_t> events{10'000};           // 1 .. 10,000,000
  Setting<int64_t> event_bytes{64ll << 20};  // 1,024 .. 64 GiB
  // Jobs a tenant keeps in every state (finished ones until their retention passes).
  Setting<int64_t> jobs{10'000};  // 1 .. 10,000,000
  // Stored runs a tenant keeps, all scripts together (besides runs.keep per script): past it, the
  // oldest go.
  Setting<int64_t> stored_runs{10'000};  // 1 .. 10,000,000
  // Bytes a tenant's scripts may write to the store in a minute (kv keys and values put, event
  // topics and payloads emitted): its share of the store's one writer, as cpu_ms_per_minute is
  // its share of the CPUs.
  Setting<int64_t> store_write_bytes_per_minute{64ll << 20};  // 1,024 .. 64 GiB
};

// Per script version (src/sched/circuit_breaker.h): when a version keeps crashing or exceeding its
// limits, its breaker opens and its invocations fail fast until a probe run succeeds.
struct CircuitBreaker {
  // crashed / limit_exceeded outcomes within window_seconds that open the breaker; 1 .. 1000
  Setting<int64_t> failures{5};
  Setting<int64_t> window_seconds{60};    // 1 .. 86,400
  Setting<int64_t> cooldown_seconds{30};  // open this long before probes; 1 .. 86,400
  Setting<int64_t> probes{1};             // runs let through half-open; 1 .. 100
};

// Results of versions whose manifest says `deterministic: true` and that use no capability may be
// answered from corrald's result cache (docs/operations.md, "Result cache").
struct Cache {
  Setting<bool> enabled{true};
};

// Asynchronous jobs (docs/operations.md, "Jobs and webhooks").
struct Jobs {
  Setting<int64_t> max_attempts{3};           // runs of a job ending `crashed`; 1 .. 20
  Setting<int64_t> webhook_attempts{5};       // deliveries tried before one is dead; 1 .. 20
  Setting<int64_t> webhook_backoff_ms{1000};  // before the second try, doubling; 10 .. 3,600,000
  // Keep a job's input once it has ended (in the job and its webhook) until the job is forgotten.
  // Off by default: inputs are the tenant's customers' data, as with runs.inputs.
  Setting<bool> inputs{false};
};

// Anomaly alerts (docs/observability.md, "Anomaly alerts"): each version's runs in a window of
// window_seconds are compared with the version's baseline (its earlier windows), once the baseline
// holds warmup_runs runs and the window min_runs.
enum class Containment { none, quarantine };  // `contain: none` or `contain: auto`
struct Alerts {
  Setting<bool> enabled{true};
  Setting<int64_t> window_seconds{60};       // 1 .. 86,400
  Setting<int64_t> min_runs{20};             // runs in a window before it is judged; 1 .. 1,000,000
  Setting<int64_t> warmup_runs{100};         // baseline runs before any alert; 1 .. 10,000,000
  Setting<double> error_rate_increase{0.2};  // window rate above baseline + this; > 0 .. 1
  Setting<double> latency_factor{3};         // window p99 above this × baseline p99; > 1 .. 1000
  Setting<double> fuel_factor{3};            // mean fuel per run; > 1 .. 1000
  Setting<double> memory_factor{3};          // mean memory peak per run; > 1 .. 1000
  Setting<Containment> contain{Containment::none};
};

// Stored runs (docs/operations.md, "Stored runs and replay"): the last `keep` results per script,
// with their inputs only when `inputs` is true.
struct Runs {
  Setting<int64_t> keep{20};  // 0 .. 1000; 0 stores none
  Setting<bool> inputs{false};
};

struct Governance {
  // A version must be approved before an invoker may run it.
  Setting<bool> approval_required{true};
  // The publisher of a version may approve it.
  Setting<bool> self_approval_allowed{false};
  // A version must carry an Ed25519 signature by one of public_keys; the document is refused when
  // this is true and public_keys is empty.
  Setting<bool> signature_required{false};
  Setting<std::vector<PublicKey>> public_keys;
};

// Everything that applies to one tenant, defaults and overrides merged.
struct TenantPolicy {
  std::string tenant;  // "" for the defaults themselves
  Limits limits;
  Quotas quotas;
  CircuitBreaker circuit_breaker;
  Cache cache;
  Jobs jobs;
  Runs runs;
  Alerts alerts;
  LogGrant log;
  std::optional<KvGrant> kv;
  std::optional<HttpGrant> http;
  std::optional<EmitGrant> emit;
  std::optional<SecretsGrant> secrets;
  // Capabilities revoked with `false` (by the tenant's section, or by the defaults) → the YAML path
  // of that `false`; explain() names it when it denies.
  std::map<std::string, std::string, std::less<>> revoked;
  Governance governance;
  // Allowed capability calls are audited too (denied ones always are).
  Setting<bool> audit_allowed_capability_calls{false};

  // "log" (always), "kv", "http", "emit", "secrets".
  bool grants(std::string_view capability) const;
};

// An answer of explain(): rule is the YAML path that decided, or a sentence when nothing in the
// document did; reason says why in a sentence a person can act on.
struct Decision {
  bool allowed = false;
  std::string rule;
  std::string reason;
};

class Policy {
 public:
  // Validates the whole document and collects every problem before refusing it: YAML syntax,
  // unknown keys (with the nearest known one), wrong types, values out of range, malformed
  // patterns, addresses and keys, tenant names. Throws PolicyInvalid.
  static Policy parse(std::string_view yaml_text);

  // What applies when the operator gives no policy: only ctx.log, the built-in limits and quotas,
  // approval required, no self-approval, no signatures. Equal to parse(safe_default_text()).
  static Policy safe_default();
  static std::string_view safe_default_text();

  // The document exactly as given.
  const std::string& text() const { return text_; }

  // The resolved policy of a tenant; a tenant the document does not name gets the defaults.
  TenantPolicy for_tenant(std::string_view tenant_name) const;
  const TenantPolicy& defaults() const { return defaults_; }
  // Tenants the document names, in order.
  std::vector<std::string> tenant_names() const;

  // Whether `tenant` may do `action`, and the rule that decides. Actions:
  //   capability calls: log.debug log.info log.warn log.error; kv.get kv.put kv.delete kv.list
  //   (optionally followed by a key); http.fetch (optionally followed by a URL, checked against the
  //   allow patterns); emit (optionally followed by a topic); secrets.get (optionally followed by
  //   a name);
  //   API actions: publish, publish_unsigned, invoke_unapproved, self_approve.
  // A target follows the action after a space or a colon ("emit orders.created",
  // "http.fetch:https://api.example.com/x"). Throws std::invalid_argument for an unknown action
  // (listing the known ones), a target an action does not take, or a malformed target.
  Decision explain(std::string_view tenant, std::string_view action) const;

 private:
  Policy() = default;

  std::string text_;
  TenantPolicy defaults_;
  std::map<std::string, TenantPolicy, std::less<>> tenants_;
  std::vector<std::string> tenant_order_;
};

// What changed between two documents, for the audit trail, as lines
// "PATH: BEFORE → AFTER", "PATH: added" or "PATH: removed" (paths as in the document:
// "defaults.limits.fuel", "tenants.acme.capabilities.http", "tenants.bob"). Values are compared
// after resolution, so rewording a document without changing its effect gives no line; a change to
// the defaults is reported once, under defaults, not again for every tenant that inherits it.
std::vector<std::string> diff(const Policy& before, const Policy& after);

}  // namespace corral::policy
