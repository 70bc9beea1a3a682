#include "alerts/anomaly_detector.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

namespace corral::alerts {

namespace {

constexpr double kFirstBucketMs = 0.05;

size_t bucket_of(double ms) {
  if (!(ms > kFirstBucketMs)) return 0;
  double index = std::ceil(2 * std::log2(ms / kFirstBucketMs));
  return std::min(static_cast<size_t>(index), kLatencyBuckets - 1);
}

double bucket_upper_ms(size_t bucket) { return kFirstBucketMs * std::exp2(bucket / 2.0); }

template <typename Counts>
double p99_of(const Counts& counts, double total) {
  if (total <= 0) return 0;
  double rank = total * 0.99;
  double seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= rank) return bucket_upper_ms(i);
  }
  return bucket_upper_ms(counts.size() - 1);
}

double latency_threshold_ms(double baseline_p99, const policy::Alerts& settings) {
  return settings.latency_factor.value * std::max(baseline_p99, kLatencyFloorMs);
}

std::string show(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return text;
}

}  // namespace

std::string_view to_string(Rule rule) {
  switch (rule) {
    case Rule::error_rate:
      return "error_rate";
    case Rule::latency_p99:
      return "latency_p99";
    case Rule::fuel:
      return "fuel";
    case Rule::memory:
      return "memory";
  }
  return "error_rate";
}

size_t AnomalyDetector::KeyHash::operator()(const VersionKey& key) const {
  size_t hash = std::hash<std::string>{}(key.tenant);
  hash = hash * 31 + std::hash<std::string>{}(key.script);
  return hash * 31 + std::hash<int64_t>{}(key.version);
}

AnomalyDetector::AnomalyDetector(size_t max_versions)
    : max_versions_(std::max<size_t>(max_versions, 1)) {}

AnomalyDetector::Tracked& AnomalyDetector::find_or_add(const VersionKey& key,
                                                       AlertClock::time_point now) {
  auto found = versions_.find(key);
  if (found != versions_.end()) {
    recent_.splice(recent_.begin(), recent_, found->second.recent);
    return found->second;
  }
  if (versions_.size() >= max_versions_) {
    auto oldest = versions_.find(*recent_.back());
    for (bool raised : oldest->second.raised) active_ -= raised ? 1 : 0;
    recent_.pop_back();
    versions_.erase(oldest);
  }
  auto [added, inserted] = versions_.emplace(key, Tracked{});
  recent_.push_front(&added->first);
  added->second.recent = recent_.begin();
  added->second.window.start = now;
  return added->second;
}

bool AnomalyDetector::holds(const Tracked& tracked, Rule rule, const policy::Alerts& settings) {
  const Window& window = tracked.window;
  const Baseline& baseline = tracked.baseline;
  double runs = std::max<double>(static_cast<double>(window.runs), 1);
  double baseline_runs = std::max(baseline.runs, 1e-9);
  switch (rule) {
    case Rule::error_rate:
      return static_cast<double>(window.errors) / runs >
             baseline.errors / baseline_runs + settings.error_rate_increase.value;
    case Rule::latency_p99:
      return window.slow * 100 > window.runs && window.slow >= kMinSlowRuns;
    case Rule::fuel:
      return window.fuel / runs >
             settings.fuel_factor.value * std::max(baseline.fuel / baseline_runs, kFuelFloor);
    case Rule::memory:
      return window.memory / runs >
             settings.memory_factor.value *
                 std::max(baseline.memory / baseline_runs, kMemoryFloorBytes);
  }
  return false;
}

