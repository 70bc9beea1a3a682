// The publish rate on its own, with a fake clock: a minute's worth at once, then one per refill,
// tenants apart, and an honest Retry-After.
#include "sched/publish_rate.h"

#include <gtest/gtest.h>

namespace {

using corral::sched::PublishRate;
using namespace std::chrono_literals;

TEST(PublishRate, AMinutesWorthAtOnceThenAsTheBucketRefills) {
  PublishRate rate;
  PublishRate::TimePoint now{};
  now += 1h;
  for (int i = 0; i < 6; ++i) ASSERT_FALSE(rate.take("acme", 6, now)) << i;
  auto refused = rate.take("acme", 6, now);
  ASSERT_TRUE(refused);
  EXPECT_EQ(*refused, 10);  // 6 a minute: one every 10 s
  EXPECT_FALSE(rate.take("globex", 6, now)) << "another tenant's publishes counted";
  now += 9s;
  EXPECT_TRUE(rate.take("acme", 6, now));
  now += 1s;
  EXPECT_FALSE(rate.take("acme", 6, now));
}

TEST(PublishRate, StaysBoundedInTenants) {
  PublishRate rate(100);
  PublishRate::TimePoint now{};
  for (int i = 0; i < 10'000; ++i) ASSERT_FALSE(rate.take("t" + std::to_string(i), 30, now));
  // Still answering, and a tenant that used its whole bucket is refused.
  for (int i = 0; i < 30; ++i) rate.take("busy", 30, now);
  EXPECT_TRUE(rate.take("busy", 30, now));
}

}  // namespace
