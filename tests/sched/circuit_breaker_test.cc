// The circuit breaker state machine with a fake clock: every time is given, so every transition
// is exact.
#include "sched/circuit_breaker.h"

#include <gtest/gtest.h>

#include <thread>

namespace corral::sched {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const BreakerClock::time_point kStart = BreakerClock::time_point{} + std::chrono::hours(1000);
const BreakerKey kKey{"tenant-1", "orders", 3};

policy::CircuitBreaker settings(int64_t failures = 3, int64_t window = 60, int64_t cooldown = 10,
                                int64_t probes = 1) {
  policy::CircuitBreaker s;
  s.failures = {failures, "tenants.acme.circuit_breaker.failures"};
  s.window_seconds = {window, "tenants.acme.circuit_breaker.window_seconds"};
  s.cooldown_seconds = {cooldown, "tenants.acme.circuit_breaker.cooldown_seconds"};
  s.probes = {probes, "defaults.circuit_breaker.probes"};
  return s;
}

bool passes(const Check& check) { return std::holds_alternative<Pass>(check.decision); }
bool is_probe(const Check& check) { return passes(check) && std::get<Pass>(check.decision).probe; }

class CircuitBreakerTest : public ::testing::Test {
 protected:
  std::vector<Transition> fail(BreakerClock::time_point at, Outcome outcome = Outcome::crashed,
                               const BreakerKey& key = kKey) {
    return breakers_.finish(key, settings_, false, outcome, at);
  }

  CircuitBreakers breakers_;
  policy::CircuitBreaker settings_ = settings();
};

TEST_F(CircuitBreakerTest, OpensAfterNFailuresWithinTheWindowAndRefusesUntilTheCoolDown) {
  EXPECT_TRUE(passes(breakers_.check(kKey, settings_, kStart)));
  EXPECT_TRUE(fail(kStart).empty());
  EXPECT_TRUE(fail(kStart + seconds(1), Outcome::limit_exceeded).empty());
  // Other outcomes neither count nor reset.
  EXPECT_TRUE(breakers_.finish(kKey, settings_, false, Outcome::ok, kStart + seconds(2)).empty());
  EXPECT_TRUE(
      breakers_.finish(kKey, settings_, false, Outcome::script_error, kStart + seconds(2)).empty());
  EXPECT_EQ(breakers_.state(kKey), BreakerState::closed);

  auto opened = fail(kStart + seconds(3));
  ASSERT_EQ(opened.size(), 1u);
  EXPECT_EQ(opened[0].key, kKey);
  EXPECT_EQ(opened[0].from, BreakerState::closed);
  EXPECT_EQ(opened[0].to, BreakerState::open);
  EXPECT_EQ(opened[0].failures_in_window, 3);
  EXPECT_NE(opened[0].reason.find("tenants.acme.circuit_breaker.failures"), std::string::npos)
      << opened[0].reason;
  EXPECT_EQ(breakers_.quarantined(), 1u);

  Check refused = breakers_.check(kKey, settings_, kStart + seconds(3) + milliseconds(2500));
  ASSERT_FALSE(passes(refused));
  const auto& quarantined = std::get<Quarantined>(refused.decision);
  EXPECT_EQ(quarantined.state, BreakerState::open);
  EXPECT_EQ(quarantined.failures_in_window, 3);
  EXPECT_EQ(quarantined.half_open_in, milliseconds(7500));
  EXPECT_EQ(quarantined.retry_after_seconds, 8);
  EXPECT_TRUE(refused.transitions.empty());

  // Another version of the same script is not affected.
  EXPECT_TRUE(passes(breakers_.check({"tenant-1", "orders", 2}, settings_, kStart + seconds(4))));
}

TEST_F(CircuitBreakerTest, FailuresOlderThanTheWindowAreForgotten) {
  fail(kStart);
  fail(kStart + seconds(30));
  EXPECT_TRUE(fail(kStart + seconds(60)).empty());  // the first has left the 60 s window
  EXPECT_EQ(breakers_.state(kKey), BreakerState::closed);
  EXPECT_EQ(fail(kStart + seconds(61)).size(), 1u);
  EXPECT_EQ(breakers_.state(kKey), BreakerState::open);
}

TEST_F(CircuitBreakerTest, AfterTheCoolDownOneProbePassesAndItsSuccessClosesTheBreaker) {
  fail(kStart);
  fail(kStart);
  fail(kStart);
  Check first = breakers_.check(kKey, settings_, kStart + seconds(10));
  ASSERT_TRUE(is_probe(first));
  ASSERT_EQ(first.transitions.size(), 1u);
  EXPECT_EQ(first.transitions[0].from, BreakerState::open);
  EXPECT_EQ(first.transitions[0].to, BreakerState::half_open);
  EXPECT_EQ(breakers_.state(kKey), BreakerState::half_open);

  // Only one probe at a time; the others are told to come back in a second.
  Check second = breakers_.check(kKey, settings_, kStart + seconds(10));
  ASSERT_FALSE(passes(second));
  EXPECT_EQ(std::get<Quarantined>(second.decision).state, BreakerState::half_open);
  EXPECT_EQ(std::get<Quarantined>(second.decision).retry_after_seconds, 1);

  // A run that passed before the breaker opened and ends now decides nothing.
  EXPECT_TRUE(fail(kStart + seconds(11)).empty());
  EXPECT_EQ(breakers_.state(kKey), BreakerState::half_open);

  auto closed =
      breakers_.finish(kKey, settings_, true, Outcome::script_error, kStart + seconds(11));
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].from, BreakerState::half_open);
  EXPECT_EQ(closed[0].to, BreakerState::closed);
  EXPECT_EQ(breakers_.quarantined(), 0u);
  EXPECT_TRUE(passes(breakers_.check(kKey, settings_, kStart + seconds(11))));
  // Closed afresh: it takes N new failures to open it again.
  EXPECT_TRUE(fail(kStart + seconds(12)).empty());
  EXPECT_TRUE(fail(kStart + seconds(12)).empty());
  EXPECT_EQ(fail(kStart + seconds(12)).size(), 1u);
}

