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

TEST(ResultCache, KeysDependOnVersionLimitsAndInputButNotOnMemberOrder) {
  Limits limits{.fuel = 1000, .memory_bytes = 1 << 20, .timeout_ms = 100};
  json input = json::parse(R"({"b": 1, "a": [1, 2]})");
  json reordered = json::parse(R"({"a": [1, 2], "b": 1})");
  EXPECT_EQ(ResultCache::key_for("hash1", limits, input),
            ResultCache::key_for("hash1", limits, reordered));
  EXPECT_NE(ResultCache::key_for("hash1", limits, input),
            ResultCache::key_for("hash2", limits, input));
  Limits less_fuel = limits;
  less_fuel.fuel = 999;
  EXPECT_NE(ResultCache::key_for("hash1", limits, input),
            ResultCache::key_for("hash1", less_fuel, input));
  EXPECT_NE(ResultCache::key_for("hash1", limits, input),
            ResultCache::key_for("hash1", limits, json::parse(R"({"b": 1, "a": [2, 1]})")));
}

TEST(ResultCache, AHitReturnsTheStoredResultAndOnlyOkResultsAreStored) {
  ResultCache cache;
  EXPECT_FALSE(cache.find("k"));
  cache.insert("k", ok_result({{"x", 1}}));
  auto hit = cache.find("k");
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->output, json({{"x", 1}}));

  InvocationResult failed;
  failed.outcome = Outcome::limit_exceeded;
  cache.insert("slow", failed);
  EXPECT_FALSE(cache.find("slow"));
  failed.outcome = Outcome::script_error;
  cache.insert("error", failed);
  EXPECT_FALSE(cache.find("error"));

  auto stats = cache.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 3u);
  EXPECT_EQ(stats.entries, 1u);
}

TEST(ResultCache, StaysWithinItsBoundByEvictingTheLeastRecentlyUsed) {
  const size_t bound = 64 * 1024;
  ResultCache cache(bound);
  std::string payload(2000, 'x');
  for (int i = 0; i < 20; ++i) cache.insert("k" + std::to_string(i), ok_result(payload));
  // k0 is read, so k1 is now the least recently used.
  ASSERT_TRUE(cache.find("k0"));
  for (int i = 20; i < 200; ++i) {
    cache.insert("k" + std::to_string(i), ok_result(payload));
    ASSERT_LE(cache.stats().bytes, bound);
    if (i < 25) {
      ASSERT_TRUE(cache.find("k0")) << "evicted although just used, at " << i;
    }
  }
  EXPECT_FALSE(cache.find("k1"));
  EXPECT_TRUE(cache.find("k199"));
  EXPECT_GT(cache.stats().evictions, 100u);
}

TEST(ResultCache, AnEntryOverAnEighthOfTheBoundIsNotStored) {
  ResultCache cache(8000);
  cache.insert("big", ok_result(std::string(1200, 'y')));
  EXPECT_FALSE(cache.find("big"));
  cache.insert("small", ok_result("y"));
  EXPECT_TRUE(cache.find("small"));
}

}  // namespace
