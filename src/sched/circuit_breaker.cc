#include "sched/circuit_breaker.h"

#include <algorithm>

namespace corral::sched {

namespace {

std::chrono::seconds seconds_of(const policy::Setting<int64_t>& setting) {
  return std::chrono::seconds(std::max<int64_t>(setting.value, 1));
}

int64_t whole_seconds_up(BreakerClock::duration duration) {
  auto seconds = std::chrono::ceil<std::chrono::seconds>(duration).count();
  return std::max<int64_t>(seconds, 1);
}

}  // namespace

std::string_view to_string(BreakerState state) {
  switch (state) {
    case BreakerState::closed:
      return "closed";
    case BreakerState::open:
      return "open";
    case BreakerState::half_open:
      return "half_open";
  }
  return "closed";
}

Transition CircuitBreakers::move(const BreakerKey& key, Breaker& breaker, BreakerState to,
                                 std::string reason) {
  bool was_quarantined = breaker.state != BreakerState::closed;
  bool is_quarantined = to != BreakerState::closed;
  if (!was_quarantined && is_quarantined) ++quarantined_;
  if (was_quarantined && !is_quarantined) --quarantined_;
  Transition transition{key, breaker.state, to, breaker.opened_with, std::move(reason)};
  breaker.state = to;
  return transition;
}

Check CircuitBreakers::check(const BreakerKey& key, const policy::CircuitBreaker& settings,
                             BreakerClock::time_point now) {
  std::lock_guard lock(mutex_);
  Check result{Pass{}, {}};
  auto found = breakers_.find(key);
  if (found == breakers_.end()) return result;
  Breaker& breaker = found->second;
  if (breaker.state == BreakerState::closed) return result;

  if (breaker.state == BreakerState::open) {
    auto half_open_at = breaker.opened_at + seconds_of(settings.cooldown_seconds);
    if (now < half_open_at) {
      result.decision = Quarantined{BreakerState::open, breaker.opened_with, half_open_at - now,
                                    whole_seconds_up(half_open_at - now)};
      return result;
    }
    breaker.probes_running = 0;
    result.transitions.push_back(
        move(key, breaker, BreakerState::half_open,
             "the cool-down of " + std::to_string(settings.cooldown_seconds.value) +
                 " s has passed (" + settings.cooldown_seconds.source + "); letting " +
                 std::to_string(settings.probes.value) + " probe run(s) through"));
  }
  // half_open
  if (breaker.probes_running < settings.probes.value) {
    ++breaker.probes_running;
    result.decision = Pass{true};
    return result;
  }
  result.decision =
      Quarantined{BreakerState::half_open, breaker.opened_with, std::chrono::seconds(1), 1};
  return result;
}

std::vector<Transition> CircuitBreakers::finish(const BreakerKey& key,
                                                const policy::CircuitBreaker& settings, bool probe,
                                                std::optional<Outcome> outcome,
                                                BreakerClock::time_point now) {
  std::lock_guard lock(mutex_);
  std::vector<Transition> transitions;
  bool failed = outcome && is_failure(*outcome);
  auto found = breakers_.find(key);

  if (probe) {
    if (found == breakers_.end() || found->second.state != BreakerState::half_open)
      return transitions;  // forgotten or decided by another probe meanwhile
    Breaker& breaker = found->second;
    breaker.probes_running = std::max<int64_t>(breaker.probes_running - 1, 0);
    if (failed) {
      breaker.opened_at = now;
      breaker.opened_with = 1;
      transitions.push_back(move(key, breaker, BreakerState::open,
                                 "a probe run ended " + std::string(to_string(*outcome)) +
                                     "; quarantined for another " +
                                     std::to_string(settings.cooldown_seconds.value) + " s"));
    } else if (outcome && (*outcome == Outcome::ok || *outcome == Outcome::script_error)) {
      transitions.push_back(move(key, breaker, BreakerState::closed,
                                 "a probe run ended " + std::string(to_string(*outcome)) +
                                     "; the version runs normally again"));
      breaker.failures.clear();
      breaker.opened_with = 0;
    }
    return transitions;
  }

  if (!failed) return transitions;
  if (found == breakers_.end()) {
    if (!make_room(now)) return transitions;
    found = breakers_.emplace(key, Breaker{}).first;
  }
  Breaker& breaker = found->second;
  if (breaker.state != BreakerState::closed) return transitions;
  auto window = seconds_of(settings.window_seconds);
  breaker.window = window;
  breaker.failures.push_back(now);
  while (!breaker.failures.empty() && breaker.failures.front() <= now - window)
    breaker.failures.pop_front();
  while (static_cast<int64_t>(breaker.failures.size()) > settings.failures.value)
    breaker.failures.pop_front();
  auto in_window = static_cast<int64_t>(breaker.failures.size());
  if (in_window < settings.failures.value) return transitions;
  breaker.opened_at = now;
  breaker.opened_with = in_window;
  breaker.probes_running = 0;
  breaker.failures.clear();
  transitions.push_back(
      move(key, breaker, BreakerState::open,
           std::to_string(in_window) + " crashed or limit_exceeded outcomes within " +
               std::to_string(settings.window_seconds.value) + " s (" + settings.failures.source +
               "); quarantined for " + std::to_string(settings.cooldown_seconds.value) + " s"));
  return transitions;
}

std::vector<Transition> CircuitBreakers::quarantine(const BreakerKey& key,
                                                    const policy::CircuitBreaker& settings,
                                                    std::string reason,
                                                    BreakerClock::time_point now) {
  std::lock_guard lock(mutex_);
  auto found = breakers_.find(key);
  if (found == breakers_.end()) {
    if (!make_room(now)) return {};
    found = breakers_.emplace(key, Breaker{}).first;
  }
  Breaker& breaker = found->second;
  if (breaker.state != BreakerState::closed) return {};
  breaker.opened_at = now;
  breaker.opened_with = static_cast<int64_t>(breaker.failures.size());
  breaker.probes_running = 0;
  breaker.failures.clear();
  breaker.window = seconds_of(settings.window_seconds);
  return {
      move(key, breaker, BreakerState::open,
           reason + "; quarantined for " + std::to_string(settings.cooldown_seconds.value) + " s")};
}

bool CircuitBreakers::make_room(BreakerClock::time_point now) {
  if (breakers_.size() < max_breakers_) return true;
  auto forgettable = [&](const Breaker& breaker) {
    return breaker.state == BreakerState::closed &&
           (breaker.failures.empty() || breaker.failures.back() <= now - breaker.window);
  };
  std::erase_if(breakers_, [&](const auto& entry) { return forgettable(entry.second); });
  if (breakers_.size() < max_breakers_) return true;
  auto oldest = breakers_.end();
  for (auto it = breakers_.begin(); it != breakers_.end(); ++it) {
    if (it->second.state != BreakerState::closed) continue;
    if (oldest == breakers_.end() || it->second.failures.back() < oldest->second.failures.back()) {
      oldest = it;
    }
  }
  if (oldest == breakers_.end()) return false;
  breakers_.erase(oldest);
  return true;
}

BreakerState CircuitBreakers::state(const BreakerKey& key) const {
  std::lock_guard lock(mutex_);
  auto found = breakers_.find(key);
  return found == breakers_.end() ? BreakerState::closed : found->second.state;
}

size_t CircuitBreakers::quarantined() const {
  std::lock_guard lock(mutex_);
  return quarantined_;
}

size_t CircuitBreakers::tracked() const {
  std::lock_guard lock(mutex_);
  return breakers_.size();
}

}  // namespace corral::sched
