// Circuit breakers (issue 6, "Containment"): one per script version, so that a version that keeps
// crashing or exceeding its limits is quarantined instead of burning workers, and is tried again
// after a cool-down.
//
// States of the breaker of one (tenant, script, version), with the policy's circuit_breaker
// settings (policy::CircuitBreaker):
//   closed     runs pass. `failures` crashed / limit_exceeded outcomes within `window_seconds`
//              open it. Other outcomes (ok, script_error, denied, …) neither count nor reset: the
//              window alone forgets old failures.
//   open       runs are refused (the version is quarantined) until `cooldown_seconds` after it
//              opened; the first check after that moves it to half_open.
//   half_open  up to `probes` runs are let through as probes; more are refused until one ends.
//              A probe ending ok or script_error (the script ran and answered) closes it; a probe
//              ending crashed or limit_exceeded opens it again for a new cool-down. A probe that
//              ends otherwise (refused by a quota, invalid, abandoned) frees its place and decides
//              nothing.
// Runs that passed while closed and end after the breaker opened decide nothing either: only
// probes speak for a quarantined version.
//
// Contract:
// - Every state change is returned as a Transition to the caller that caused it (a check() or a
//   finish()), exactly once, so that it can be audited and counted; nothing changes state
//   behind the callers' backs.
// - Time is a parameter (`now`), never read here: tests drive a fake clock, corrald passes
//   steady_clock::now().
// - Settings come with each call (the policy may change): a breaker keeps at most `failures`
//   failure times, and a shorter window or cool-down applies from the next call.
// - Thread-safe: one mutex guards all state; each call holds it for O(failures) work, except a
//   sweep.
// - Memory is bounded: a version gets a breaker only when one of its runs fails, so healthy
//   versions cost nothing; at most max_breakers are tracked. When the map is full, closed
//   breakers whose failures have all left their window are forgotten, then the closed breaker
//   whose last failure is oldest. Open and half-open breakers are never forgotten; if every
//   tracked breaker is quarantined, a new failing version goes untracked (its runs pass) until
//   room frees, which docs/operations.md states.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include "invocation/invocation.h"
#include "policy/policy.h"

namespace corral::sched {

using BreakerClock = std::chrono::steady_clock;

inline constexpr size_t kDefaultMaxBreakers = 100'000;

enum class BreakerState { closed, open, half_open };

// "closed", "open", "half_open": as in metrics labels, problems and docs/operations.md.
std::string_view to_string(BreakerState state);

// Which version a breaker guards. tenant is the tenant's id (stable across renames).
struct BreakerKey {
  std::string tenant;
  std::string script;
  int64_t version = 0;

  auto operator<=>(const BreakerKey&) const = default;
};

// One state change, for the audit trail and metrics.
struct Transition {
  BreakerKey key;
  BreakerState from = BreakerState::closed;
  BreakerState to = BreakerState::closed;
  int64_t failures_in_window = 0;  // when it opened: the failures that opened it
  std::string reason;              // what caused it, in a sentence
};

// A run may start. probe is true when it is one of the half-open breaker's probes: finish() must
// then be called for it (with nullopt if it never ran), or its place stays taken.
struct Pass {
  bool probe = false;
};

// The version is quarantined: the run must not start.
struct Quarantined {
  BreakerState state = BreakerState::open;  // open, or half_open with every probe taken
  int64_t failures_in_window = 0;           // the failures that opened it
  // When probes are let through (open), or 1 s from now (half_open: a probe is running).
  BreakerClock::duration half_open_in{};
  int64_t retry_after_seconds = 1;  // half_open_in rounded up, never below 1
};

struct Check {
  std::variant<Pass, Quarantined> decision;
  std::vector<Transition> transitions;  // open → half_open, when this check moved it
};

class CircuitBreakers {
 public:
  explicit CircuitBreakers(size_t max_breakers = kDefaultMaxBreakers)
      : max_breakers_(max_breakers) {}
  CircuitBreakers(const CircuitBreakers&) = delete;
  CircuitBreakers& operator=(const CircuitBreakers&) = delete;

  // Before a run of `key`: whether it may start.
  Check check(const BreakerKey& key, const policy::CircuitBreaker& settings,
              BreakerClock::time_point now);

  // After a run that check() passed: its outcome (nullopt when it never ran, e.g. a quota refused
  // it after the breaker let it through). `probe` as Pass::probe said. Returns the transitions it
  // caused (closed → open, half_open → closed or → open).
  std::vector<Transition> finish(const BreakerKey& key, const policy::CircuitBreaker& settings,
                                 bool probe, std::optional<Outcome> outcome,
                                 BreakerClock::time_point now);

  // Opens the breaker of `key` now, whatever its failures, for an anomaly alert whose policy says
  // `contain: auto` (src/alerts/anomaly_detector.h): the version is quarantined for a cool-down and
  // then probed, as if its failures had opened it. Returns the transition (none when it is already
  // open or half-open, or when every tracked breaker is quarantined and there is no room).
  std::vector<Transition> quarantine(const BreakerKey& key, const policy::CircuitBreaker& settings,
                                     std::string reason, BreakerClock::time_point now);

  // The state of `key` as of its last call (closed when not tracked), for tests and rollback.
  BreakerState state(const BreakerKey& key) const;
  // Breakers open or half-open: quarantined versions, for the gauge.
  size_t quarantined() const;
  size_t tracked() const;

  // crashed and limit_exceeded: the outcomes that count against a version.
  static bool is_failure(Outcome outcome) {
    return outcome == Outcome::crashed || outcome == Outcome::limit_exceeded;
  }

 private:
  struct Breaker {
    BreakerState state = BreakerState::closed;
    std::deque<BreakerClock::time_point> failures;  // closed: the latest, at most `failures`
    int64_t opened_with = 0;                        // failures in the window when it opened
    BreakerClock::time_point opened_at{};
    int64_t probes_running = 0;
    BreakerClock::duration window{};  // as of the last failure, for sweeping
  };

  Transition move(const BreakerKey& key, Breaker& breaker, BreakerState to, std::string reason);
  bool make_room(BreakerClock::time_point now);

  const size_t max_breakers_;
  mutable std::mutex mutex_;
  std::map<BreakerKey, Breaker> breakers_;
  size_t quarantined_ = 0;
};

}  // namespace corral::sched