TEST_F(CircuitBreakerTest, AFailedProbeReopensForANewCoolDown) {
  for (int i = 0; i < 3; ++i) fail(kStart);
  ASSERT_TRUE(is_probe(breakers_.check(kKey, settings_, kStart + seconds(10))));
  auto reopened =
      breakers_.finish(kKey, settings_, true, Outcome::limit_exceeded, kStart + seconds(12));
  ASSERT_EQ(reopened.size(), 1u);
  EXPECT_EQ(reopened[0].from, BreakerState::half_open);
  EXPECT_EQ(reopened[0].to, BreakerState::open);
  EXPECT_EQ(breakers_.quarantined(), 1u);
  Check refused = breakers_.check(kKey, settings_, kStart + seconds(21));
  ASSERT_FALSE(passes(refused));
  EXPECT_EQ(std::get<Quarantined>(refused.decision).retry_after_seconds, 1);
  EXPECT_TRUE(is_probe(breakers_.check(kKey, settings_, kStart + seconds(22))));
}

TEST_F(CircuitBreakerTest, AProbeThatNeverRanFreesItsPlaceAndDecidesNothing) {
  for (int i = 0; i < 3; ++i) fail(kStart);
  ASSERT_TRUE(is_probe(breakers_.check(kKey, settings_, kStart + seconds(10))));
  EXPECT_TRUE(breakers_.finish(kKey, settings_, true, std::nullopt, kStart + seconds(10)).empty());
  EXPECT_TRUE(
      breakers_.finish(kKey, settings_, false, Outcome::rejected, kStart + seconds(10)).empty());
  EXPECT_EQ(breakers_.state(kKey), BreakerState::half_open);
  Check again = breakers_.check(kKey, settings_, kStart + seconds(10));
  EXPECT_TRUE(is_probe(again));
  EXPECT_TRUE(again.transitions.empty());
}

