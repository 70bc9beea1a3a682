// ConnectionLimit: at most per_client slots per client, given back when a slot ends, clients
// counted apart, 0 meaning no limit, and safe from many threads. client_key: the client an
// address counts under (an IPv6 host cannot spread its connections over its /64). ConnectionCap:
// at most max places in all.
#include "sched/connection_limit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace corral::sched {
namespace {

// Sets `most` to `now` if `now` is larger, from any thread.
void raise_to(std::atomic<int>& most, int now) {
  int seen = most.load();
  while (now > seen && !most.compare_exchange_weak(seen, now)) {
  }
}

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
        raise_to(most, holding.fetch_add(1) + 1);
        holding.fetch_sub(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(most.load(), 5);
  EXPECT_EQ(limit.open_from("10.0.0.1"), 0u);
  EXPECT_EQ(limit.clients(), 0u);
}

std::string key_of(const char* address) {
  auto parsed = net::IpAddress::parse(address);
  if (!parsed) throw std::invalid_argument(std::string("not an address: ") + address);
  return client_key(*parsed);
}

TEST(ClientKey, AnIpv4AddressIsItsOwnClient) {
  EXPECT_EQ(key_of("203.0.113.7"), "203.0.113.7");
  EXPECT_NE(key_of("203.0.113.7"), key_of("203.0.113.8"));
}

TEST(ClientKey, AnIpv6AddressCountsUnderItsSlash64) {
  EXPECT_EQ(key_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  // An attacker's own /64 holds 2^64 addresses: every one of them is the same client.
  EXPECT_EQ(key_of("2001:db8:1:2::1"), key_of("2001:db8:1:2:ffff:ffff:ffff:fffe"));
  EXPECT_NE(key_of("2001:db8:1:2::1"), key_of("2001:db8:1:3::1")) << "the next /64 is another";
  EXPECT_EQ(key_of("::1"), "::/64");
}

TEST(ClientKey, AnIpv6FormOfAnIpv4AddressIsThatIpv4Client) {
  // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: the same client as over IPv4.
  EXPECT_EQ(key_of("::ffff:203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(key_of("::ffff:203.0.113.7"), key_of("203.0.113.7"));
}

TEST(ClientKey, ConnectionsFromOneSlash64ShareTheLimit) {
  ConnectionLimit limit(2);
  auto first = limit.admit(key_of("2001:db8:1:2::10"));
  auto second = limit.admit(key_of("2001:db8:1:2::11"));
  ASSERT_TRUE(first && second);
  EXPECT_FALSE(limit.admit(key_of("2001:db8:1:2::12")))
      << "a third address of the same /64 is the same client";
  EXPECT_TRUE(limit.admit(key_of("2001:db8:1:3::12")));
}

TEST(ConnectionCap, AtMostMaxPlacesAndEachGivenBackWhenItEnds) {
  ConnectionCap cap(2);
  std::optional<ConnectionCap::Place> first = cap.reserve();
  auto second = cap.reserve();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(cap.open(), 2u);
  EXPECT_FALSE(cap.reserve()) << "a third place under a cap of two";
  EXPECT_EQ(cap.open(), 2u) << "a refused reservation takes nothing";
  first.reset();
  EXPECT_EQ(cap.open(), 1u);
  auto third = cap.reserve();
  EXPECT_TRUE(third) << "the place given back is taken again";
}

TEST(ConnectionCap, AMovedPlaceIsGivenBackOnce) {
  ConnectionCap cap(1);
  {
    auto place = cap.reserve();
    ASSERT_TRUE(place);
    ConnectionCap::Place moved = std::move(*place);
    place.reset();
    EXPECT_EQ(cap.open(), 1u) << "the moved-from place gave nothing back";
    auto other = std::move(moved);
  }
  EXPECT_EQ(cap.open(), 0u);
  EXPECT_TRUE(cap.reserve());
}

TEST(ConnectionCap, ZeroMeansNoCapButPlacesAreCounted) {
  ConnectionCap cap(0);
  std::vector<ConnectionCap::Place> places;
  for (int i = 0; i < 1000; ++i) {
    auto place = cap.reserve();
    ASSERT_TRUE(place) << "reservation " << i;
    places.push_back(std::move(*place));
  }
  EXPECT_EQ(cap.open(), 1000u);
  places.clear();
  EXPECT_EQ(cap.open(), 0u);
}

TEST(ConnectionCap, ManyThreadsNeverHoldMoreThanTheCap) {
  ConnectionCap cap(3);
  std::atomic<int> holding{0};
  std::atomic<int> most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto place = cap.reserve();
        if (!place) continue;
        raise_to(most, holding.fetch_add(1) + 1);
        holding.fetch_sub(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(most.load(), 3);
  EXPECT_GE(most.load(), 1);
  EXPECT_EQ(cap.open(), 0u);
}

}  // namespace
}  // namespace corral::sched
