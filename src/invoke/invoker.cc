#include "invoke/invoker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "alerts/alert_webhook.h"
#include "alerts/anomaly_detector.h"
#include "api/events.h"
#include "audit/audit.h"
#include "broker/broker.h"
#include "cache/result_cache.h"
#include "metrics/metrics.h"
#include "registry/registry.h"
#include "runs/run_recorder.h"
#include "sched/circuit_breaker.h"
#include "usage/usage_ledger.h"

namespace corral::invoke {

namespace {

using nlohmann::json;

// A tenant's limits from the policy, bounded by what corrald's workers are built for.
LimitsPolicy limits_for(const policy::TenantPolicy& tenant, const LimitsPolicy& corrald) {
  const policy::Limits& granted = tenant.limits;
  const Limits& ceiling = corrald.maxima;
  Limits limits{.fuel = std::min(granted.fuel.value, ceiling.fuel),
                .memory_bytes = std::min(granted.memory_bytes.value, ceiling.memory_bytes),
                .timeout_ms = std::min(granted.timeout_ms.value, ceiling.timeout_ms),
                .output_bytes = std::min(granted.output_bytes.value, ceiling.output_bytes),
                .log_bytes = std::min(granted.log_bytes.value, ceiling.log_bytes),
                .subrequests = std::min(granted.subrequests.value, ceiling.subrequests)};
  return LimitsPolicy{.defaults = limits, .maxima = limits};
}

bool lowered(const Limits& run, const Limits& policy) {
  return run.fuel < policy.fuel || run.memory_bytes < policy.memory_bytes ||
         run.timeout_ms < policy.timeout_ms || run.output_bytes < policy.output_bytes ||
         run.log_bytes < policy.log_bytes || run.subrequests < policy.subrequests;
}

// What ctx offers a version: the capabilities its manifest asks for, as far as the policy in
// force grants them now (it may have changed since publishing). log is always there.
std::vector<std::string> granted_capabilities(const json& manifest,
                                              const policy::TenantPolicy& tenant) {
  std::vector<std::string> granted;
  if (!manifest.is_object() || !manifest.contains("capabilities") ||
      !manifest.at("capabilities").is_array()) {
    return granted;
  }
  for (const auto& name : manifest.at("capabilities")) {
    if (!name.is_string() || name == "log") continue;
    if (tenant.grants(name.get<std::string>())) granted.push_back(name.get<std::string>());
  }
  return granted;
}

// A version's results may be cached when its manifest says deterministic: true, it is offered no
// capability (log aside: its entries are part of the result), and the tenant's policy allows it.
bool cacheable(const json& manifest, const std::vector<std::string>& capabilities,
               const policy::TenantPolicy& tenant_policy) {
  if (!tenant_policy.cache.enabled.value || !capabilities.empty()) return false;
  if (!manifest.is_object() || !manifest.contains("deterministic") ||
      manifest.at("deterministic") != true) {
    return false;
  }
  // Asked for and no longer granted still counts: the script was written to use it.
  if (manifest.contains("capabilities") && manifest.at("capabilities").is_array()) {
    for (const auto& name : manifest.at("capabilities"))
      if (name != "log") return false;
  }
  return true;
}

std::string which_version(const store::ScriptVersion& version) {
  return "version " + std::to_string(version.version) + " of script \"" + version.script + "\"";
}

// Tenant ids are what the store knows; the playground of an admin has none.
std::string tenant_id_of(const InvocationRequest& invocation) {
  return invocation.tenant == kPlaygroundTenant ? "" : invocation.tenant;
}

}  // namespace

// A run the breaker of its version let through. finish() reports its outcome; destroyed
// unfinished (a quota refused the run, or it failed before running), a probe's place is freed so
// that the breaker is not left waiting for it.
class BreakerPass {
 public:
  BreakerPass(sched::CircuitBreakers* breakers, sched::BreakerKey key,
              policy::CircuitBreaker settings, bool probe)
      : breakers_(breakers), key_(std::move(key)), settings_(std::move(settings)), probe_(probe) {}
  BreakerPass(const BreakerPass&) = delete;
  BreakerPass& operator=(const BreakerPass&) = delete;
  ~BreakerPass() {
    if (breakers_ && probe_ && !finished_)
      breakers_->finish(key_, settings_, true, std::nullopt, sched::BreakerClock::now());
  }
  // nullopt: the run says nothing about the version (it did not run, or ran under limits its
  // caller lowered), so it neither counts as a failure nor decides a probe.
  std::vector<sched::Transition> finish(std::optional<Outcome> outcome) {
    if (!breakers_ || finished_) return {};
    finished_ = true;
    return breakers_->finish(key_, settings_, probe_, outcome, sched::BreakerClock::now());
  }

