// RefusalHolds with a fake clock: a hold is found until it runs out, extended but never
// shortened, keyed by the whole text, bounded in memory, and forgotten once run out.
#include "sched/refusal_holds.h"

#include <gtest/gtest.h>

#include <string>

namespace corral::sched {
namespace {

using namespace std::chrono_literals;
using Clock = RefusalHolds::Clock;

const Clock::time_point kStart = Clock::time_point() + 1000s;

TEST(RefusalHolds, AHoldIsInForceUntilItRunsOut) {
  RefusalHolds holds;
  EXPECT_FALSE(holds.held_until("token\nacme", kStart)) << "nothing was refused yet";
  ASSERT_TRUE(holds.remember("token\nacme", kStart + 1s, kStart));
  EXPECT_EQ(holds.held_until("token\nacme", kStart), kStart + 1s);
  EXPECT_EQ(holds.held_until("token\nacme", kStart + 999ms), kStart + 1s);
  EXPECT_FALSE(holds.held_until("token\nacme", kStart + 1s)) << "ran out";
  EXPECT_EQ(holds.size(), 0u) << "a hold that ran out is forgotten when looked up";
}

TEST(RefusalHolds, OnlyTheSameKeyIsHeld) {
  RefusalHolds holds;
  holds.remember("token\nacme", kStart + 1s, kStart);
  EXPECT_FALSE(holds.held_until("token\nglobex", kStart));
  EXPECT_FALSE(holds.held_until("other\nacme", kStart));
  EXPECT_FALSE(holds.held_until("token\nacm", kStart));
  EXPECT_FALSE(holds.held_until("", kStart));
  EXPECT_TRUE(holds.held_until("token\nacme", kStart));
}

TEST(RefusalHolds, ALaterRefusalExtendsAndAnEarlierOneDoesNotShorten) {
  RefusalHolds holds;
  holds.remember("k", kStart + 1s, kStart);
  holds.remember("k", kStart + 3s, kStart + 500ms);
  EXPECT_EQ(holds.held_until("k", kStart + 2s), kStart + 3s);
  holds.remember("k", kStart + 2500ms, kStart + 2s);
  EXPECT_EQ(holds.held_until("k", kStart + 2s), kStart + 3s);
  EXPECT_EQ(holds.size(), 1u);
}

TEST(RefusalHolds, AHoldThatEndsAtOnceIsNotKept) {
  RefusalHolds holds;
  EXPECT_TRUE(holds.remember("k", kStart, kStart));
  EXPECT_EQ(holds.size(), 0u);
  EXPECT_FALSE(holds.held_until("k", kStart));
}

TEST(RefusalHolds, AFullTableForgetsHoldsThatRanOutThenRefusesNewOnes) {
  RefusalHolds holds(3);
  ASSERT_TRUE(holds.remember("a", kStart + 1s, kStart));
  ASSERT_TRUE(holds.remember("b", kStart + 1s, kStart));
  ASSERT_TRUE(holds.remember("c", kStart + 5s, kStart));
  // Full, all in force: a fourth is not remembered, and the three stay.
  EXPECT_FALSE(holds.remember("d", kStart + 5s, kStart + 100ms));
  EXPECT_FALSE(holds.held_until("d", kStart + 100ms));
  EXPECT_TRUE(holds.held_until("a", kStart + 100ms));
  // An existing key is still extended while full.
  EXPECT_TRUE(holds.remember("a", kStart + 2s, kStart + 100ms));
  EXPECT_EQ(holds.held_until("a", kStart + 1500ms), kStart + 2s);
  // Once "b" has run out there is room again.
  EXPECT_TRUE(holds.remember("d", kStart + 5s, kStart + 1100ms));
  EXPECT_EQ(holds.held_until("d", kStart + 1100ms), kStart + 5s);
  EXPECT_LE(holds.size(), 3u);
}

TEST(RefusalHolds, HoldsThatRanOutAreSweptAtMostASecondApart) {
  RefusalHolds holds;
  for (int i = 0; i < 100; ++i) holds.remember("key " + std::to_string(i), kStart + 1s, kStart);
  EXPECT_EQ(holds.size(), 100u);
  // Another key looked up after they all ran out, more than a second after the last sweep:
  // everything that ran out goes.
  EXPECT_FALSE(holds.held_until("unrelated", kStart + 2s));
  EXPECT_EQ(holds.size(), 0u);
}

TEST(RefusalHolds, EachTableHoldsOnlyItsOwnRefusals) {
  RefusalHolds first;
  RefusalHolds second;
  first.remember("k", kStart + 1s, kStart);
  EXPECT_TRUE(first.held_until("k", kStart));
  EXPECT_FALSE(second.held_until("k", kStart));
}

}  // namespace
}  // namespace corral::sched
