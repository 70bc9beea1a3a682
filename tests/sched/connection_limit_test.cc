// ConnectionLimit: at most per_client slots per address, given back when a slot ends, addresses
// counted apart, 0 meaning no limit, and safe from many threads.
#include "sched/connection_limit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace corral::sched {
namespace {

TEST(ConnectionLimit, AnAddressGetsAtMostItsSlots) {
  ConnectionLimit limit(2);
  auto first = limit.admit("10.0.0.1");
  auto second = limit.admit("10.0.0.1");
  ASSERT_TRUE(first && second);
  EXPECT_FALSE(limit.admit("10.0.0.1")) << "a third connection from the same address";
  EXPECT_EQ(limit.open_from("10.0.0.1"), 2u);
  // Another address counts on its own.
  auto other = limit.admit("10.0.0.2");
  EXPECT_TRUE(other);
  EXPECT_EQ(limit.clients(), 2u);
}

TEST(ConnectionLimit, ASlotIsGivenBackWhenItEnds) {
  ConnectionLimit limit(1);
  {
    auto slot = limit.admit("::1");
    ASSERT_TRUE(slot);
    EXPECT_FALSE(limit.admit("::1"));
  }
  EXPECT_EQ(limit.open_from("::1"), 0u);
  EXPECT_EQ(limit.clients(), 0u) << "an address with nothing open is not kept";
  EXPECT_TRUE(limit.admit("::1"));
}

TEST(ConnectionLimit, AMovedSlotIsGivenBackOnce) {
  ConnectionLimit limit(2);
  std::optional<ConnectionLimit::Slot> kept;
  {
    auto slot = limit.admit("a");
    ASSERT_TRUE(slot);
    kept.emplace(std::move(*slot));
  }
  EXPECT_EQ(limit.open_from("a"), 1u) << "the moved-from slot gave nothing back";
  auto another = limit.admit("a");
  ASSERT_TRUE(another);
  *kept = std::move(*another);  // the slot kept held is given back, the one moved in stays
  EXPECT_EQ(limit.open_from("a"), 1u);
  kept.reset();
  EXPECT_EQ(limit.open_from("a"), 0u);
}

TEST(ConnectionLimit, ZeroAdmitsEveryConnectionAndCountsNothing) {
  ConnectionLimit limit(0);
  std::vector<ConnectionLimit::Slot> slots;
  for (int i = 0; i < 1000; ++i) {
    auto slot = limit.admit("10.0.0.1");
    ASSERT_TRUE(slot);
    slots.push_back(std::move(*slot));
  }
  EXPECT_EQ(limit.clients(), 0u);
}

TEST(ConnectionLimit, ManyThreadsNeverHoldMoreThanTheLimit) {
  ConnectionLimit limit(5);
  std::atomic<int> holding{0};
  std::atomic<int> most{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto slot = limit.admit("10.0.0.1");
        if (!slot) {
          refused.fetch_add(1);
          continue;
        }
        int now = holding.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        holding.fetch_sub(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(most.load(), 5);
  EXPECT_EQ(limit.open_from("10.0.0.1"), 0u);
  EXPECT_EQ(limit.clients(), 0u);
}

}  // namespace
}  // namespace corral::sched