 private:
  sched::CircuitBreakers* breakers_;
  sched::BreakerKey key_;
  policy::CircuitBreaker settings_;
  bool probe_;
  bool finished_ = false;
};

struct Run::State {
  metrics::Registry* metrics = nullptr;
  std::shared_ptr<const policy::Snapshot> snapshot;
  std::shared_ptr<const policy::TenantPolicy> tenant_policy;
  // A stored version's run; unset in the playground.
  std::optional<store::Tenant> tenant;
  std::optional<store::ScriptVersion> version;
  std::string alias;
  Caller caller;
  // Whom metrics charge: the tenant's name (the quota tenant in the playground) and the script.
  std::string charged_tenant;
  std::string charged_script;
  json labels = json::object();
  LimitsPolicy limits;
  bool limits_from_policy = false;
  bool limits_lowered_by_caller = false;
  json stored_input;
  std::optional<cache::Key> cache_key;
  // Told of capability calls of this run that failed by corral's fault (broker.h).
  std::shared_ptr<broker::ServiceFault> service_fault;
  // The tenant's concurrency slot, held until finish().
  std::optional<sched::Ticket> ticket;
  std::unique_ptr<BreakerPass> breaker;
  // Counted in corral_invocations_in_flight from prepare() until finish() (or destruction).
  bool in_flight = false;
  std::chrono::steady_clock::time_point started;