Change AnomalyDetector::judge(const VersionKey& key, const Tracked& tracked, Rule rule,
                              const policy::Alerts& settings) {
  const Window& window = tracked.window;
  const Baseline& baseline = tracked.baseline;
  Change change;
  change.key = key;
  change.rule = rule;
  change.window_runs = window.runs;
  change.baseline_runs = baseline.runs_seen;
  double runs = std::max<double>(static_cast<double>(window.runs), 1);
  double baseline_runs = std::max(baseline.runs, 1e-9);
  switch (rule) {
    case Rule::error_rate:
      change.value = static_cast<double>(window.errors) / runs;
      change.baseline = baseline.errors / baseline_runs;
      change.threshold = change.baseline + settings.error_rate_increase.value;
      change.setting = settings.error_rate_increase.source;
      change.raised = change.value > change.threshold;
      break;
    case Rule::latency_p99:
      change.value = p99_of(window.latency, static_cast<double>(window.runs));
      change.baseline = baseline.p99_ms;
      change.threshold = latency_threshold_ms(baseline.p99_ms, settings);
      change.setting = settings.latency_factor.source;
      change.raised = window.slow * 100 > window.runs && window.slow >= kMinSlowRuns;
      break;
    case Rule::fuel:
      change.value = window.fuel / runs;
      change.baseline = baseline.fuel / baseline_runs;
      change.threshold = settings.fuel_factor.value * std::max(change.baseline, kFuelFloor);
      change.setting = settings.fuel_factor.source;
      change.raised = change.value > change.threshold;
      break;
    case Rule::memory:
      change.value = window.memory / runs;
      change.baseline = baseline.memory / baseline_runs;
      change.threshold =
          settings.memory_factor.value * std::max(change.baseline, kMemoryFloorBytes);
      change.setting = settings.memory_factor.source;
      change.raised = change.value > change.threshold;
      break;
  }
  std::string what = rule == Rule::error_rate    ? "error rate"
                     : rule == Rule::latency_p99 ? "p99 run time (ms)"
                     : rule == Rule::fuel        ? "mean fuel per run"
                                                 : "mean memory peak per run (bytes)";
  change.reason = "the " + what + " of its last " + std::to_string(window.runs) + " runs is " +
                  show(change.value) + (change.raised ? ", above " : ", within ") +
                  show(change.threshold) + " (baseline " + show(change.baseline) + " over " +
                  std::to_string(baseline.runs_seen) + " runs; " + change.setting + ")";
  return change;
}

void AnomalyDetector::end_window(const VersionKey& key, Tracked& tracked,
                                 const policy::Alerts& settings, AlertClock::time_point now,
                                 std::vector<Change>& changes) {
  Window& window = tracked.window;
  if (window.runs >= settings.min_runs.value) {
    for (size_t i = 0; i < kRules.size(); ++i) {
      if (!tracked.raised[i]) continue;
      if (holds(tracked, kRules[i], settings)) continue;
      Change change = judge(key, tracked, kRules[i], settings);
      change.raised = false;
      tracked.raised[i] = false;
      --active_;
      changes.push_back(std::move(change));
    }
  }
  bool any_raised =
      std::any_of(tracked.raised.begin(), tracked.raised.end(), [](bool raised) { return raised; });
  if (!window.raised_any && !any_raised && window.runs > 0) {
    Baseline& baseline = tracked.baseline;
    baseline.runs = baseline.runs * kBaselineDecay + static_cast<double>(window.runs);
    baseline.errors = baseline.errors * kBaselineDecay + static_cast<double>(window.errors);
    baseline.fuel = baseline.fuel * kBaselineDecay + window.fuel;
    baseline.memory = baseline.memory * kBaselineDecay + window.memory;
    for (size_t i = 0; i < kLatencyBuckets; ++i)
      baseline.latency[i] = baseline.latency[i] * kBaselineDecay + window.latency[i];
    baseline.runs_seen += window.runs;
    baseline.p99_ms = p99_of(baseline.latency, baseline.runs);
  }
  window = Window{};
  window.start = now;
}

std::vector<Change> AnomalyDetector::observe(const VersionKey& key, const RunFigures& run,
                                             const policy::Alerts& settings,
                                             AlertClock::time_point now) {
  std::vector<Change> changes;
  if (!settings.enabled.value || !judged(run.outcome)) return changes;
  std::lock_guard lock(mutex_);
  Tracked& tracked = find_or_add(key, now);
  auto window_length = std::chrono::seconds(std::max<int64_t>(settings.window_seconds.value, 1));
  if (now - tracked.window.start >= window_length) end_window(key, tracked, settings, now, changes);

  Window& window = tracked.window;
  ++window.runs;
  if (is_error(run.outcome)) ++window.errors;
  if (run.duration_ms > latency_threshold_ms(tracked.baseline.p99_ms, settings)) ++window.slow;
  window.fuel += static_cast<double>(run.fuel);
  window.memory += static_cast<double>(run.memory_peak_bytes);
  ++window.latency[bucket_of(run.duration_ms)];

  if (tracked.baseline.runs_seen < settings.warmup_runs.value ||
      window.runs < settings.min_runs.value) {
    return changes;
  }
  for (size_t i = 0; i < kRules.size(); ++i) {
    if (tracked.raised[i] || !holds(tracked, kRules[i], settings)) continue;
    Change change = judge(key, tracked, kRules[i], settings);
    change.raised = true;
    tracked.raised[i] = true;
    window.raised_any = true;
    ++active_;
    changes.push_back(std::move(change));
  }
  return changes;
}

size_t AnomalyDetector::active() const {
  std::lock_guard lock(mutex_);
  return active_;
}

size_t AnomalyDetector::tracked() const {
  std::lock_guard lock(mutex_);
  return versions_.size();
}

}  // namespace corral::alerts
