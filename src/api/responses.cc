#include "api/responses.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace corral::api {

namespace {

std::string_view title_of(Outcome outcome) {
  switch (outcome) {
    case Outcome::ok:
      return "The script ran";
    case Outcome::script_error:
      return "The script raised an error";
    case Outcome::limit_exceeded:
      return "A limit stopped the script";
    case Outcome::denied:
      return "The policy denied the request";
    case Outcome::rejected:
      return "The request was rejected";
    case Outcome::invalid:
      return "The request or the script is invalid";
    case Outcome::crashed:
      return "The worker running the script crashed";
  }
  return "Unknown outcome";
}

// The request field that raises each limit.
std::string_view limit_field(LimitKind limit) {
  switch (limit) {
    case LimitKind::fuel:
      return "fuel";
    case LimitKind::memory:
      return "memory_bytes";
    case LimitKind::wall_time:
      return "timeout_ms";
    case LimitKind::output_size:
      return "output_bytes";
    case LimitKind::log_size:
      return "log_bytes";
    case LimitKind::subrequests:
      return "subrequests";
  }
  return "?";
}

int64_t maximum_of(LimitKind limit, const Limits& maxima) {
  switch (limit) {
    case LimitKind::fuel:
      return maxima.fuel;
    case LimitKind::memory:
      return maxima.memory_bytes;
    case LimitKind::wall_time:
      return maxima.timeout_ms;
    case LimitKind::output_size:
      return maxima.output_bytes;
    case LimitKind::log_size:
      return maxima.log_bytes;
    case LimitKind::subrequests:
      return maxima.subrequests;
  }
  return 0;
}

std::string hint_for(const InvocationResult& result, const LimitsPolicy& policy,
                     LimitsFrom limits_from) {
  switch (result.outcome) {
    case Outcome::script_error:
      return "fix the script where the error and its traceback point; wrap calls that may fail "
             "in pcall to handle them yourself";
    case Outcome::limit_exceeded: {
      if (!result.limit) return "make the script do less work";
      std::string field(limit_field(*result.limit));
      if (limits_from == LimitsFrom::tenant_policy) {
        int64_t most = maximum_of(*result.limit, policy.maxima);
        if (result.allowed < most) {
          return "make the script do less work, or leave limits." + field +
                 " out of the request: the tenant's policy allows up to " + std::to_string(most);
        }
        return "make the script do less work: limits." + field +
               " is already the most this tenant's runs may have (" + std::to_string(most) +
               ", from its policy); an operator can raise it in the policy (docs/policy.md, "
               "limits)";
      }
      int64_t maximum = maximum_of(*result.limit, policy.maxima);
      if (result.allowed < maximum) {
        return "make the script do less work, or raise limits." + field + " in the request (this " +
               "server allows up to " + std::to_string(maximum) + ")";
      }
      return "make the script do less work: limits." + field + " is already at this server's " +
             "maximum (" + std::to_string(maximum) + ")";
    }
    case Outcome::invalid:
      return "correct the script or the request as the detail says; docs/scripting.md has the "
             "contract";
    case Outcome::crashed:
      return "the worker has been replaced; retry, and report the invocation_id if it happens "
             "again";
    case Outcome::denied:
      return "ask an operator for the permission the detail names";
    case Outcome::rejected:
      return "retry later";
    case Outcome::ok:
      return "";
  }
  return "";
}

void require(bool condition, const std::string& where, const std::string& why) {
  if (!condition) throw InvalidRequest(where, why);
}

}  // namespace

Response JsonResponse::written() const {
  return {.status = status,
          .content_type = content_type,
          .body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
          .headers = headers,
          .invocation_id = invocation_id,
          .outcome = outcome};
}

JsonResponse problem_json(int status, std::string_view slug, std::string_view title,
                          std::string detail, std::string hint, const std::string& invocation_id,
                          const nlohmann::json& extra) {
  nlohmann::json body = extra.is_object() ? extra : nlohmann::json::object();
  body["type"] = "urn:corral:problem:" + std::string(slug);
  body["title"] = title;
  body["status"] = status;
  body["detail"] = std::move(detail);
  body["hint"] = std::move(hint);
  if (!invocation_id.empty()) body["invocation_id"] = invocation_id;
  return {.status = status,
          .content_type = "application/problem+json",
          .body = std::move(body),
          .headers = {}};
}

Response problem(int status, std::string_view slug, std::string_view title, std::string detail,
                 std::string hint, const std::string& invocation_id, const nlohmann::json& extra) {
  return problem_json(status, slug, title, std::move(detail), std::move(hint), invocation_id, extra)
      .written();
}

InvocationRequest parse_run_request(std::string_view text, const LimitsPolicy& policy,
                                    std::string invocation_id) {
  nlohmann::json body;
  try {
    body = parse_untrusted_json(text);
  } catch (const nlohmann::json::parse_error& error) {
    throw std::invalid_argument("the body is not valid JSON: " +
                                describe_json_syntax_error(error, text));
  }
  require(body.is_object(), "body", "the body must be a JSON object with \"source\" and \"input\"");
  for (const auto& [key, value] : body.items()) {
    require(key == "source" || key == "input" || key == "limits", key,
            "unknown field \"" + key + "\"; the fields are source, input and limits");
  }
  require(body.contains("source"), "source", "\"source\" is missing: send the script's text");
  require(body["source"].is_string(), "source", "\"source\" must be a string holding the script");

  InvocationRequest request;
  request.invocation_id = std::move(invocation_id);
  request.source = body["source"].get<std::string>();
  request.input = body.contains("input") ? body["input"] : nlohmann::json();
  request.limits =
      policy.resolve(body.contains("limits") ? body["limits"] : nlohmann::json::object());
  return request;
}

