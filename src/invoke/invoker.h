// The invocation pipeline, without HTTP: everything between a chosen version and a finished run.
// The API's invoke, batch, replay and playground routes and the job runner all go through it:
//
//     run     = invoker.prepare(call)       // policy snapshot, limits, capabilities, breaker,
//                                           // quota, cache (or a Refusal: nothing runs)
//     result  = run.cached ? *run.cached : executor.run(run.request)
//     done    = invoker.finish(run, result) // breaker, anomalies, cache, redaction, usage,
//                                           // metrics, stored run
//
// What it promises: the same preparation and bookkeeping for every caller, so that a job runs
// exactly as POST …/invoke would; refusals (version disabled or unapproved, circuit open, over
// quota) come back as data, before anything ran. What it never does: HTTP (no status, no header,
// no response: api/run_answers.h writes results out for the API and the jobs), choose a version
// (the registry and the caller do), or audit who called (the caller's edge does, save the
// quota entries and the breakers' and alerts' own).
//
// Thread-safe: called at once from the API's invocation threads and the job runners. prepare()
// and finish() never wait for a run; they may wait on the store (the audit trail, an alias
// rolled back). A Run holds the tenant's concurrency slot and its breaker's probe place until it
// is finished or destroyed.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "invocation/executor.h"
#include "invocation/invocation.h"
#include "invoke/results.h"
#include "policy/policy_service.h"
#include "sched/admission.h"
#include "store/store.h"

namespace corral {
namespace alerts {
class AnomalyDetector;
class AlertWebhook;
}  // namespace alerts
namespace sched {
struct Transition;
}
namespace audit {
class AuditTrail;
}
namespace broker {
class Broker;
class ServiceFault;
}  // namespace broker
namespace cache {
class ResultCache;
}
namespace metrics {
class Registry;
}
namespace registry {
class Registry;
}
namespace runs {
class RunRecorder;
}
namespace sched {
class CircuitBreakers;
}
namespace usage {
class UsageLedger;
}
namespace alerts {
struct Change;
}
namespace api {
class ThrottledEvents;
}
}  // namespace corral

namespace corral::invoke {

// What corrald gives the invoker. Pointers may be null in test setups: without a policy service
// the built-in safe default applies, and each other piece missing is skipped (nothing
// quarantined, admitted, cached, stored, counted, alerted).
struct Context {
  store::Store& store;
  audit::AuditTrail& audit;
  registry::Registry& registry;
  metrics::Registry& metrics;
  // corrald's own limits: the ceiling of every tenant's, and the playground's.
  LimitsPolicy limits;
  policy::PolicyService* policy = nullptr;
  broker::Broker* broker = nullptr;
  sched::Admission* admission = nullptr;
  sched::CircuitBreakers* breakers = nullptr;
  cache::ResultCache* cache = nullptr;
  runs::RunRecorder* runs = nullptr;
  usage::UsageLedger* usage = nullptr;
  alerts::AnomalyDetector* anomalies = nullptr;
  alerts::AlertWebhook* alert_webhook = nullptr;
  // Quota refusals as throttled log events (api/events.h); none when null.
  std::shared_ptr<api::ThrottledEvents> quota_events = nullptr;
  // How a finished run is written down for its stored run: the document its caller is shown
  // (api::run_document), so that a stored run reads as the answer did. Without it, no run is
  // stored.
  std::function<nlohmann::json(const Finished&)> document = {};
};

// Who asks for a run, for the checks and audit entries that depend on it.
struct Caller {
  // The principal quota warnings and rejections are audited under: a token's id, or a job's
  // "job:<id>".
  std::string principal;
  // The target those entries name (the request's path, or the job's).
  std::string audit_target;
  // A version pending review runs only for callers who may run it (publishers, reviewers, work
  // accepted earlier): false for an invoker's token while the policy requires approval.
  bool may_run_pending = true;
  // Admission by the tenant's quotas; false for work whose submission was admitted (jobs).
  bool by_quota = true;
};

// One run of a stored version.
struct Call {
  store::Tenant tenant;
  store::ScriptVersion version;
  nlohmann::json input;
  // The caller's "limits" request; the policy's apply to what it leaves out.
  nlohmann::json limits = nlohmann::json::object();
  // The alias the caller named ("" for a version by number): auto-rollback reports its move.
  std::string alias = {};
  // Members the caller's document carries (script, version, alias, canary…), passed through.
  nlohmann::json labels = nlohmann::json::object();
  std::string invocation_id = {};  // empty: a new one
  Caller caller = {};
};

// A run of source that is no stored version (POST /v1/run): no breaker, cache or stored run.
struct PlaygroundCall {
  InvocationRequest request;  // tenant: the caller's tenant id, or kPlaygroundTenant
  std::string quota_tenant;   // whose quotas admit it (and whom metrics charge)
  Caller caller;
};

class Invoker;

// A prepared run: its request for the executor, or a result the cache had. Move-only; holds the
// tenant's concurrency slot, the breaker's probe place and the in-flight count until finished or
// destroyed.
class Run {
 public:
  InvocationRequest request;
  std::optional<InvocationResult> cached;