TEST_F(CircuitBreakerTest, SeveralProbesWhenThePolicySaysSo) {
  settings_ = settings(2, 60, 5, 3);
  fail(kStart);
  fail(kStart);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(is_probe(breakers_.check(kKey, settings_, kStart + seconds(5))));
  EXPECT_FALSE(passes(breakers_.check(kKey, settings_, kStart + seconds(5))));
  EXPECT_EQ(breakers_.finish(kKey, settings_, true, Outcome::ok, kStart + seconds(6)).size(), 1u);
  // The other probes end after the breaker closed: nothing more happens.
  EXPECT_TRUE(
      breakers_.finish(kKey, settings_, true, Outcome::crashed, kStart + seconds(6)).empty());
  EXPECT_TRUE(breakers_.finish(kKey, settings_, true, Outcome::ok, kStart + seconds(6)).empty());
  EXPECT_EQ(breakers_.state(kKey), BreakerState::closed);
}

TEST_F(CircuitBreakerTest, AHealthyVersionIsNeverTracked) {
  for (int i = 0; i < 100; ++i) {
    BreakerKey key{"tenant-1", "s" + std::to_string(i), 1};
    ASSERT_TRUE(passes(breakers_.check(key, settings_, kStart)));
    breakers_.finish(key, settings_, false, Outcome::ok, kStart);
  }
  EXPECT_EQ(breakers_.tracked(), 0u);
}

TEST(CircuitBreakerMemory, IsBoundedAndNeverForgetsAQuarantinedVersion) {
  CircuitBreakers breakers(4);
  auto s = settings(2, 10, 30, 1);
  BreakerKey open_one{"t", "bad", 1};
  breakers.finish(open_one, s, false, Outcome::crashed, kStart);
  breakers.finish(open_one, s, false, Outcome::crashed, kStart);
  ASSERT_EQ(breakers.state(open_one), BreakerState::open);
  for (int i = 0; i < 50; ++i) {
    BreakerKey key{"t", "s" + std::to_string(i), 1};
    breakers.finish(key, s, false, Outcome::crashed, kStart + seconds(i));
    EXPECT_LE(breakers.tracked(), 4u);
  }
  EXPECT_EQ(breakers.state(open_one), BreakerState::open);
  // The most recent failing version is still counted: one more failure opens it.
  EXPECT_EQ(
      breakers.finish({"t", "s49", 1}, s, false, Outcome::crashed, kStart + seconds(49)).size(),
      1u);

  // Full of quarantined versions: a new failing one goes untracked rather than evicting them.
  CircuitBreakers full(2);
  for (const char* name : {"a", "b"}) {
    full.finish({"t", name, 1}, s, false, Outcome::crashed, kStart);
    full.finish({"t", name, 1}, s, false, Outcome::crashed, kStart);
  }
  EXPECT_EQ(full.quarantined(), 2u);
  full.finish({"t", "c", 1}, s, false, Outcome::crashed, kStart);
  EXPECT_EQ(full.tracked(), 2u);
  EXPECT_EQ(full.state({"t", "a", 1}), BreakerState::open);
}

TEST(CircuitBreakerThreads, ConcurrentCallersSeeEachTransitionOnce) {
  CircuitBreakers breakers;
  auto s = settings(100, 60, 1, 1);
  std::atomic<int> opened{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        Check check = breakers.check(kKey, s, kStart);
        if (!passes(check)) continue;
        for (const auto& transition : breakers.finish(kKey, s, false, Outcome::crashed, kStart)) {
          if (transition.to == BreakerState::open) opened.fetch_add(1);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(opened.load(), 1);
  EXPECT_EQ(breakers.state(kKey), BreakerState::open);
  EXPECT_EQ(breakers.quarantined(), 1u);
}

}  // namespace
}  // namespace corral::sched
