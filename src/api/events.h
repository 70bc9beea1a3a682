// corrald's log events: what happened to a tenant's scripts or to the policy, one JSON line each
// with a stable "event" name beside its "msg" (docs/observability.md lists every one), so that a
// log pipeline can select them without parsing prose. They are logged in addition to the audit
// entries and counters that record the same things.
#pragma once

#include <spdlog/common.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace corral::store {
class StorageUnavailable;
}

namespace corral::api {

// Writes {"event": event, "level": …, "msg": message, …fields, "time": …} at `level`.
void log_event(spdlog::level::level_enum level, std::string_view event, std::string_view message,
               nlohmann::json fields);

// The store could not write: its cause (the database, SQLite's message, errno) goes to the log,
// once per 10 s with the count of failures since, as every write fails alike until the operator
// acts.
void log_storage_failure(const store::StorageUnavailable& failure);

// Events that can come by the thousand a second (quota refusals of a flooding tenant): the first
// of a key in a window is written at once, the rest of that window are counted and written as one
// line, with "count" and "over_seconds", when the window ends, so a steady flood leaves about one
// line per key per window (the same scheme as the refusal log, refusal_log.h). A thread of its
// own writes the counts when due; what is pending at destruction is written then. Thread-safe.
class ThrottledEvents {
 public:
  using Clock = std::chrono::steady_clock;

  ThrottledEvents(std::chrono::milliseconds window, spdlog::level::level_enum level,
                  std::string event, std::string message);
  ~ThrottledEvents();
  ThrottledEvents(const ThrottledEvents&) = delete;
  ThrottledEvents& operator=(const ThrottledEvents&) = delete;

  // One occurrence under `key` (a tenant and a quota, say), described by `fields`; the line
  // counted for a window carries the fields of its last occurrence.
  void note(const std::string& key, nlohmann::json fields, Clock::time_point now = Clock::now());

  // Writes the counts whose window has ended by `now`, or all of them.
  void flush(Clock::time_point now, bool everything = false);

 private:
  struct Pending {
    Clock::time_point window_start;
    uint64_t counted = 0;  // since the last line of this key
    nlohmann::json fields;
  };
  void write(const nlohmann::json& fields, uint64_t count, double seconds) const;
  void run();

  const std::chrono::milliseconds window_;
  const spdlog::level::level_enum level_;
  const std::string event_;
  const std::string message_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  // Keys of windows still open; a key whose window ended with nothing counted is forgotten, so
  // the map holds only the keys active in the last window.
  std::map<std::string, Pending> keys_;
  std::thread flusher_;
};

// Quota refusals as log events: one line per tenant and quota every 10 s, with a count.
std::shared_ptr<ThrottledEvents> quota_refusal_events();

}  // namespace corral::api