  ~State() {
    if (in_flight && metrics) metrics->invocation_finished();
  }
};

Run::Run() : state_(std::make_unique<State>()) {}
Run::Run(Run&&) noexcept = default;
Run& Run::operator=(Run&&) noexcept = default;
Run::~Run() = default;

Invoker::Invoker(Context context) : context_(std::move(context)) {}

std::shared_ptr<const policy::Snapshot> Invoker::policy_snapshot() const {
  if (context_.policy) return context_.policy->current();
  static const auto fallback = std::make_shared<const policy::Snapshot>(
      policy::Snapshot{0, policy::Policy::safe_default(), "built-in", 0});
  return fallback;
}

std::optional<Refusal> Invoker::check_runnable(const store::ScriptVersion& version,
                                               const policy::TenantPolicy& tenant_policy,
                                               const Caller& caller, const json& labels) const {
  std::string which = which_version(version);
  if (version.state == store::VersionState::disabled) {
    return Refusal{.reason = Refusal::Reason::version_disabled,
                   .detail = which + " has been disabled",
                   .labels = labels};
  }
  // With approval_required off, a pending version (one published before the switch) may be
  // invoked by anyone who may invoke: that is what explain's invoke_unapproved answers too.
  if (version.state == store::VersionState::pending && !caller.may_run_pending &&
      tenant_policy.governance.approval_required.value) {
    return Refusal{.reason = Refusal::Reason::not_approved,
                   .detail = which +
                             " is pending review; before approval only the tenant's publishers "
                             "and reviewers may invoke it",
                   .labels = labels};
  }
  return std::nullopt;
}

// Admission by the tenant's quotas (src/sched/admission.h) before a run. Only the first rejection
// and the first warning of a tenant and quota in a minute are audited, so that a flood cannot
// grow the audit trail; the metrics count every one.
std::variant<std::optional<sched::Ticket>, Refusal> Invoker::admit(const std::string& tenant_name,
                                                                   const policy::Quotas& quotas,
                                                                   const Caller& caller,
                                                                   const std::string& script,
                                                                   sched::Admission::Rate rate) {
  if (!context_.admission) return std::optional<sched::Ticket>();
  sched::Decision decision =
      context_.admission->admit(tenant_name, quotas, std::chrono::steady_clock::now(), rate);
  if (auto* ticket = std::get_if<sched::Ticket>(&decision)) {
    for (const sched::Warning& warning : ticket->warnings()) {
      context_.metrics.record_quota_warning(warning.quota);
      if (!warning.audit) continue;
      context_.audit.record(caller.principal, tenant_name, "quota.warning", caller.audit_target,
                            audit::Decision::allow,
                            warning.quota + " at " + std::to_string(warning.percent) + "% (" +
                                warning.rule +
                                "); further warnings of this quota within a minute are only "
                                "counted in corral_quota_warnings_total");
    }
    return std::optional<sched::Ticket>(std::move(*ticket));
  }
  const auto& rejection = std::get<sched::Rejection>(decision);
  context_.metrics.record_quota_rejection(rejection.quota);
  if (rate == sched::Admission::Rate::invocations)
    context_.metrics.attribute({tenant_name, script}, Outcome::rejected, std::nullopt, nullptr);
  if (context_.quota_events) {
    context_.quota_events->note(tenant_name + "\n" + rejection.quota,
                                {{"tenant", tenant_name},
                                 {"quota", rejection.quota},
                                 {"rule", rejection.rule},
                                 {"detail", rejection.detail}});
  }
  if (rejection.audit) {
    context_.audit.record(caller.principal, tenant_name, "quota.reject", caller.audit_target,
                          audit::Decision::deny,
                          rejection.detail + " (" + rejection.rule +
                              "); further rejections of this quota within a minute are only "
                              "counted in corral_quota_rejections_total");
  }
  return Refusal{.reason = Refusal::Reason::over_quota,
                 .detail = rejection.detail + " (" + rejection.rule + ")",
                 .retry_after_seconds = rejection.retry_after_seconds,
                 .quota = rejection.quota,
                 .rule = rejection.rule,
                 .tenant_name = tenant_name};
}

Prepared Invoker::prepare(Call call) {
  Run run;
  Run::State& state = *run.state_;
  state.metrics = &context_.metrics;
  auto snapshot = policy_snapshot();
  auto tenant_policy =
      std::make_shared<const policy::TenantPolicy>(snapshot->policy.for_tenant(call.tenant.name));
  const store::ScriptVersion& version = call.version;
  json labels = std::move(call.labels);
  if (auto refusal = check_runnable(version, *tenant_policy, call.caller, labels))
    return std::move(*refusal);
  if (version.state == store::VersionState::deprecated) labels["deprecated"] = true;

  InvocationRequest& invocation = run.request;
  invocation.invocation_id = call.invocation_id.empty() ? new_invocation_id() : call.invocation_id;
  invocation.tenant = call.tenant.id;
  invocation.source = version.source;
  invocation.input = std::move(call.input);
  size_t input_bytes = invocation.input.dump().size();
  if (static_cast<int64_t>(input_bytes) > tenant_policy->limits.input_bytes.value) {
    throw InvalidRequest("input", "the input is " + std::to_string(input_bytes) +
                                      " bytes as JSON, over the policy's input_bytes limit of " +
                                      std::to_string(tenant_policy->limits.input_bytes.value) +
                                      " (" + tenant_policy->limits.input_bytes.source + ")");
  }
  state.limits = limits_for(*tenant_policy, context_.limits);
  state.limits_from_policy = true;
  invocation.limits = state.limits.resolve(call.limits);
  state.limits_lowered_by_caller = lowered(invocation.limits, state.limits.defaults);
  // Parsed once, for the capabilities and for the cache.
  const json manifest = json::parse(version.manifest, nullptr, false);
  invocation.capabilities = granted_capabilities(manifest, *tenant_policy);
  invocation.log_entry_bytes = tenant_policy->log.max_entry_bytes;
  if (context_.broker && !invocation.capabilities.empty()) {
    state.service_fault = std::make_shared<broker::ServiceFault>();
    invocation.capability_handler =
        context_.broker->handler_for({.tenant_id = call.tenant.id,
                                      .tenant_name = call.tenant.name,
                                      .script = version.script,
                                      .invocation_id = invocation.invocation_id,
                                      .policy_version = snapshot->version,
                                      .policy = tenant_policy,
                                      .capabilities = invocation.capabilities,
                                      .subrequests = invocation.limits.subrequests,
                                      .fault = state.service_fault});
  }
  labels["policy_version"] = snapshot->version;
  state.charged_tenant = call.tenant.name;
  state.charged_script = version.script;

  // The circuit breaker: a quarantined version does not run.
  if (context_.breakers) {
    sched::BreakerKey key{call.tenant.id, version.script, version.version};
    const policy::CircuitBreaker& settings = tenant_policy->circuit_breaker;
    sched::Check check = context_.breakers->check(key, settings, sched::BreakerClock::now());
    std::optional<AutoRollback> rolled_back;
    for (const auto& transition : check.transitions)
      report_breaker_transition(call.tenant, transition, call.alias, rolled_back);
    if (auto* pass = std::get_if<sched::Pass>(&check.decision)) {
      state.breaker =
          std::make_unique<BreakerPass>(context_.breakers, std::move(key), settings, pass->probe);
    } else {
      const auto& quarantined = std::get<sched::Quarantined>(check.decision);
      context_.metrics.record_breaker_rejection();
      context_.metrics.attribute({call.tenant.name, version.script}, Outcome::rejected,
                                 std::nullopt, nullptr);
      int64_t half_open_at =
          store::now_ms() +
          std::chrono::duration_cast<std::chrono::milliseconds>(quarantined.half_open_in).count();
      std::string detail = which_version(version) +
                           " is quarantined: its circuit breaker opened after " +
                           std::to_string(quarantined.failures_in_window) +
                           " crashed or limit_exceeded outcome(s) within " +
                           std::to_string(settings.window_seconds.value) + " s (" +
                           settings.failures.source + "); " +
                           (quarantined.state == sched::BreakerState::open
                                ? "probe runs are let through from " + store::iso8601(half_open_at)
                                : "probe runs are under way and decide whether it closes");
      return Refusal{
          .reason = Refusal::Reason::circuit_open,
          .detail = std::move(detail),
          .invocation_id = invocation.invocation_id,
          .policy_version = snapshot->version,
          .retry_after_seconds = quarantined.retry_after_seconds,
          .labels = std::move(labels),
          .breaker = Refusal::Breaker{.script = version.script,
                                      .version = version.version,
                                      .state = std::string(sched::to_string(quarantined.state)),
                                      .failures_in_window = quarantined.failures_in_window,
                                      .window_seconds = settings.window_seconds.value,
                                      .half_open_at_ms = half_open_at,
                                      .rule = settings.failures.source},
          .auto_rollback = rolled_back};
    }
  }

  if (call.caller.by_quota) {
    auto admitted = admit(call.tenant.name, tenant_policy->quotas, call.caller, version.script);
    if (auto* refusal = std::get_if<Refusal>(&admitted)) {
      refusal->invocation_id = invocation.invocation_id;
      refusal->policy_version = snapshot->version;
      refusal->labels = std::move(labels);
      return std::move(*refusal);
    }
    state.ticket = std::move(std::get<std::optional<sched::Ticket>>(admitted));
  }

  if (context_.cache && cacheable(manifest, invocation.capabilities, *tenant_policy)) {
    state.cache_key = cache::ResultCache::key_for(call.tenant.id, version.sha256, invocation.limits,
                                                  invocation.input);
  }
  state.stored_input = tenant_policy->runs.inputs.value ? invocation.input : json();
  if (auto hit = state.cache_key ? context_.cache->find(*state.cache_key) : std::nullopt) {
    context_.metrics.record_cache_lookup("hit");
    hit->invocation_id = invocation.invocation_id;
    hit->policy_version = snapshot->version;
    // Cached under the policy of its run: the log cap in force now applies to it as well.
    cut_log_entries(*hit, invocation.log_entry_bytes);
    run.cached = std::move(hit);
  } else {
    if (state.cache_key) context_.metrics.record_cache_lookup("miss");
    context_.metrics.invocation_started();
    state.in_flight = true;
    state.started = std::chrono::steady_clock::now();
  }
  state.snapshot = std::move(snapshot);
  state.tenant_policy = std::move(tenant_policy);
  state.tenant = std::move(call.tenant);
  state.version = std::move(call.version);
  state.alias = std::move(call.alias);
  state.caller = std::move(call.caller);
  state.labels = std::move(labels);
  return run;
}

Prepared Invoker::prepare(PlaygroundCall call) {
  Run run;
  Run::State& state = *run.state_;
  state.metrics = &context_.metrics;
  auto snapshot = policy_snapshot();
  auto tenant_policy =
      std::make_shared<const policy::TenantPolicy>(snapshot->policy.for_tenant(call.quota_tenant));
  run.request = std::move(call.request);
  run.request.log_entry_bytes = tenant_policy->log.max_entry_bytes;
  state.charged_tenant = call.quota_tenant;
  state.limits = context_.limits;
  auto admitted = admit(call.quota_tenant, tenant_policy->quotas, call.caller, "");
  if (auto* refusal = std::get_if<Refusal>(&admitted)) {
    refusal->invocation_id = run.request.invocation_id;
    refusal->policy_version = snapshot->version;
    refusal->labels = json::object();
    return std::move(*refusal);
  }
  state.ticket = std::move(std::get<std::optional<sched::Ticket>>(admitted));
  context_.metrics.invocation_started();
  state.in_flight = true;
  state.started = std::chrono::steady_clock::now();
  state.snapshot = std::move(snapshot);
  state.tenant_policy = std::move(tenant_policy);
  state.caller = std::move(call.caller);
  return run;
}

Finished Invoker::finish(Run& run, InvocationResult result) {
  Run::State& state = *run.state_;
  Finished finished;
  finished.labels = state.labels;
  finished.policy_version = state.snapshot->version;
  finished.deprecated = state.labels.contains("deprecated");
  finished.limits = state.limits;
  finished.limits_from_policy = state.limits_from_policy;
  const std::string tenant_id = tenant_id_of(run.request);
  const metrics::Registry::Attribution charged{state.charged_tenant, state.charged_script};
  auto count_usage = [&](Outcome outcome, double cpu_ms, int64_t fuel) {
    if (context_.usage && !tenant_id.empty())
      context_.usage->record_invocation(tenant_id, state.charged_script, outcome != Outcome::ok,
                                        cpu_ms, fuel);
  };

  if (run.cached) {
    finished.result = *run.cached;
    finished.cache = Finished::Cache::hit;
    // Served as its own run was answered, under corrald's limits: an ok result names none.
    finished.limits = context_.limits;
    finished.limits_from_policy = false;
    context_.metrics.record_invocation(Outcome::ok, 0);
    context_.metrics.attribute(charged, Outcome::ok, 0.0, nullptr);
    count_usage(Outcome::ok, 0, 0);  // served without a run: no CPU, no fuel
  } else {
    if (state.in_flight) {
      context_.metrics.invocation_finished();
      state.in_flight = false;
    }
    // A script that failed because corral could not store what it asked to (its ctx.kv.put on a
    // full disk) did nothing wrong: its run is corral's failure, rejected, counting against no
    // breaker. A script that handled the failure and returned keeps its result.
    if (result.outcome == Outcome::script_error && state.service_fault) {
      if (auto failure = state.service_fault->storage()) {
        api::log_storage_failure(*failure);
        result.outcome = Outcome::rejected;
        result.retry_after_seconds = kStorageRetryAfterSeconds;
        finished.storage_failure = Finished::StorageFailure{.disk_full = failure->disk_full()};
      }
    }
    if (state.ticket)
      state.ticket->report_cpu(result.stats.cpu_ms, std::chrono::steady_clock::now());
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - state.started).count();
    context_.metrics.record_invocation(result.outcome, seconds);
    context_.metrics.attribute(charged, result.outcome, seconds, &result.stats);
    count_usage(result.outcome, result.stats.cpu_ms, result.stats.fuel_used);
    result.policy_version = state.snapshot->version;
    if (context_.broker && !tenant_id.empty()) {
      try {
        context_.broker->redact(tenant_id, result);
      } catch (const std::exception& error) {
        // A secret that cannot be read might be in the text: say nothing rather than leak it.
        result.logs.clear();
        result.traceback.clear();
        result.message = std::string(
                             "the result was withheld: its secrets could not be read "
                             "for redaction (") +
                         error.what() + ")";
      }
    }
    cut_log_entries(result, run.request.log_entry_bytes);
    if (state.version) {
      // Only the version's own failures count against its breaker: a failure under limits the
      // caller lowered below the policy's (limits.output_bytes: 10, say) is the caller's, and
      // counting it would let any caller quarantine a healthy version for everyone, and move its
      // aliases back.
      if (state.breaker) {
        bool failure =
            result.outcome == Outcome::crashed || result.outcome == Outcome::limit_exceeded;
        std::optional<Outcome> counted = result.outcome;
        if (failure && state.limits_lowered_by_caller) counted = std::nullopt;
        for (const auto& transition : state.breaker->finish(counted))
          report_breaker_transition(*state.tenant, transition, state.alias, finished.auto_rollback);
      }
      if (!state.limits_lowered_by_caller) watch_for_anomalies(state, result, finished);
      if (state.cache_key) context_.cache->insert(*state.cache_key, result);
    }
    if (state.cache_key) finished.cache = Finished::Cache::miss;
    finished.result = std::move(result);
  }
  if (state.ticket) finished.quota_warnings = state.ticket->warnings();
  // The tenant's concurrency slot is free once the run is.
  state.ticket.reset();
  // Only a cacheable run can change the cache: other invocations skip its lock.
  if (state.cache_key) {
    auto stats = context_.cache->stats();
    context_.metrics.set_cache_size(static_cast<int64_t>(stats.entries),
                                    static_cast<int64_t>(stats.bytes));
  }
  store_run(state, finished);
  return finished;
}

