// The invoker's results written out (invoke/invoker.h): the only place a run becomes an answer.
// POST …/invoke, a batch's items, a replay and the playground answer with these; a stored run
// keeps run_document(); a job records what POST …/invoke would have answered (run_job), so that
// its result, status and webhook read as the route's answer does.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "api/responses.h"
#include "invoke/invoker.h"
#include "jobs/jobs.h"

namespace corral::api {

// A finished run: 200 with the result, or the outcome's problem carrying it; Corral-Cache,
// Corral-Quota-Warning and Deprecation headers as they apply.
JsonResponse to_response(const invoke::Finished& finished);

// A run refused before it ran: 410 version-disabled, 403 forbidden (not approved), 503
// circuit-open or 429 quota-exceeded, with Retry-After where waiting helps. The caller audits a
// 403 as the denial of its principal.
JsonResponse to_response(const invoke::Refusal& refusal);

// The body of to_response(finished): what a stored run keeps (invoke::Context::document).
nlohmann::json run_document(const invoke::Finished& finished);

// A job's run of a stored version through the invoker, with no HTTP request: the tenant named,
// its version, prepared, run on `executor` and finished, written down as the job keeps it.
// Attributed to the job: principal "job:<invocation id>"; its quota was admitted at submission,
// where the approval check applied too, so neither applies again. Never throws.
jobs::RunAnswer run_job(invoke::Invoker& invoker, Executor& executor, store::Store& store,
                        const std::string& tenant_name, const std::string& script, int64_t version,
                        const nlohmann::json& input, const std::string& invocation_id);

}  // namespace corral::api
