// Each tenant's budget of bytes written to the store a minute (broker/write_budget.h).
#include "broker/write_budget.h"

#include <gtest/gtest.h>

#include <cmath>

namespace corral::broker {
namespace {

using std::chrono::seconds;

TEST(WriteBudget, AMinutesWorthAtOnceThenTheRateAndEachTenantItsOwn) {
  WriteBudget budget;
  auto start = WriteBudget::Clock::now();
  EXPECT_FALSE(budget.take("a", 6000, 6000, start)) << "a small quota's whole at once";
  auto wait = budget.take("a", 100, 6000, start);
  ASSERT_TRUE(wait);
  EXPECT_NEAR(*wait, 1.0, 1e-6) << "6,000 a minute refills 100 bytes a second";
  EXPECT_FALSE(budget.take("b", 6000, 6000, start)) << "another tenant has its own budget";
  EXPECT_FALSE(budget.take("a", 100, 6000, start + seconds(1)));
  EXPECT_TRUE(budget.take("a", 100, 6000, start + seconds(1))) << "and no more than that";
}

TEST(WriteBudget, ALargeQuotaHoldsTenSecondsWorthNotAMinutes) {
  WriteBudget budget;
  auto start = WriteBudget::Clock::now();
  constexpr int64_t kSixMillionAMinute = 6'000'000;  // 100,000 bytes a second
  EXPECT_FALSE(budget.take("a", 1'000'000, kSixMillionAMinute, start))
      << "ten seconds' worth at once";
  auto wait = budget.take("a", 100'000, kSixMillionAMinute, start);
  ASSERT_TRUE(wait) << "not a whole minute's";
  EXPECT_NEAR(*wait, 1.0, 1e-6);
  auto never = budget.take("a", 1'000'001, kSixMillionAMinute, start);
  ASSERT_TRUE(never);
  EXPECT_TRUE(std::isinf(*never)) << "a write larger than the bucket never fits";
}

TEST(WriteBudget, AWriteLargerThanTheWholeQuotaNeverFitsAndALoweredQuotaActsAtOnce) {
  WriteBudget budget;
  auto now = WriteBudget::Clock::now();
  auto never = budget.take("a", 7000, 6000, now);
  ASSERT_TRUE(never);
  EXPECT_TRUE(std::isinf(*never));
  EXPECT_FALSE(budget.take("a", 1000, 6000, now)) << "the refused write took nothing";
  EXPECT_TRUE(budget.take("a", 2000, 1024, now)) << "lowered to 1,024: 2,000 no longer fits";
  EXPECT_FALSE(budget.take("a", 1000, 1024, now));
}

}  // namespace
}  // namespace corral::broker