void Invoker::store_run(const Run::State& state, const Finished& finished) {
  if (!state.version || !context_.runs || !context_.document) return;
  const policy::Runs& runs = state.tenant_policy->runs;
  if (runs.keep.value <= 0 || finished.result.invocation_id.empty()) return;
  context_.runs->record(
      {.tenant_id = state.tenant->id,
       .script = state.version->script,
       .id = finished.result.invocation_id,
       .version = state.version->version,
       .time_ms = store::now_ms(),
       .outcome = std::string(to_string(finished.result.outcome)),
       .input =
           runs.inputs.value ? std::optional<std::string>(state.stored_input.dump()) : std::nullopt,
       .result = context_.document(finished).dump(-1, ' ', false, json::error_handler_t::replace)},
      runs.keep.value, state.tenant_policy->quotas.stored_runs.value);
  context_.metrics.set_stored_runs_dropped(static_cast<int64_t>(context_.runs->dropped()));
}

// Counts a transition; audits opening and closing (by principal "system", the breaker decided),
// and on opening rolls back the aliases that ask for it, reporting in `rolled_back` the move of
// `alias`, the alias the call named.
void Invoker::report_breaker_transition(const store::Tenant& tenant,
                                        const sched::Transition& transition,
                                        const std::string& alias,
                                        std::optional<AutoRollback>& rolled_back) {
  context_.metrics.record_breaker_transition(sched::to_string(transition.to));
  context_.metrics.set_quarantined_versions(static_cast<int64_t>(context_.breakers->quarantined()));
  const std::string& script = transition.key.script;
  int64_t number = transition.key.version;
  std::string target =
      "/v1/tenants/" + tenant.name + "/scripts/" + script + "/versions/" + std::to_string(number);
  std::string state(sched::to_string(transition.to));
  api::log_event(
      transition.to == sched::BreakerState::open ? spdlog::level::warn : spdlog::level::info,
      transition.to == sched::BreakerState::closed ? "breaker.close" : "breaker." + state,
      "circuit breaker " + state,
      {{"tenant", tenant.name},
       {"script", script},
       {"version", number},
       {"from", sched::to_string(transition.from)},
       {"to", state},
       {"failures_in_window", transition.failures_in_window},
       {"reason", transition.reason}});
  if (transition.to == sched::BreakerState::half_open) return;
  bool opened = transition.to == sched::BreakerState::open;
  context_.audit.record("system", tenant.name, opened ? "breaker.open" : "breaker.close", target,
                        audit::Decision::allow, transition.reason);
  if (!opened) return;
  auto usable = [&](int64_t candidate) {
    return context_.breakers->state({tenant.id, script, candidate}) == sched::BreakerState::closed;
  };
  for (const auto& rollback : context_.registry.roll_back_aliases(tenant, script, number, usable)) {
    const std::string& moved = rollback.alias.name;
    std::string alias_target =
        "/v1/tenants/" + tenant.name + "/scripts/" + script + "/aliases/" + moved;
    api::log_event(spdlog::level::warn, "alias.auto_rollback",
                   rollback.to ? "alias rolled back from a quarantined version"
                               : "alias left at a quarantined version: nothing to roll back to",
                   {{"tenant", tenant.name},
                    {"script", script},
                    {"alias", moved},
                    {"from", number},
                    {"to", rollback.to ? json(*rollback.to) : json()}});
    if (!rollback.to) {
      context_.audit.record(
          "system", tenant.name, "alias.auto_rollback", alias_target, audit::Decision::deny,
          "alias \"" + moved + "\" stays at quarantined version " + std::to_string(number) +
              ": no approved version below it is available to roll back to");
      continue;
    }
    context_.audit.record("system", tenant.name, "alias.auto_rollback", alias_target,
                          audit::Decision::allow,
                          "alias \"" + moved + "\" moved from version " + std::to_string(number) +
                              " to " + std::to_string(*rollback.to) + ": version " +
                              std::to_string(number) + " was quarantined by its circuit breaker");
    if (!alias.empty() && alias == moved)
      rolled_back = AutoRollback{.alias = moved, .from = number, .to = *rollback.to};
  }
}

