// The anomaly detector with a fake clock: every time is given, so every window ends exactly when
// the test says.
#include "alerts/anomaly_detector.h"

#include <gtest/gtest.h>

#include "sched/circuit_breaker.h"

namespace corral::alerts {
namespace {

using std::chrono::seconds;

const AlertClock::time_point kStart = AlertClock::time_point{} + std::chrono::hours(1000);
const VersionKey kKey{"tenant-1", "orders", 3};

policy::Alerts settings() {
  policy::Alerts s;
  s.window_seconds = {10, "tenants.acme.alerts.window_seconds"};
  s.min_runs = {10, "tenants.acme.alerts.min_runs"};
  s.warmup_runs = {50, "tenants.acme.alerts.warmup_runs"};
  s.error_rate_increase = {0.2, "defaults.alerts.error_rate_increase"};
  s.latency_factor = {3, "tenants.acme.alerts.latency_factor"};
  s.fuel_factor = {3, "defaults.alerts.fuel_factor"};
  s.memory_factor = {3, "defaults.alerts.memory_factor"};
  return s;
}

RunFigures healthy() {
  return {.outcome = Outcome::ok, .duration_ms = 20, .fuel = 50'000, .memory_peak_bytes = 2 << 20};
}

class AnomalyDetectorTest : public ::testing::Test {
 protected:
  // `count` runs spread over the window that starts at `window` × window_seconds after kStart.
  std::vector<Change> runs(int window, int count, RunFigures run, const VersionKey& key = kKey) {
    std::vector<Change> changes;
    for (int i = 0; i < count; ++i) {
      auto at = kStart + seconds(10 * window) + std::chrono::milliseconds(i * 9000 / count);
      for (auto& change : detector_.observe(key, run, settings_, at))
        changes.push_back(std::move(change));
    }
    return changes;
  }
  // Windows 0 .. windows-1 of healthy runs: a baseline of windows × 20 runs.
  void warm_up(int windows = 3) {
    for (int window = 0; window < windows; ++window)
      ASSERT_TRUE(runs(window, 20, healthy()).empty());
  }

  AnomalyDetector detector_;
  policy::Alerts settings_ = settings();
};

TEST_F(AnomalyDetectorTest, NothingIsRaisedBeforeTheBaselineHasWarmedUp) {
  // 40 runs folded (two windows): fewer than warmup_runs (50), so a failing window says nothing.
  warm_up(2);
  RunFigures failing = healthy();
  failing.outcome = Outcome::crashed;
  EXPECT_TRUE(runs(2, 20, failing).empty());
  EXPECT_EQ(detector_.active(), 0u);
}

TEST_F(AnomalyDetectorTest, AVersionThatStartsFailingRaisesTheErrorRateOnceAtMinRuns) {
  warm_up();
  RunFigures failing = healthy();
  failing.outcome = Outcome::script_error;
  auto changes = runs(3, 9, failing);
  EXPECT_TRUE(changes.empty()) << "judged before min_runs";
  changes = runs(3, 1, failing);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].rule, Rule::error_rate);
  EXPECT_TRUE(changes[0].raised);
  EXPECT_EQ(changes[0].key, kKey);
  EXPECT_DOUBLE_EQ(changes[0].value, 1.0);
  EXPECT_DOUBLE_EQ(changes[0].baseline, 0.0);
  EXPECT_DOUBLE_EQ(changes[0].threshold, 0.2);
  EXPECT_EQ(changes[0].window_runs, 10);
  EXPECT_EQ(changes[0].baseline_runs, 60);
  EXPECT_EQ(changes[0].setting, "defaults.alerts.error_rate_increase");
  EXPECT_NE(changes[0].reason.find("error rate"), std::string::npos) << changes[0].reason;
  EXPECT_EQ(detector_.active(), 1u);
  // Raised once: more failures in the same window change nothing.
  EXPECT_TRUE(runs(3, 5, failing).empty());
}

TEST_F(AnomalyDetectorTest, ErrorsWithinTheAllowedIncreaseRaiseNothing) {
  warm_up();
  // 2 errors in 20 runs: 0.1, under the baseline's 0 + 0.2.
  RunFigures failing = healthy();
  failing.outcome = Outcome::limit_exceeded;
  EXPECT_TRUE(runs(3, 18, healthy()).empty());
  EXPECT_TRUE(runs(3, 2, failing).empty());
  // Refusals and invalid inputs are the callers' doing, not judged at all.
  RunFigures refused = healthy();
  refused.outcome = Outcome::rejected;
  EXPECT_TRUE(runs(3, 50, refused).empty());
  EXPECT_EQ(detector_.active(), 0u);
}

TEST_F(AnomalyDetectorTest, AVersionTenTimesSlowerRaisesTheLatencyRule) {
  warm_up();
  RunFigures slow = healthy();
  slow.duration_ms = 200;  // 10 × the baseline's 20 ms
  auto changes = runs(3, 10, slow);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].rule, Rule::latency_p99);
  EXPECT_GE(changes[0].baseline, 20.0);  // the bucket holding 20 ms
  EXPECT_LT(changes[0].baseline, 30.0);
  EXPECT_GE(changes[0].value, 200.0);
  EXPECT_EQ(changes[0].setting, "tenants.acme.alerts.latency_factor");
}

TEST_F(AnomalyDetectorTest, OneOrTwoSlowRunsAreNotAnAlert) {
  warm_up();
  RunFigures slow = healthy();
  slow.duration_ms = 500;  // a cold start, say
  EXPECT_TRUE(runs(3, 2, slow).empty());
  EXPECT_TRUE(runs(3, 30, healthy()).empty());
}

