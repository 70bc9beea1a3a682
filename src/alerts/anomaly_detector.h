// Anomaly alerts (issue 27): a rolling baseline per script version, and an alert when a version's
// recent runs depart from it (docs/observability.md, "Anomaly alerts").
//
// For each version, runs are gathered in windows of the policy's alerts.window_seconds. A window
// that ends is folded into the version's baseline: exponentially decayed sums (each earlier window
// weighs kBaselineDecay as much as the one after it), so the baseline is about the last ten
// windows. Four rules compare the window under way with the baseline, once the baseline holds
// warmup_runs runs and the window min_runs:
//   error_rate   the window's share of runs ending script_error, limit_exceeded, crashed or denied
//                is above the baseline's + error_rate_increase;
//   latency_p99  the window's p99 run time is above latency_factor × the baseline's p99: more than
//                1 % of its runs, and at least kMinSlowRuns, took longer (one slow cold start does
//                not raise it);
//   fuel         the window's mean fuel per run is above fuel_factor × the baseline's;
//   memory       the window's mean peak memory per run is above memory_factor × the baseline's.
// The baseline figures are floored (kLatencyFloorMs, kFuelFloor, kMemoryFloorBytes), so that a
// version doing next to nothing does not alert on noise. A rule is raised once, when it first
// holds, and cleared when a window of at least min_runs runs ends without it holding. While a
// rule of a version is raised, and in a window that raised one, the version's windows are not
// folded into its baseline: an anomaly does not become the new normal.
//
// Contract:
// - Time is a parameter (`now`), never read here: tests move a clock, corrald passes
//   steady_clock::now(). Settings come with each call (the policy may change).
// - observe() does O(1) work under one mutex: a hash lookup, a few additions and comparisons with
//   figures computed when a window was folded; folding a window costs O(kLatencyBuckets), once
//   per window. Nothing is allocated for a known version (a change allocates its Change).
// - Memory is bounded: at most max_versions versions are tracked (under 1 KB each); a new
//   version past that forgets the one least recently run, with its baseline and raised alerts.
// - Thread-safe. Each raise and clear is returned exactly once, to the caller whose run caused it.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "invocation/invocation.h"
#include "policy/policy.h"

namespace corral::alerts {

using AlertClock = std::chrono::steady_clock;

enum class Rule { error_rate, latency_p99, fuel, memory };
inline constexpr std::array kRules = {Rule::error_rate, Rule::latency_p99, Rule::fuel,
                                      Rule::memory};
// "error_rate", "latency_p99", "fuel", "memory": as in logs, metrics and webhooks.
std::string_view to_string(Rule rule);

inline constexpr double kBaselineDecay = 0.9;
inline constexpr int64_t kMinSlowRuns = 3;
inline constexpr double kLatencyFloorMs = 5;
inline constexpr double kFuelFloor = 10'000;
inline constexpr double kMemoryFloorBytes = 1 << 20;
inline constexpr size_t kDefaultMaxVersions = 10'000;
inline constexpr size_t kLatencyBuckets = 48;  // 0.05 ms × √2^i: up to about 10 minutes

// tenant is the tenant's id (stable across renames), as in sched::BreakerKey.
struct VersionKey {
  std::string tenant;
  std::string script;
  int64_t version = 0;
  bool operator==(const VersionKey&) const = default;
};

// What one run of the version did.
struct RunFigures {
  Outcome outcome = Outcome::ok;
  double duration_ms = 0;
  int64_t fuel = 0;
  int64_t memory_peak_bytes = 0;
};

// A rule raised or cleared for a version.
struct Change {
  VersionKey key;
  Rule rule = Rule::error_rate;
  bool raised = true;         // false: cleared
  double value = 0;           // the window's figure (error rate, p99 ms, mean fuel, mean bytes)
  double baseline = 0;        // the baseline's
  double threshold = 0;       // what value had to pass
  int64_t window_runs = 0;    // runs in the window judged
  int64_t baseline_runs = 0;  // runs ever folded into the baseline
  std::string setting;        // the policy rule of the threshold ("defaults.alerts.fuel_factor")
  std::string reason;         // in a sentence
};

class AnomalyDetector {
 public:
  explicit AnomalyDetector(size_t max_versions = kDefaultMaxVersions);
  AnomalyDetector(const AnomalyDetector&) = delete;
  AnomalyDetector& operator=(const AnomalyDetector&) = delete;

  // After a run of `key`. Runs that say nothing about the version (rejected, invalid) are not
  // counted; nothing is counted when settings.enabled is false.
  std::vector<Change> observe(const VersionKey& key, const RunFigures& run,
                              const policy::Alerts& settings, AlertClock::time_point now);

  // Rules raised now, over every tracked version, for the gauge.
  size_t active() const;
  size_t tracked() const;

  // Outcomes the error_rate rule counts as errors; rejected and invalid are not judged at all.
  static bool is_error(Outcome outcome) {
    return outcome == Outcome::script_error || outcome == Outcome::limit_exceeded ||
           outcome == Outcome::crashed || outcome == Outcome::denied;
  }
  static bool judged(Outcome outcome) {
    return outcome != Outcome::rejected && outcome != Outcome::invalid;
  }

 private:
  struct Window {
    AlertClock::time_point start{};
    int64_t runs = 0;
    int64_t errors = 0;
    int64_t slow = 0;  // runs above the latency threshold in force when they ended
    double fuel = 0;
    double memory = 0;
    bool raised_any = false;
    std::array<uint32_t, kLatencyBuckets> latency{};
  };
  struct Baseline {
    double runs = 0;  // decayed sums
    double errors = 0;
    double fuel = 0;
    double memory = 0;
    std::array<double, kLatencyBuckets> latency{};
    int64_t runs_seen = 0;  // not decayed: for the warm-up
    double p99_ms = 0;      // of `latency`, computed when a window is folded
  };
  struct Tracked {
    Window window;
    Baseline baseline;
    std::array<bool, kRules.size()> raised{};
    std::list<const VersionKey*>::iterator recent;
  };
  struct KeyHash {
    size_t operator()(const VersionKey& key) const;
  };

  Tracked& find_or_add(const VersionKey& key, AlertClock::time_point now);
  void end_window(const VersionKey& key, Tracked& tracked, const policy::Alerts& settings,
                  AlertClock::time_point now, std::vector<Change>& changes);
  // Whether the rule holds for the window under way: O(1), nothing allocated.
  static bool holds(const Tracked& tracked, Rule rule, const policy::Alerts& settings);
  // The rule's figures for the window under way, for a change; raised is whether the rule holds.
  static Change judge(const VersionKey& key, const Tracked& tracked, Rule rule,
                      const policy::Alerts& settings);

  const size_t max_versions_;
  mutable std::mutex mutex_;
  std::unordered_map<VersionKey, Tracked, KeyHash> versions_;
  std::list<const VersionKey*> recent_;  // most recently run first
  size_t active_ = 0;
};

}  // namespace corral::alerts
