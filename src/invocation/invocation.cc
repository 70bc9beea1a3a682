#include "invocation/invocation.h"

#include <algorithm>
#include <array>
#include <stdexcept>

#include "invocation/random_bytes.h"

namespace corral {
namespace {

constexpr std::array kOutcomeNames{"ok",       "script_error", "limit_exceeded", "denied",
                                   "rejected", "invalid",      "crashed"};
constexpr std::array kLimitNames{"fuel",        "memory",   "wall_time",
                                 "output_size", "log_size", "subrequests"};

template <typename Enum, size_t N>
std::optional<Enum> enum_from_name(const std::array<const char*, N>& names, std::string_view name) {
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i]) return static_cast<Enum>(i);
  }
  return std::nullopt;
}

struct LimitField {
  const char* name;
  int64_t Limits::*member;
};
constexpr std::array kLimitFields{
    LimitField{"fuel", &Limits::fuel},
    LimitField{"memory_bytes", &Limits::memory_bytes},
    LimitField{"timeout_ms", &Limits::timeout_ms},
    LimitField{"output_bytes", &Limits::output_bytes},
    LimitField{"log_bytes", &Limits::log_bytes},
    LimitField{"subrequests", &Limits::subrequests},
};

// Field readers for untrusted JSON: each names the field it could not read.
const nlohmann::json& field(const nlohmann::json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) throw std::invalid_argument(std::string("missing field '") + name + "'");
  return *it;
}
std::string string_field(const nlohmann::json& object, const char* name) {
  const auto& value = field(object, name);
  if (!value.is_string())
    throw std::invalid_argument(std::string("'") + name + "' is not a string");
  return value.get<std::string>();
}
int64_t integer_field(const nlohmann::json& object, const char* name) {
  const auto& value = field(object, name);
  if (!value.is_number_integer())
    throw std::invalid_argument(std::string("'") + name + "' is not an integer");
  return value.get<int64_t>();
}
double number_field(const nlohmann::json& object, const char* name) {
  const auto& value = field(object, name);
  if (!value.is_number())
    throw std::invalid_argument(std::string("'") + name + "' is not a number");
  return value.get<double>();
}

}  // namespace

std::string_view to_string(Outcome outcome) {
  return kOutcomeNames.at(static_cast<size_t>(outcome));
}

std::optional<Outcome> outcome_from_string(std::string_view name) {
  return enum_from_name<Outcome>(kOutcomeNames, name);
}

int http_status(Outcome outcome) {
  switch (outcome) {
    case Outcome::ok:
      return 200;
    case Outcome::script_error:
      return 422;
    case Outcome::limit_exceeded:
      return 422;
    case Outcome::denied:
      return 403;
    case Outcome::rejected:
      return 429;
    case Outcome::invalid:
      return 400;
    case Outcome::crashed:
      return 500;
  }
  return 500;
}

std::string_view to_string(LimitKind limit) { return kLimitNames.at(static_cast<size_t>(limit)); }

std::optional<LimitKind> limit_from_string(std::string_view name) {
  return enum_from_name<LimitKind>(kLimitNames, name);
}

Limits LimitsPolicy::resolve(const nlohmann::json& requested) const {
  Limits limits = defaults;
  if (requested.is_null()) return limits;
  if (!requested.is_object()) throw InvalidRequest("limits", "'limits' must be an object");
  for (const auto& [key, value] : requested.items()) {
    const LimitField* known = nullptr;
    for (const auto& f : kLimitFields) {
      if (key == f.name) known = &f;
    }
    std::string where = "limits." + key;
    if (known == nullptr) {
      throw InvalidRequest(where, "unknown limit '" + key +
                                      "'; known limits are fuel, memory_bytes, timeout_ms, "
                                      "output_bytes, log_bytes, subrequests");
    }
    // A run may be allowed no capability calls at all; every other budget must be positive.
    int64_t least = known->member == &Limits::subrequests ? 0 : 1;
    if (!value.is_number_integer() || value.get<int64_t>() < least) {
      throw InvalidRequest(where, "'" + where + "' must be " +
                                      (least == 0 ? "a non-negative" : "a positive") + " integer");
    }
    int64_t asked = value.get<int64_t>();
    int64_t maximum = maxima.*(known->member);
    if (asked > maximum) {
      throw InvalidRequest(where, "'" + where + "' is " + std::to_string(asked) +
                                      ", above the configured maximum of " +
                                      std::to_string(maximum));
    }
    limits.*(known->member) = asked;
  }
  return limits;
}

nlohmann::json to_json(const Limits& limits) {
  nlohmann::json json = nlohmann::json::object();
  for (const auto& f : kLimitFields) json[f.name] = limits.*(f.member);
  return json;
}

Limits limits_from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw std::invalid_argument("'limits' is not an object");
  Limits limits;
  for (const auto& f : kLimitFields) limits.*(f.member) = integer_field(json, f.name);
  return limits;
}

