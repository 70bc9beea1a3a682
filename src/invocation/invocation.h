// The contract every part of corral shares about one run of a script: what is asked
// (InvocationRequest), under which limits (Limits), and how it ended (InvocationResult).
// The same result shape is sent by the worker, answered by the API and printed by the CLI.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "invocation/untrusted_json.h"  // parse_untrusted_json, which its callers take from here

namespace corral {

// Every invocation ends in exactly one of these (see docs/scripting.md, "Outcomes").
enum class Outcome { ok, script_error, limit_exceeded, denied, rejected, invalid, crashed };

std::string_view to_string(Outcome outcome);
std::optional<Outcome> outcome_from_string(std::string_view name);
int http_status(Outcome outcome);

// The limit that stopped a run, by its public name.
enum class LimitKind { fuel, memory, wall_time, output_size, log_size, subrequests };

std::string_view to_string(LimitKind limit);
std::optional<LimitKind> limit_from_string(std::string_view name);

struct Limits {
  int64_t fuel = 0;          // Lua VM instructions
  int64_t memory_bytes = 0;  // bytes the Lua allocator may hold at once
  int64_t timeout_ms = 0;    // wall time of the whole invocation
  int64_t output_bytes = 0;  // size of the encoded output JSON
  int64_t log_bytes = 0;     // total size of captured log messages
  int64_t subrequests = 0;   // capability calls (ctx.kv, ctx.http, ctx.emit, ctx.secrets)

  friend bool operator==(const Limits&, const Limits&) = default;
};

// Defaults apply when a request names no value; maxima bound what a request may ask for.
struct LimitsPolicy {
  Limits defaults{.fuel = 50'000'000,
                  .memory_bytes = 64ll << 20,
                  .timeout_ms = 1000,
                  .output_bytes = 1 << 20,
                  .log_bytes = 64 << 10,
                  .subrequests = 16};
  Limits maxima{.fuel = 1'000'000'000,
                .memory_bytes = 256ll << 20,
                .timeout_ms = 30'000,
                .output_bytes = 8 << 20,
                .log_bytes = 1 << 20,
                .subrequests = 1000};

  // Applies a request's "limits" object over the defaults. Throws InvalidRequest naming the
  // field when a key is unknown, a value is not a positive integer, or exceeds its maximum.
  Limits resolve(const nlohmann::json& requested) const;
};

// A malformed request: `where` names the field (for example "limits.fuel").
struct InvalidRequest : std::runtime_error {
  InvalidRequest(std::string where, const std::string& why)
      : std::runtime_error(why), where(std::move(where)) {}
  std::string where;
};

// Until tenants exist, every invocation runs as this one.
inline constexpr const char* kPlaygroundTenant = "playground";

// Answers one capability call of a running invocation (the broker, in the supervisor): the
// call as the worker sent it (untrusted JSON text) and the time left before the run's deadline;
// returns the reply's JSON text. Must not throw.
using CapabilityHandler =
    std::function<std::string(std::string_view call, std::chrono::milliseconds remaining)>;

struct InvocationRequest {
  std::string invocation_id;
  std::string tenant = kPlaygroundTenant;  // workers serve one tenant for life
  std::string source;
  nlohmann::json input;
  Limits limits;
  // The policy's log.max_entry_bytes, applied by the supervisor to the result (cut_log_entries);
  // 0: no cut. Never sent to the worker.
  int64_t log_entry_bytes = 0;
  // What ctx holds besides ctx.log: the capabilities the manifest asks for and the policy grants
  // ("kv", "http", "emit", "secrets"). Sent to the worker; the broker checks every call again.
  std::vector<std::string> capabilities = {};
  CapabilityHandler capability_handler = {};  // stays in the supervisor; empty: no broker
};

struct LogEntry {
  std::string level;  // debug, info, warn, error
  std::string message;
  friend bool operator==(const LogEntry&, const LogEntry&) = default;
};

struct Stats {
  int64_t fuel_used = 0;
  int64_t memory_peak_bytes = 0;
  double wall_ms = 0;
  double cpu_ms = 0;
};

struct InvocationResult {
  Outcome outcome = Outcome::crashed;
  std::string invocation_id;
  nlohmann::json output;  // ok only
  // ok only, from an Engine made to give its output as text (the worker's): the output as
  // compact JSON text, and `output` stays null. The worker only sends the output on, so parsing
  // the text its encoder made would be wasted; to_json_text() writes it into the result as is.
  std::string output_json;

  // script_error, invalid, crashed, denied: what happened, in one line.
  std::string message;
  // script_error and invalid: where in the script (0 when unknown).
  int line = 0;
  int column = 0;
  std::string traceback;  // script_error only

  // limit_exceeded only.
  std::optional<LimitKind> limit;
  int64_t used = 0;
  int64_t allowed = 0;

  // rejected only: the seconds after which trying again may succeed (Retry-After). Set by the
  // supervisor; never read from a worker, which has no business turning a run away.
  int64_t retry_after_seconds = 0;

  std::vector<LogEntry> logs;
  Stats stats;
  // The policy version the run was governed by; set by the supervisor, never by a worker.
  std::optional<int64_t> policy_version = std::nullopt;
};

// The wire and API shape of a result: {"outcome", "output"|"error", "logs", "stats",
// "invocation_id"}.
nlohmann::json to_json(const InvocationResult& result);

// to_json(result) as compact text, with output_json in place of output when it is set. Text in
// messages and logs that is not valid UTF-8 is replaced (U+FFFD) rather than refused.
std::string to_json_text(const InvocationResult& result);

// Parses a result from an untrusted source (a worker's frame). Every field is checked;
// throws std::invalid_argument naming the first field that is missing or of the wrong type.
InvocationResult result_from_json(const nlohmann::json& json);

nlohmann::json to_json(const Limits& limits);
Limits limits_from_json(const nlohmann::json& json);  // every field, as written by to_json

// Cuts every log message longer than max_entry_bytes (the policy's log.max_entry_bytes) to at
// most that many bytes, never inside a UTF-8 sequence, and ends it with "…". The supervisor
// cuts after redaction, so that a secret's prefix left at a cut is never shown unredacted.
// A max_entry_bytes of 0 or less cuts nothing (the policy sets no cap).
void cut_log_entries(InvocationResult& result, int64_t max_entry_bytes);

// A fresh random identifier for an invocation (128 bits, hex).
std::string new_invocation_id();

// One-line summary of a non-ok result, for humans (CLI stderr, problem "detail").
std::string describe_failure(const InvocationResult& result);

}  // namespace corral