// A run of a version, for its baseline; runs under limits the caller lowered are the caller's
// and say nothing about the version, as for the breaker.
void Invoker::watch_for_anomalies(const Run::State& state, const InvocationResult& result,
                                  Finished& finished) {
  if (!context_.anomalies) return;
  const store::ScriptVersion& version = *state.version;
  auto changes =
      context_.anomalies->observe({state.tenant->id, version.script, version.version},
                                  {.outcome = result.outcome,
                                   .duration_ms = result.stats.wall_ms,
                                   .fuel = result.stats.fuel_used,
                                   .memory_peak_bytes = result.stats.memory_peak_bytes},
                                  state.tenant_policy->alerts, alerts::AlertClock::now());
  for (const auto& change : changes) report_alert(state, change, finished);
}

// Logs, counts and audits an alert raised or cleared, sends it to the operator's webhook, and
// with contain: auto quarantines the version (its breaker opens, and auto-rollback applies).
void Invoker::report_alert(const Run::State& state, const alerts::Change& change,
                           Finished& finished) {
  const store::Tenant& tenant = *state.tenant;
  const policy::TenantPolicy& tenant_policy = *state.tenant_policy;
  const std::string rule(alerts::to_string(change.rule));
  const std::string event = change.raised ? "alert.raised" : "alert.cleared";
  const auto& script = change.key.script;
  json fields = {{"tenant", tenant.name},
                 {"script", script},
                 {"version", change.key.version},
                 {"rule", rule},
                 {"value", change.value},
                 {"baseline", change.baseline},
                 {"threshold", change.threshold},
                 {"window_runs", change.window_runs},
                 {"baseline_runs", change.baseline_runs},
                 {"setting", change.setting},
                 {"reason", change.reason}};
  bool contain = change.raised && context_.breakers &&
                 tenant_policy.alerts.contain.value == policy::Containment::quarantine;
  fields["contain"] = contain ? "auto" : "none";
  api::log_event(change.raised ? spdlog::level::warn : spdlog::level::info, event,
                 change.raised ? "anomaly alert raised" : "anomaly alert cleared", fields);
  context_.metrics.record_alert(rule, change.raised);
  context_.metrics.set_alerts_active(static_cast<int64_t>(context_.anomalies->active()));
  context_.audit.record("system", tenant.name, event,
                        "/v1/tenants/" + tenant.name + "/scripts/" + script + "/versions/" +
                            std::to_string(change.key.version),
                        audit::Decision::allow, rule + ": " + change.reason);
  if (contain) {
    for (const auto& transition : context_.breakers->quarantine(
             {tenant.id, script, change.key.version}, tenant_policy.circuit_breaker,
             "anomaly alert " + rule + " (" + tenant_policy.alerts.contain.source + ")",
             sched::BreakerClock::now())) {
      report_breaker_transition(tenant, transition, state.alias, finished.auto_rollback);
    }
  }
  if (context_.alert_webhook) {
    fields["id"] = new_invocation_id();
    fields["event"] = event;
    fields["time"] = store::iso8601(store::now_ms());
    context_.alert_webhook->send(fields);
  }
}

std::variant<Finished, Refusal> Invoker::run_stored(const store::Tenant& tenant,
                                                    const std::string& script, int64_t number,
                                                    const json& input,
                                                    const std::string& invocation_id, Caller caller,
                                                    Executor& executor) {
  store::ScriptVersion version = context_.registry.version(tenant, script, number);
  Prepared prepared = prepare(Call{.tenant = tenant,
                                   .version = std::move(version),
                                   .input = input,
                                   .labels = {{"script", script}, {"version", number}},
                                   .invocation_id = invocation_id,
                                   .caller = std::move(caller)});
  if (auto* refusal = std::get_if<Refusal>(&prepared)) return std::move(*refusal);
  Run& run = std::get<Run>(prepared);
  InvocationResult result = run.cached ? *run.cached : executor.run(run.request);
  return finish(run, std::move(result));
}

}  // namespace corral::invoke
