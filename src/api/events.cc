#include "api/events.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <mutex>
#include <utility>
#include <vector>

#include "store/store.h"

namespace corral::api {

void log_event(spdlog::level::level_enum level, std::string_view event, std::string_view message,
               nlohmann::json fields) {
  fields["event"] = event;
  fields["level"] = spdlog::level::to_string_view(level).data();
  fields["msg"] = message;
  fields["time"] = store::iso8601(store::now_ms());  // as the access log writes it
  spdlog::log(level, fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void log_storage_failure(const store::StorageUnavailable& failure) {
  using nlohmann::json;
  static std::mutex mutex;
  static std::chrono::steady_clock::time_point last{};
  static uint64_t unlogged = 0;
  auto now = std::chrono::steady_clock::now();
  uint64_t since;
  {
    std::lock_guard guard(mutex);
    ++unlogged;
    if (last != std::chrono::steady_clock::time_point{} && now - last < std::chrono::seconds(10))
      return;
    last = now;
    since = std::exchange(unlogged, 0);
  }
  spdlog::error(
      json({{"level", "error"},
            {"msg", failure.disk_full() ? "cannot write to the store: the disk is full"
                                        : "cannot reach or write the store"},
            {"error", failure.what()},
            {"failures_since_last_logged", since},
            {"hint", failure.disk_full()
                         ? "free space on the disk of the data directory; writes are answered 507 "
                           "until then, reads are served; logged at most every 10 s"
                         : "check the store: the disk of the data directory and the system log, "
                           "or the PostgreSQL server --store names; logged at most every 10 s"}})
          .dump(-1, ' ', false, json::error_handler_t::replace));
}
ThrottledEvents::ThrottledEvents(std::chrono::milliseconds window, spdlog::level::level_enum level,
                                 std::string event, std::string message)
    : window_(window),
      level_(level),
      event_(std::move(event)),
      message_(std::move(message)),
      flusher_([this] { run(); }) {}

ThrottledEvents::~ThrottledEvents() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  flusher_.join();
  flush(Clock::now(), true);
}

void ThrottledEvents::write(const nlohmann::json& fields, uint64_t count, double seconds) const {
  nlohmann::json line = fields;
  line["count"] = count;
  line["over_seconds"] = count == 1 ? 0.0 : std::round(seconds * 10) / 10;
  log_event(level_, event_, message_, std::move(line));
}

void ThrottledEvents::note(const std::string& key, nlohmann::json fields, Clock::time_point now) {
  std::optional<std::pair<nlohmann::json, std::pair<uint64_t, double>>> left_over;
  bool first = false;
  {
    std::lock_guard lock(mutex_);
    auto [found, added] = keys_.try_emplace(key);
    Pending& pending = found->second;
    if (added || now - pending.window_start >= window_) {
      // A count left from the window before (its line is due by now) goes first, in order.
      if (!added && pending.counted > 0) {
        left_over = {
            std::move(pending.fields),
            {pending.counted, std::chrono::duration<double>(now - pending.window_start).count()}};
      }
      pending.window_start = now;
      pending.counted = 0;
      first = true;
    } else {
      ++pending.counted;
      pending.fields = fields;
    }
    // The flusher learns of a new window's end, or of a count to write at it.
    if (added || pending.counted == 1) wake_.notify_all();
  }
  if (left_over) write(left_over->first, left_over->second.first, left_over->second.second);
  if (first) write(fields, 1, 0);
}

void ThrottledEvents::flush(Clock::time_point now, bool everything) {
  std::vector<std::pair<nlohmann::json, std::pair<uint64_t, double>>> lines;
  {
    std::lock_guard lock(mutex_);
    for (auto it = keys_.begin(); it != keys_.end();) {
      Pending& pending = it->second;
      bool due = everything || now - pending.window_start >= window_;
      if (!due) {
        ++it;
        continue;
      }
      if (pending.counted == 0) {
        it = keys_.erase(it);
        continue;
      }
      lines.push_back(
          {std::move(pending.fields),
           {pending.counted, std::chrono::duration<double>(now - pending.window_start).count()}});
      // The next window starts now, so a steady flood keeps to one line per window.
      pending.counted = 0;
      pending.window_start = now;
      ++it;
    }
  }
  for (const auto& [fields, figures] : lines) write(fields, figures.first, figures.second);
}

void ThrottledEvents::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    std::optional<Clock::time_point> next;
    for (const auto& [key, pending] : keys_) {
      auto due = pending.window_start + window_;
      if (!next || due < *next) next = due;
    }
    if (next) {
      wake_.wait_until(lock, *next);
    } else {
      wake_.wait(lock);
    }
    if (stopping_) break;
    lock.unlock();
    flush(Clock::now());
    lock.lock();
  }
}

std::shared_ptr<ThrottledEvents> quota_refusal_events() {
  return std::make_shared<ThrottledEvents>(std::chrono::seconds(10), spdlog::level::warn,
                                           "quota.refused", "invocations refused by a quota");
}

}  // namespace corral::api