JsonResponse run_response_json(const InvocationResult& result, const LimitsPolicy& policy,
                               const nlohmann::json& extra, LimitsFrom limits_from) {
  nlohmann::json members = to_json(result);
  if (extra.is_object()) members.update(extra);
  if (result.outcome == Outcome::ok) {
    return {.status = 200,
            .content_type = "application/json",
            .body = std::move(members),
            .headers = {},
            .invocation_id = result.invocation_id,
            .outcome = std::string(to_string(result.outcome))};
  }
  if (result.outcome == Outcome::rejected) {
    // Admission answers a tenant's own quotas with 429 before a run gets here; a run rejected
    // after it was admitted met corrald's own shortage (no worker free, none could be started),
    // so it is the server's 503, with when to come back.
    int64_t seconds = std::max<int64_t>(1, result.retry_after_seconds);
    std::string retry = std::to_string(seconds);
    members["retry_after"] = seconds;
    JsonResponse response = problem_json(
        503, "no-worker", "No worker could take the run", result.message,
        "send the request again in " + retry +
            " s (Retry-After); if it keeps happening, the detail says what the operator can change",
        result.invocation_id, members);
    response.headers.emplace_back("Retry-After", retry);
    response.outcome = std::string(to_string(result.outcome));
    response.invocation_id = result.invocation_id;
    return response;
  }
  int status = http_status(result.outcome);
  JsonResponse response = problem_json(
      status, to_string(result.outcome), title_of(result.outcome), describe_failure(result),
      hint_for(result, policy, limits_from), result.invocation_id, members);
  response.outcome = std::string(to_string(result.outcome));
  response.invocation_id = result.invocation_id;
  return response;
}

Response run_response(const InvocationResult& result, const LimitsPolicy& policy,
                      const nlohmann::json& extra, LimitsFrom limits_from) {
  return run_response_json(result, policy, extra, limits_from).written();
}

JsonResponse storage_unavailable_json(bool disk_full, const std::string& invocation_id,
                                      const nlohmann::json& extra) {
  std::string retry = std::to_string(kStorageRetryAfterSeconds);
  nlohmann::json members = extra;
  members["retry_after"] = kStorageRetryAfterSeconds;
  JsonResponse response =
      disk_full
          ? problem_json(507, "storage-full", "corral's storage is full",
                         "corral could not save what this request changes: the disk that holds "
                         "its database is full. Nothing was changed; reads are still served",
                         "send the request again in " + retry +
                             " s (Retry-After); the operator must free space on the disk of "
                             "corrald's data directory (corrald's log has the cause)",
                         invocation_id, members)
          : problem_json(503, "storage-failing", "corral's storage is failing",
                         "corral could not reach or write its database (a disk that reported an "
                         "I/O error, or a PostgreSQL server that is not answering). Nothing was "
                         "changed",
                         "send the request again in " + retry +
                             " s (Retry-After); the operator must check corrald's store: the disk "
                             "of its data directory, or its PostgreSQL server (corrald's log has "
                             "the cause)",
                         invocation_id, members);
  response.headers.emplace_back("Retry-After", retry);
  return response;
}

Response storage_unavailable(bool disk_full, const std::string& invocation_id,
                             const nlohmann::json& extra) {
  return storage_unavailable_json(disk_full, invocation_id, extra).written();
}

Response invalid_request(const InvalidRequest& error, const std::string& invocation_id) {
  return problem(
      400, "invalid", "The request or the script is invalid",
      std::string(error.what()) + " (at " + error.where + ")",
      "correct the request body; POST /v1/run takes {\"source\": string, \"input\": any, "
      "\"limits\": {fuel, memory_bytes, timeout_ms, output_bytes, log_bytes}}",
      invocation_id, {{"outcome", "invalid"}, {"field", error.where}});
}

void append_json_member(std::string& line, std::string_view name, std::string_view value) {
  line += ",\"";
  line += name;
  line += "\":\"";
  for (char c : value) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      line += '\\';
      line += c;
    } else if (byte < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
      line += escaped;
    } else if (byte >= 0x80) {
      line += "\\ufffd";
    } else {
      line += c;
    }
  }
  line += '"';
}

std::optional<int64_t> parse_time(std::string_view text) {
  int64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error == std::errc() && end == text.data() + text.size()) return number;
  std::tm utc{};
  int millis = 0;
  std::string copy(text);
  char* rest = strptime(copy.c_str(), "%Y-%m-%dT%H:%M:%S", &utc);
  if (!rest) return std::nullopt;
  if (*rest == '.') {
    ++rest;
    int digits = 0;
    while (*rest >= '0' && *rest <= '9') {
      if (digits++ < 3) millis = millis * 10 + (*rest - '0');
      ++rest;
    }
    while (digits > 0 && digits < 3) millis *= 10, ++digits;
  }
  if (std::string_view(rest) != "Z") return std::nullopt;
  return static_cast<int64_t>(timegm(&utc)) * 1000 + millis;
}

}  // namespace corral::api
