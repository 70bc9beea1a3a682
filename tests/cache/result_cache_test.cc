// The result cache on its own: what makes two keys differ, that only ok results are kept, and
// that it stays within its byte bound by evicting the least recently used entry.
#include "cache/result_cache.h"

#include <gtest/gtest.h>

namespace {

using corral::InvocationResult;
using corral::Limits;
using corral::Outcome;
using corral::cache::ResultCache;
using nlohmann::json;

InvocationResult ok_result(json output) {
  InvocationResult result;
  result.outcome = Outcome::ok;
  result.output = std::move(output);
  return result;
}

std::string text_of(const corral::cache::Key& key) { return key.text; }

TEST(ResultCache, KeysDependOnVersionLimitsAndInputButNotOnMemberOrder) {
  Limits limits{.fuel = 1000, .memory_bytes = 1 << 20, .timeout_ms = 100};
  json input = json::parse(R"({"b": 1, "a": [1, 2]})");
  json reordered = json::parse(R"({"a": [1, 2], "b": 1})");
  auto key = [](std::string_view hash, const Limits& limits, const json& input) {
    return text_of(ResultCache::key_for("t", hash, limits, input));
  };
  EXPECT_EQ(key("hash1", limits, input), key("hash1", limits, reordered));
  EXPECT_NE(key("hash1", limits, input), key("hash2", limits, input));
  Limits less_fuel = limits;
  less_fuel.fuel = 999;
  EXPECT_NE(key("hash1", limits, input), key("hash1", less_fuel, input));
  EXPECT_NE(key("hash1", limits, input),
            key("hash1", limits, json::parse(R"({"b": 1, "a": [2, 1]})")));
}

// The review's attack, at the cache: tenant B runs A's source with A's input. B must miss (and
// learn nothing of A's output), and what B's run stores must never answer A.
TEST(ResultCache, NoTenantIsEverServedAnotherTenantsResult) {
  ResultCache cache;
  Limits limits{.fuel = 1000, .memory_bytes = 1 << 20, .timeout_ms = 100};
  json input = {{"email", "a@example.test"}};
  auto of_a = ResultCache::key_for("tenant-a", "same-source-hash", limits, input);
  auto of_b = ResultCache::key_for("tenant-b", "same-source-hash", limits, input);
  cache.insert(of_a, ok_result({{"seen", "A's secret"}}));
  EXPECT_FALSE(cache.find(of_b)) << "B was served A's result";
  cache.insert(of_b, ok_result({{"poisoned", true}}));
  EXPECT_EQ(cache.find(of_a)->output, json({{"seen", "A's secret"}}));
  EXPECT_EQ(cache.find(of_b)->output, json({{"poisoned", true}}));
  // A tenant id cannot be forged out of key text: the parts are compared apart.
  corral::cache::Key joined{"tenant-", "b" + of_a.text};
  EXPECT_FALSE(cache.find(joined));
}

// A tenant churning through inputs evicts only its own entries once it holds a quarter.
TEST(ResultCache, ATenantCannotFlushTheOthersEntries) {
  const size_t bound = 64 * 1024;
  ResultCache cache(bound);
  std::string payload(1000, 'x');
  auto key = [](const std::string& tenant, int i) {
    return corral::cache::Key{tenant, "k" + std::to_string(i)};
  };
  for (int i = 0; i < 10; ++i) cache.insert(key("quiet", i), ok_result(payload));
  for (int i = 0; i < 1000; ++i) {
    cache.insert(key("churner", i), ok_result(payload));
    ASSERT_LE(cache.tenant_bytes("churner"), bound / 4);
  }
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(cache.find(key("quiet", i))) << i;
  EXPECT_TRUE(cache.find(key("churner", 999)));
}

TEST(ResultCache, AHitReturnsTheStoredResultAndOnlyOkResultsAreStored) {
  ResultCache cache;
  EXPECT_FALSE(cache.find({"t", "k"}));
  cache.insert({"t", "k"}, ok_result({{"x", 1}}));
  auto hit = cache.find({"t", "k"});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->output, json({{"x", 1}}));

  InvocationResult failed;
  failed.outcome = Outcome::limit_exceeded;
  cache.insert({"t", "slow"}, failed);
  EXPECT_FALSE(cache.find({"t", "slow"}));
  failed.outcome = Outcome::script_error;
  cache.insert({"t", "error"}, failed);
  EXPECT_FALSE(cache.find({"t", "error"}));

  auto stats = cache.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 3u);
  EXPECT_EQ(stats.entries, 1u);
}

TEST(ResultCache, StaysWithinItsBoundByEvictingTheLeastRecentlyUsed) {
  const size_t bound = 64 * 1024;
  ResultCache cache(bound);
  std::string payload(2000, 'x');
  // Each key of its own tenant, so that the per-tenant share does not come into it.
  auto k = [](int i) { return corral::cache::Key{"t" + std::to_string(i), "k"}; };
  for (int i = 0; i < 20; ++i) cache.insert(k(i), ok_result(payload));
  // k0 is read, so k1 is now the least recently used.
  ASSERT_TRUE(cache.find(k(0)));
  for (int i = 20; i < 200; ++i) {
    cache.insert(k(i), ok_result(payload));
    ASSERT_LE(cache.stats().bytes, bound);
    if (i < 25) {
      ASSERT_TRUE(cache.find(k(0))) << "evicted although just used, at " << i;
    }
  }
  EXPECT_FALSE(cache.find(k(1)));
  EXPECT_TRUE(cache.find(k(199)));
  EXPECT_GT(cache.stats().evictions, 100u);
}

TEST(ResultCache, AnEntryOverAnEighthOfTheBoundIsNotStored) {
  ResultCache cache(8000);
  cache.insert({"t", "big"}, ok_result(std::string(1200, 'y')));
  EXPECT_FALSE(cache.find({"t", "big"}));
  cache.insert({"t", "small"}, ok_result("y"));
  EXPECT_TRUE(cache.find({"t", "small"}));
}

}  // namespace
