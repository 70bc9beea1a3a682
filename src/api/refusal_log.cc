#include "api/refusal_log.h"

#include <cmath>
#include <vector>

namespace corral::api {

RefusalLog::RefusalLog(std::chrono::milliseconds window, Writer writer)
    : window_(window), writer_(std::move(writer)) {}

nlohmann::json RefusalLog::line(const std::string& kind, const Kind& state, uint64_t count,
                                Clock::time_point now) const {
  auto seconds = std::chrono::duration<double>(now - state.window_start).count();
  return {{"level", "warn"},
          {"msg", "requests refused"},
          {"kind", kind},
          {"status", state.status},
          {"route", state.route},
          {"count", count},
          {"over_seconds", count == 1 ? 0.0 : std::round(seconds * 10) / 10},
          {"hint",
           "refusals shed load and are expected under it: each kind is logged at most once per " +
               std::to_string(window_.count() / 1000) +
               " s with a count; corral_http_requests_total counts every one by route and status"}};
}

std::optional<RefusalLog::Clock::time_point> RefusalLog::note(std::string_view kind,
                                                              std::string_view route, int status,
                                                              Clock::time_point now) {
  std::vector<nlohmann::json> lines;
  std::optional<Clock::time_point> due;
  {
    std::lock_guard guard(mutex_);
    auto found = kinds_.find(kind);
    bool window_over = found == kinds_.end() || now - found->second.window_start >= window_;
    if (found == kinds_.end()) found = kinds_.emplace(std::string(kind), Kind{}).first;
    Kind& state = found->second;
    if (window_over) {
      // A count left from the window before (its flush is due by now) goes first, in order.
      if (state.counted > 0) lines.push_back(line(found->first, state, state.counted, now));
      state.counted = 0;
      state.window_start = now;
    } else if (state.counted++ == 0) {
      due = state.window_start + window_;
    }
    state.route = std::string(route);
    state.status = status;
    if (window_over) lines.push_back(line(found->first, state, 1, now));
  }
  for (auto& text : lines) writer_(std::move(text));
  return due;
}

std::optional<RefusalLog::Clock::time_point> RefusalLog::flush(Clock::time_point now,
                                                               bool everything) {
  std::vector<nlohmann::json> lines;
  std::optional<Clock::time_point> next;
  {
    std::lock_guard guard(mutex_);
    for (auto& [kind, state] : kinds_) {
      if (state.counted == 0) continue;
      auto due = state.window_start + window_;
      if (everything || due <= now) {
        lines.push_back(line(kind, state, state.counted, now));
        state.counted = 0;
        // The next window starts now, so a steady flood keeps to one line per window.
        state.window_start = now;
      } else if (!next || due < *next) {
        next = due;
      }
    }
  }
  for (auto& text : lines) writer_(std::move(text));
  return next;
}

}  // namespace corral::api