  Run(Run&&) noexcept;
  Run& operator=(Run&&) noexcept;
  ~Run();

 private:
  friend class Invoker;
  struct State;
  Run();
  std::unique_ptr<State> state_;
};

using Prepared = std::variant<Run, Refusal>;

class Invoker {
 public:
  explicit Invoker(Context context);

  // The policy in force now, the tenant's limits from it bounded by corrald's, the capabilities
  // it grants the version's manifest, the breaker, quota admission, and the result cache. Throws
  // InvalidRequest for an input over the policy's input_bytes or a limits request out of bounds.
  Prepared prepare(Call call);
  Prepared prepare(PlaygroundCall call);

  // The run's bookkeeping: breaker, anomalies, cache, redaction, usage, metrics, stored run.
  // `result` is ignored for a cached run (pass *run.cached). Never throws for a store that
  // cannot be written: the run is recorded as well as it can be.
  Finished finish(Run& run, InvocationResult result);

  // A stored version by tenant, script and number, prepared, run on `executor` and finished:
  // what a job does. Refusal as prepare()'s; throws registry::Refusal for a version that does
  // not exist, InvalidRequest as prepare().
  std::variant<Finished, Refusal> run_stored(const store::Tenant& tenant, const std::string& script,
                                             int64_t version, const nlohmann::json& input,
                                             const std::string& invocation_id, Caller caller,
                                             Executor& executor);

  // Whether `version` may run for `caller` under `tenant_policy` (not disabled; approved, or the
  // caller may run it pending): what prepare() checks first, for callers that check before they
  // accept work (a batch, a job's submission).
  std::optional<Refusal> check_runnable(const store::ScriptVersion& version,
                                        const policy::TenantPolicy& tenant_policy,
                                        const Caller& caller, const nlohmann::json& labels) const;

  // The policy in force now: taken once per run, which then runs under it to the end.
  std::shared_ptr<const policy::Snapshot> policy_snapshot() const;

  // Admission by the tenant's quotas (sched/admission.h), as prepare() applies it: a ticket to
  // hold until the work ends (none without an Admission), or an over_quota Refusal. Warnings and
  // rejections are counted, and the first of a tenant and quota in a minute audited under the
  // caller. For work with a rate of its own (a publish's check run): its refusal is not charged
  // to the tenant's invocations. `script` is whose invocations a refusal is charged to.
  std::variant<std::optional<sched::Ticket>, Refusal> admit(
      const std::string& tenant_name, const policy::Quotas& quotas, const Caller& caller,
      const std::string& script, sched::Admission::Rate rate = sched::Admission::Rate::invocations);

 private:
  void store_run(const Run::State& state, const Finished& finished);
  void report_breaker_transition(const store::Tenant& tenant, const sched::Transition& transition,
                                 const std::string& alias,
                                 std::optional<AutoRollback>& rolled_back);
  void watch_for_anomalies(const Run::State& state, const InvocationResult& result,
                           Finished& finished);
  void report_alert(const Run::State& state, const alerts::Change& change, Finished& finished);

  Context context_;
};

}  // namespace corral::invoke