void cut_log_entries(InvocationResult& result, int64_t max_entry_bytes) {
  if (max_entry_bytes <= 0) return;
  auto cap = static_cast<size_t>(max_entry_bytes);
  for (auto& entry : result.logs) {
    std::string& message = entry.message;
    if (message.size() <= cap) continue;
    size_t length = cap;
    while (length > 0 && (static_cast<unsigned char>(message[length]) & 0xc0) == 0x80) --length;
    message.resize(length);
    message += "\u2026";
  }
}

nlohmann::json to_json(const InvocationResult& result) {
  nlohmann::json json = nlohmann::json::object();
  json["outcome"] = to_string(result.outcome);
  if (result.outcome == Outcome::ok) {
    json["output"] = result.output;
  } else {
    nlohmann::json error = {{"message", result.message}};
    if (result.line > 0) error["line"] = result.line;
    if (result.column > 0) error["column"] = result.column;
    if (!result.traceback.empty()) error["traceback"] = result.traceback;
    if (result.limit) {
      error["limit"] = to_string(*result.limit);
      error["used"] = result.used;
      error["allowed"] = result.allowed;
    }
    json["error"] = std::move(error);
  }
  nlohmann::json logs = nlohmann::json::array();
  for (const auto& entry : result.logs) {
    logs.push_back({{"level", entry.level}, {"message", entry.message}});
  }
  json["logs"] = std::move(logs);
  json["stats"] = {{"fuel_used", result.stats.fuel_used},
                   {"memory_peak_bytes", result.stats.memory_peak_bytes},
                   {"wall_ms", result.stats.wall_ms},
                   {"cpu_ms", result.stats.cpu_ms}};
  json["invocation_id"] = result.invocation_id;
  if (result.policy_version) json["policy_version"] = *result.policy_version;
  return json;
}

std::string to_json_text(const InvocationResult& result) {
  nlohmann::json json = to_json(result);
  bool splice = result.outcome == Outcome::ok && !result.output_json.empty();
  if (splice) json.erase("output");
  std::string text = json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!splice) return text;
  // The output goes last, in place of the closing brace: a JSON object's members have no order.
  text.pop_back();
  text += ",\"output\":";
  text += result.output_json;
  text += '}';
  return text;
}

InvocationResult result_from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw std::invalid_argument("result is not an object");
  InvocationResult result;
  auto outcome = outcome_from_string(string_field(json, "outcome"));
  if (!outcome) throw std::invalid_argument("'outcome' is not a known outcome");
  result.outcome = *outcome;
  result.invocation_id = string_field(json, "invocation_id");
  if (result.outcome == Outcome::ok) {
    result.output = field(json, "output");
  } else {
    const auto& error = field(json, "error");
    if (!error.is_object()) throw std::invalid_argument("'error' is not an object");
    result.message = string_field(error, "message");
    if (error.contains("line")) result.line = static_cast<int>(integer_field(error, "line"));
    if (error.contains("column")) result.column = static_cast<int>(integer_field(error, "column"));
    if (error.contains("traceback")) result.traceback = string_field(error, "traceback");
    if (error.contains("limit")) {
      result.limit = limit_from_string(string_field(error, "limit"));
      if (!result.limit) throw std::invalid_argument("'error.limit' is not a known limit");
      result.used = integer_field(error, "used");
      result.allowed = integer_field(error, "allowed");
    }
    if (result.outcome == Outcome::limit_exceeded && !result.limit) {
      throw std::invalid_argument("limit_exceeded without 'error.limit'");
    }
  }
  const auto& logs = field(json, "logs");
  if (!logs.is_array()) throw std::invalid_argument("'logs' is not an array");
  for (const auto& entry : logs) {
    if (!entry.is_object()) throw std::invalid_argument("a log entry is not an object");
    result.logs.push_back({string_field(entry, "level"), string_field(entry, "message")});
  }
  const auto& stats = field(json, "stats");
  if (!stats.is_object()) throw std::invalid_argument("'stats' is not an object");
  result.stats.fuel_used = integer_field(stats, "fuel_used");
  result.stats.memory_peak_bytes = integer_field(stats, "memory_peak_bytes");
  result.stats.wall_ms = number_field(stats, "wall_ms");
  result.stats.cpu_ms = number_field(stats, "cpu_ms");
  return result;
}

std::string new_invocation_id() {
  std::array<unsigned char, 16> bytes{};
  fill_unpredictable(bytes.data(), bytes.size());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  id.reserve(32);
  for (unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 15]);
  }
  return id;
}

std::string describe_failure(const InvocationResult& result) {
  switch (result.outcome) {
    case Outcome::ok:
      return "ok";
    case Outcome::limit_exceeded:
      return std::string(to_string(result.limit.value_or(LimitKind::fuel))) +
             " limit exceeded: used " + std::to_string(result.used) + " of " +
             std::to_string(result.allowed) + " allowed";
    default: {
      std::string text = result.message;
      if (result.line > 0) {
        text += " (line " + std::to_string(result.line);
        if (result.column > 0) text += ", column " + std::to_string(result.column);
        text += ")";
      }
      return text;
    }
  }
}

}  // namespace corral
