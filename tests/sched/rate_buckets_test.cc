// The publish rate on its own, with a fake clock: a minute's worth at once, then one per refill,
// tenants apart, and an honest Retry-After.
#include "sched/rate_buckets.h"

#include <gtest/gtest.h>

namespace {

using corral::sched::RateBuckets;
using namespace std::chrono_literals;

TEST(RateBuckets, TenSecondsWorthAtOnceThenAsTheBucketRefills) {
  RateBuckets rate;
  RateBuckets::TimePoint now{};
  now += 1h;
  for (int i = 0; i < 2; ++i) ASSERT_FALSE(rate.take("acme", 12, now)) << i;
  auto refused = rate.take("acme", 12, now);
  ASSERT_TRUE(refused);
  EXPECT_EQ(*refused, 5);  // 12 a minute: one every 5 s
  EXPECT_FALSE(rate.take("globex", 12, now)) << "another key's takes counted";
  now += 4s;
  EXPECT_TRUE(rate.take("acme", 12, now));
  now += 1s;
  EXPECT_FALSE(rate.take("acme", 12, now));
  EXPECT_EQ(RateBuckets::burst_of(1), 1);
  EXPECT_EQ(RateBuckets::burst_of(30), 5);
}

TEST(RateBuckets, StaysBoundedInTenants) {
  RateBuckets rate(100);
  RateBuckets::TimePoint now{};
  for (int i = 0; i < 10'000; ++i) ASSERT_FALSE(rate.take("t" + std::to_string(i), 30, now));
  // Still answering, and a tenant that used its whole bucket is refused.
  for (int i = 0; i < 30; ++i) rate.take("busy", 30, now);
  EXPECT_TRUE(rate.take("busy", 30, now));
}

}  // namespace
