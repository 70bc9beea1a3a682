// What the API answers, independent of the transport: the body of POST /v1/run parsed
// strictly, results turned into responses, and errors as RFC 9457 problem details.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "invocation/invocation.h"

namespace corral::api {

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // For the request's log line and metrics, not sent as such.
  std::string invocation_id = {};
  std::string outcome = {};
  // Whom and what the request concerned, for its log line; empty (0) where it had none.
  struct Names {
    std::string tenant;
    std::string script;
    int64_t version = 0;  // the version that ran (an alias resolved), or the path's
    std::string alias;
    std::string subject;  // the token's subject
  };
  Names names = {};
  // A denial its caller can repeat at will (a bad token, another tenant's paths, a role's
  // refusal): the server answers no faster than the client's budget of such denials allows.
  bool paced_per_client = false;
};

// A response whose body is still JSON: what a run's answer is until it is written out, so that a
// batch, a replay and a job use its body without parsing it back.
struct JsonResponse {
  int status = 200;
  std::string content_type = "application/json";
  nlohmann::json body = nlohmann::json::object();
  std::vector<std::pair<std::string, std::string>> headers = {};
  std::string invocation_id = {};
  std::string outcome = {};
  // The body as text, everything else as it is.
  Response written() const;
};

// An application/problem+json response. `slug` completes the type, urn:corral:problem:<slug>.
// `extra` members (an object) are merged in: they never replace the standard ones.
JsonResponse problem_json(int status, std::string_view slug, std::string_view title,
                          std::string detail, std::string hint,
                          const std::string& invocation_id = {},
                          const nlohmann::json& extra = nlohmann::json::object());
Response problem(int status, std::string_view slug, std::string_view title, std::string detail,
                 std::string hint, const std::string& invocation_id = {},
                 const nlohmann::json& extra = nlohmann::json::object());

// Parses a POST /v1/run body: {"source": string, "input": any JSON, "limits": {...}}.
// Throws InvalidRequest naming the field for unknown members, wrong types, bad limits or
// JSON nested too deeply, and std::invalid_argument for text that is not JSON at all.
InvocationRequest parse_run_request(std::string_view body, const LimitsPolicy& policy,
                                    std::string invocation_id);

// Appends ,"name":"value" to a JSON line being written by hand (the access log), with the value
// escaped as a JSON string. Bytes outside ASCII become U+FFFD: nothing such a line holds
// (routes, methods, addresses, ids, outcomes) should have any.
void append_json_member(std::string& line, std::string_view name, std::string_view value);

// Who set a run's limits, for the hint of a run that went past one: corrald's flags (the
// playground), which a request may raise up to their maxima, or the tenant's policy (a published
// version), which a request may only lower and an operator raises in the policy.
enum class LimitsFrom { server_flags, tenant_policy };

// ok → 200 with the result; every other outcome → its status as a problem carrying the result.
// `extra` members (an object, such as the registry's "version") are added to either.
JsonResponse run_response_json(const InvocationResult& result, const LimitsPolicy& policy,
                               const nlohmann::json& extra = nlohmann::json::object(),
                               LimitsFrom limits_from = LimitsFrom::server_flags);
Response run_response(const InvocationResult& result, const LimitsPolicy& policy,
                      const nlohmann::json& extra = nlohmann::json::object(),
                      LimitsFrom limits_from = LimitsFrom::server_flags);

// corral's store could not write (store::StorageUnavailable): 507 storage-full when the disk is
// full, else 503 storage-failing, both with Retry-After and neither naming a path. The cause goes
// to corrald's log, not to the client.
JsonResponse storage_unavailable_json(bool disk_full, const std::string& invocation_id = {},
                                      const nlohmann::json& extra = nlohmann::json::object());
Response storage_unavailable(bool disk_full, const std::string& invocation_id = {},
                             const nlohmann::json& extra = nlohmann::json::object());
inline constexpr int64_t kStorageRetryAfterSeconds = 30;

// The problem for a request that could not become an invocation (status 400, invalid).
Response invalid_request(const InvalidRequest& error, const std::string& invocation_id);

// Unix milliseconds, or RFC 3339 UTC ("2026-11-23T12:00:00Z", fraction optional), as the query
// parameters of time take them.
std::optional<int64_t> parse_time(std::string_view text);

}  // namespace corral::api