TEST_F(AnomalyDetectorTest, FuelAndMemoryAboveTheFactorRaiseTheirRules) {
  warm_up();
  RunFigures hungry = healthy();
  hungry.fuel = 200'000;                // 4 × 50,000
  hungry.memory_peak_bytes = 10 << 20;  // 5 × 2 MiB
  auto changes = runs(3, 10, hungry);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].rule, Rule::fuel);
  EXPECT_DOUBLE_EQ(changes[0].baseline, 50'000);
  EXPECT_DOUBLE_EQ(changes[0].threshold, 150'000);
  EXPECT_EQ(changes[1].rule, Rule::memory);
  EXPECT_EQ(detector_.active(), 2u);
}

TEST_F(AnomalyDetectorTest, ABaselineOfNextToNothingIsFlooredAgainstNoise) {
  RunFigures tiny = {
      .outcome = Outcome::ok, .duration_ms = 0.2, .fuel = 0, .memory_peak_bytes = 30'000};
  for (int window = 0; window < 3; ++window) ASSERT_TRUE(runs(window, 20, tiny).empty());
  // 10 × slower, more fuel and memory, but still under the floors × 3.
  RunFigures still_small = {
      .outcome = Outcome::ok, .duration_ms = 2, .fuel = 20'000, .memory_peak_bytes = 300'000};
  EXPECT_TRUE(runs(3, 20, still_small).empty());
}

TEST_F(AnomalyDetectorTest,
       ClearedWhenAWindowOfMinRunsEndsHealthyAndTheAnomalyNeverJoinsTheBaseline) {
  warm_up();
  RunFigures failing = healthy();
  failing.outcome = Outcome::crashed;
  ASSERT_EQ(runs(3, 20, failing).size(), 1u);
  // The next window still fails: it ends the failing window without clearing, nothing new.
  EXPECT_TRUE(runs(4, 20, failing).empty());
  // A window with too few runs to judge ends without clearing either.
  EXPECT_TRUE(runs(5, 5, healthy()).empty());
  EXPECT_EQ(detector_.active(), 1u);
  // Window 5 had 5 healthy runs: it ends at window 6 without clearing (fewer than min_runs).
  EXPECT_TRUE(runs(6, 20, healthy()).empty());
  // Window 6 was healthy with 20 runs: the first run of window 7 ends it and clears the rule.
  auto changes = runs(7, 1, healthy());
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].rule, Rule::error_rate);
  EXPECT_FALSE(changes[0].raised);
  EXPECT_DOUBLE_EQ(changes[0].value, 0.0);
  EXPECT_DOUBLE_EQ(changes[0].baseline, 0.0) << "the failing windows were folded in";
  EXPECT_EQ(detector_.active(), 0u);
  // And the same failure raises it again.
  EXPECT_EQ(runs(8, 20, failing).size(), 1u);
}

TEST_F(AnomalyDetectorTest, VersionsAreJudgedApartAndDisabledAlertsCountNothing) {
  warm_up();
  const VersionKey other{"tenant-1", "orders", 4};
  RunFigures failing = healthy();
  failing.outcome = Outcome::crashed;
  // Version 4 has no baseline: its failures raise nothing, and version 3 stays healthy.
  EXPECT_TRUE(runs(3, 20, failing, other).empty());
  EXPECT_TRUE(runs(3, 20, healthy()).empty());
  settings_.enabled = {false, "tenants.acme.alerts.enabled"};
  EXPECT_TRUE(runs(4, 20, failing).empty());
  EXPECT_EQ(detector_.tracked(), 2u);
}

TEST_F(AnomalyDetectorTest, TheLeastRecentlyRunVersionIsForgottenWhenFull) {
  AnomalyDetector small(2);
  for (int64_t version = 1; version <= 3; ++version)
    small.observe({"t", "s", version}, healthy(), settings_, kStart);
  EXPECT_EQ(small.tracked(), 2u);
}

TEST(CircuitBreakerQuarantine, OpensAClosedBreakerOnceAndItsCoolDownAndProbesApply) {
  sched::CircuitBreakers breakers;
  policy::CircuitBreaker breaker;
  breaker.cooldown_seconds = {30, "defaults.circuit_breaker.cooldown_seconds"};
  const sched::BreakerKey key{"tenant-1", "orders", 3};
  auto opened = breakers.quarantine(key, breaker, "anomaly alert error_rate", kStart);
  ASSERT_EQ(opened.size(), 1u);
  EXPECT_EQ(opened[0].from, sched::BreakerState::closed);
  EXPECT_EQ(opened[0].to, sched::BreakerState::open);
  EXPECT_NE(opened[0].reason.find("anomaly alert error_rate"), std::string::npos);
  EXPECT_TRUE(breakers.quarantine(key, breaker, "again", kStart).empty());
  EXPECT_EQ(breakers.quarantined(), 1u);
  auto refused = breakers.check(key, breaker, kStart + seconds(29));
  EXPECT_TRUE(std::holds_alternative<sched::Quarantined>(refused.decision));
  auto probe = breakers.check(key, breaker, kStart + seconds(30));
  ASSERT_TRUE(std::holds_alternative<sched::Pass>(probe.decision));
  EXPECT_TRUE(std::get<sched::Pass>(probe.decision).probe);
  auto closed = breakers.finish(key, breaker, true, Outcome::ok, kStart + seconds(31));
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].to, sched::BreakerState::closed);
}

}  // namespace
}  // namespace corral::alerts
