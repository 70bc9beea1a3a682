// The log of the refusals that shed load: a 503 or 507 with Retry-After (queue-full, overloaded,
// stopping, no-worker, circuit-open, storage-full, storage-failing). Under a flood they come by
// the thousand a second and are corral doing its job, not an error, so they are not one
// access-log line each (they are counted per route and status in corral_http_requests_total): the
// first of a kind is written at once, the rest of its window are counted and written as one line
// when the window ends, so a steady flood leaves about one line per kind per window. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace corral::api {

class RefusalLog {
 public:
  using Clock = std::chrono::steady_clock;
  // Writes one line (level warn, msg "requests refused"); called without the log's lock held.
  using Writer = std::function<void(nlohmann::json line)>;

  RefusalLog(std::chrono::milliseconds window, Writer writer);

  // A refusal of `kind` (the problem type's slug) on `route`. Returns the time its count is due
  // when this refusal started one: the caller makes sure flush() is called then.
  std::optional<Clock::time_point> note(std::string_view kind, std::string_view route, int status,
                                        Clock::time_point now);

  // Writes the counts whose window has ended by `now`, or all of them (at stop). Returns when
  // the next count is due, if one is pending.
  std::optional<Clock::time_point> flush(Clock::time_point now, bool everything = false);

 private:
  struct Kind {
    Clock::time_point window_start;
    uint64_t counted = 0;  // refused since the last line of this kind
    std::string route;     // the last one's
    int status = 0;
  };
  nlohmann::json line(const std::string& kind, const Kind& state, uint64_t count,
                      Clock::time_point now) const;

  const std::chrono::milliseconds window_;
  const Writer writer_;
  std::mutex mutex_;
  std::map<std::string, Kind, std::less<>> kinds_;
};

}  // namespace corral::api
