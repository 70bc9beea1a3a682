// Turns at the store by tenant (broker/tenant_turns.h): a tenant with many calls waiting does not
// keep another tenant's call behind all of them.
#include "broker/tenant_turns.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace corral::broker {
namespace {

// Waits until `count` calls are waiting for a turn.
void wait_for_waiting(const TenantTurns& turns, size_t count) {
  for (int i = 0; i < 10'000 && turns.waiting() < count; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(turns.waiting(), count);
}

TEST(TenantTurns, AnotherTenantsCallGoesBeforeTheWaitingCallsOfTheTenantJustServed) {
  TenantTurns turns;
  std::mutex order_mutex;
  std::vector<std::string> order;
  auto call = [&](const std::string& tenant, const std::string& name) {
    auto turn = turns.take(tenant);
    std::lock_guard lock(order_mutex);
    order.push_back(name);
  };
  std::vector<std::thread> threads;
  {
    auto held = turns.take("noisy");  // noisy's call in progress
    for (int i = 1; i <= 3; ++i) {
      threads.emplace_back(call, "noisy", "noisy-" + std::to_string(i));
      wait_for_waiting(turns, static_cast<size_t>(i));  // queued in this order
    }
    threads.emplace_back(call, "quiet", "quiet");
    wait_for_waiting(turns, 4);
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0], "quiet") << "quiet waited only for the call in progress";
  EXPECT_EQ(order[1], "noisy-1") << "a tenant's own calls keep their order";
  EXPECT_EQ(order[2], "noisy-2");
  EXPECT_EQ(order[3], "noisy-3");
}

TEST(TenantTurns, TenantsWithCallsWaitingTakeTurnsInsteadOfOneStarvingTheOther) {
  TenantTurns turns;
  std::mutex order_mutex;
  std::string order;
  auto call = [&](const std::string& tenant) {
    auto turn = turns.take(tenant);
    std::lock_guard lock(order_mutex);
    order += tenant;
  };
  std::vector<std::thread> threads;
  {
    auto held = turns.take("c");
    // a's and b's calls arrive in a block each: a a a b b b.
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back(call, "a");
      wait_for_waiting(turns, threads.size());
    }
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back(call, "b");
      wait_for_waiting(turns, threads.size());
    }
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(order, "ababab");
}

TEST(TenantTurns, OneTurnAtATime) {
  TenantTurns turns;
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto turn = turns.take("tenant-" + std::to_string(t % 3));
        int now = ++inside;
        most = std::max(most.load(), now);
        --inside;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(most.load(), 1);
  EXPECT_EQ(turns.waiting(), 0u);
}

}  // namespace
}  // namespace corral::broker
