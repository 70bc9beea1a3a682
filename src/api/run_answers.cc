#include "api/run_answers.h"

#include <spdlog/spdlog.h>

#include "api/events.h"
#include "registry/registry.h"
#include "sched/admission.h"

namespace corral::api {

namespace {

using nlohmann::json;

static_assert(invoke::kStorageRetryAfterSeconds == kStorageRetryAfterSeconds,
              "a run refused for storage says to come back when corral's other refusals do");

// Whatever the answer carries, the job's outcome: the run's, or the problem's slug for an answer
// without a run ("circuit-open", "version-disabled", "not-found", …).
jobs::RunAnswer job_answer(JsonResponse response) {
  std::string outcome = response.outcome;
  if (outcome.empty() && response.body.is_object()) {
    std::string type = response.body.value("type", "");
    outcome = type.substr(type.rfind(':') + 1);
  }
  return {response.status, std::move(outcome), std::move(response.body)};
}

}  // namespace

json run_document(const invoke::Finished& finished) { return to_response(finished).body; }

JsonResponse to_response(const invoke::Finished& finished) {
  json members = finished.labels;
  if (finished.cache == invoke::Finished::Cache::hit) members["cache"] = "hit";
  if (finished.cache == invoke::Finished::Cache::miss) members["cache"] = "miss";
  if (const auto& rollback = finished.auto_rollback) {
    members["auto_rollback"] = {
        {"alias", rollback->alias}, {"from", rollback->from}, {"to", rollback->to}};
  }
  const InvocationResult& result = finished.result;
  JsonResponse response;
  if (finished.storage_failure) {
    members["outcome"] = "rejected";
    response = storage_unavailable_json(finished.storage_failure->disk_full, result.invocation_id,
                                        members);
    response.outcome = "rejected";
    response.invocation_id = result.invocation_id;
  } else {
    response = run_response_json(
        result, finished.limits, members,
        finished.limits_from_policy ? LimitsFrom::tenant_policy : LimitsFrom::server_flags);
  }
  auto add_quota_warning = [&] {
    if (!finished.quota_warnings.empty())
      response.headers.emplace_back("Corral-Quota-Warning",
                                    sched::warning_header(finished.quota_warnings));
  };
  if (finished.cache == invoke::Finished::Cache::hit) {
    response.headers.emplace_back("Corral-Cache", "hit");
    add_quota_warning();
  } else {
    add_quota_warning();
    if (finished.cache == invoke::Finished::Cache::miss)
      response.headers.emplace_back("Corral-Cache", "miss");
  }
  if (finished.deprecated) response.headers.emplace_back("Deprecation", "true");
  return response;
}

JsonResponse to_response(const invoke::Refusal& refusal) {
  using Reason = invoke::Refusal::Reason;
  json extra = refusal.labels;
  switch (refusal.reason) {
    case Reason::version_disabled:
      return problem_json(
          410, "version-disabled", "The version is disabled", refusal.detail,
          "invoke another version, or have a reviewer point the alias at an approved one", "",
          extra);
    case Reason::not_approved:
      return problem_json(403, "forbidden", "The version is not approved", refusal.detail,
                          "invoke an approved version (the alias \"live\" by default), or ask a "
                          "reviewer to approve it",
                          "", extra);
    case Reason::circuit_open:
    case Reason::over_quota:
      break;
  }
  std::string retry = std::to_string(refusal.retry_after_seconds);
  JsonResponse response;
  if (refusal.reason == Reason::circuit_open) {
    const auto& breaker = *refusal.breaker;
    extra["breaker"] = {{"script", breaker.script},
                        {"version", breaker.version},
                        {"state", breaker.state},
                        {"failures_in_window", breaker.failures_in_window},
                        {"window_seconds", breaker.window_seconds},
                        {"half_open_at", store::iso8601(breaker.half_open_at_ms)},
                        {"rule", breaker.rule}};
    extra["retry_after"] = refusal.retry_after_seconds;
    extra["outcome"] = "rejected";
    if (const auto& rollback = refusal.auto_rollback) {
      extra["auto_rollback"] = {
          {"alias", rollback->alias}, {"from", rollback->from}, {"to", rollback->to}};
    }
    response = problem_json(
        503, "circuit-open", "The version is quarantined", refusal.detail,
        "send the request again in " + retry +
            " s (Retry-After); if the version keeps crashing or exceeding its limits, publish a "
            "fixed version, or have a reviewer point the alias at another one",
        refusal.invocation_id, extra);
  } else {
    std::string hint = refusal.quota == sched::kConcurrency
                           ? "wait for one of the tenant's running invocations to finish (about " +
                                 retry + " s), or ask the operator to raise " + refusal.rule
                           : "send the request again in " + retry +
                                 " s (Retry-After); to sustain more, ask the operator to raise " +
                                 refusal.rule;
    extra["tenant"] = refusal.tenant_name;
    extra["quota"] = refusal.quota;
    extra["rule"] = refusal.rule;
    extra["retry_after"] = refusal.retry_after_seconds;
    extra["policy_version"] = refusal.policy_version.value_or(0);
    extra["outcome"] = "rejected";
    response = problem_json(429, "quota-exceeded", "A quota is exhausted", refusal.detail, hint,
                            refusal.invocation_id, extra);
  }
  response.headers.emplace_back("Retry-After", retry);
  response.invocation_id = refusal.invocation_id;
  response.outcome = "rejected";
  return response;
}

jobs::RunAnswer run_job(invoke::Invoker& invoker, Executor& executor, store::Store& store,
                        const std::string& tenant_name, const std::string& script, int64_t version,
                        const json& input, const std::string& invocation_id) {
  try {
    auto tenant = store.find_tenant_by_name(tenant_name);
    if (!tenant) {
      return job_answer(problem_json(404, "not-found", "No such tenant",
                                     "no tenant named \"" + tenant_name + "\"",
                                     "the tenant was removed after the work was accepted"));
    }
    auto ran = invoker.run_stored(
        *tenant, script, version, input, invocation_id,
        {.principal = "job:" + invocation_id,
         .audit_target = "/v1/tenants/" + tenant_name + "/scripts/" + script + "/jobs",
         .may_run_pending = true,
         .by_quota = false},
        executor);
    if (auto* refusal = std::get_if<invoke::Refusal>(&ran))
      return job_answer(to_response(*refusal));
    return job_answer(to_response(std::get<invoke::Finished>(ran)));
  } catch (const registry::Refusal& refusal) {
    return job_answer(
        problem_json(refusal.status, refusal.slug, refusal.title, refusal.what(), refusal.hint));
  } catch (const InvalidRequest& error) {
    return job_answer(problem_json(400, "invalid", "The request is invalid",
                                   std::string(error.what()) + " (at " + error.where + ")",
                                   "correct the field named and send the request again", "",
                                   {{"field", error.where}}));
  } catch (const store::NotFound& error) {
    return job_answer(
        problem_json(404, "not-found", "Not found", error.what(), "check the names in the path"));
  } catch (const store::StorageUnavailable& failure) {
    log_storage_failure(failure);
    return job_answer(storage_unavailable_json(failure.disk_full()));
  } catch (const std::exception& error) {
    // The store's messages name its database file and quote SQLite: for the log only.
    spdlog::error(json({{"level", "error"}, {"msg", "a job's run failed"}, {"error", error.what()}})
                      .dump(-1, ' ', false, json::error_handler_t::replace));
    return job_answer(problem_json(
        500, "internal", "The server could not complete the request",
        "corral could not complete the job's run",
        "it is tried again; if it persists, tell the operator (corrald's log has the cause)"));
  }
}

}  // namespace corral::api
