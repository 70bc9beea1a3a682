// The token cache on a real SQLite store: what it keeps, for how long, and that a revocation
// through this corrald is seen at once while one made behind its back is seen within the TTL.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "auth/auth.h"
#include "store/sqlite_fixture.h"
#include "store/sqlite_store.h"

namespace corral::auth {
namespace {

using corral::testing::TempDir;

constexpr int64_t kNow = 1'000'000;

class TokenCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::open_sqlite_store(dir_.path() / "data");
    tenant_ = store_->create_tenant("acme", kNow);
  }

  // A token of acme's stored as corrald stores it; returns its Authorization header.
  std::string make_token(const std::string& role, std::optional<int64_t> expires_at = {}) {
    std::string secret = new_secret();
    last_token_ = store_->insert_token({.tenant_id = tenant_.id,
                                        .role = role,
                                        .secret_hash = hash_secret(secret),
                                        .created_at = kNow,
                                        .expires_at = expires_at,
                                        .created_by = "test",
                                        .subject = role});
    return "Bearer " + secret;
  }

  // What the cache holds for an Authorization header, without asking the store.
  static std::optional<Principal> cached_principal(TokenCache& cache, const std::string& header,
                                                   int64_t now_ms) {
    return cache.find(hash_secret(header.substr(std::string("Bearer ").size())), now_ms);
  }

  static const Principal* principal_of(const std::variant<Principal, Unauthenticated>& result) {
    return std::get_if<Principal>(&result);
  }
  static std::string failure_of(const std::variant<Principal, Unauthenticated>& result) {
    auto* failure = std::get_if<Unauthenticated>(&result);
    return failure ? failure->detail : "";
  }

  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  store::Tenant tenant_;
  store::Token last_token_;
};

TEST_F(TokenCacheTest, AnAuthenticatedTokenIsTakenFromTheCacheUntilItsTtlEnds) {
  TokenCache cache({.ttl_ms = 5'000, .max_entries = 100});
  std::string header = make_token("invoker");
  EXPECT_FALSE(cached_principal(cache, header, kNow));
  auto first = authenticate(*store_, header, kNow, &cache);
  ASSERT_TRUE(principal_of(first)) << failure_of(first);
  EXPECT_EQ(principal_of(first)->tenant_name, "acme");
  EXPECT_EQ(principal_of(first)->role, Role::invoker);

  auto cached = cached_principal(cache, header, kNow + 1);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->token_id, last_token_.id);
  EXPECT_EQ(cached->tenant_id, tenant_.id);

  // Revoked in the store behind the cache's back (as another corrald sharing it would): still
  // taken until the TTL ends, then refused.
  store_->revoke_token(last_token_.id, kNow + 10);
  EXPECT_TRUE(principal_of(authenticate(*store_, header, kNow + 4'999, &cache)));
  auto after_ttl = authenticate(*store_, header, kNow + 5'000, &cache);
  EXPECT_FALSE(principal_of(after_ttl));
  EXPECT_NE(failure_of(after_ttl).find("has been revoked"), std::string::npos)
      << failure_of(after_ttl);
  EXPECT_FALSE(cached_principal(cache, header, kNow + 5'000));
}

TEST_F(TokenCacheTest, ForgettingATokenTakesEffectAtOnce) {
  TokenCache cache;
  std::string header = make_token("invoker");
  std::string other = make_token("publisher");
  std::string other_id = last_token_.id;
  std::string header_id;
  ASSERT_TRUE(principal_of(authenticate(*store_, header, kNow, &cache)));
  ASSERT_TRUE(principal_of(authenticate(*store_, other, kNow, &cache)));
  header_id = cached_principal(cache, header, kNow)->token_id;

  store_->revoke_token(header_id, kNow + 1);
  cache.forget_token(header_id);
  EXPECT_FALSE(cached_principal(cache, header, kNow + 2));
  EXPECT_NE(failure_of(authenticate(*store_, header, kNow + 2, &cache)).find("has been revoked"),
            std::string::npos);
  // The other token is untouched.
  auto kept = cached_principal(cache, other, kNow + 2);
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->token_id, other_id);
}

TEST_F(TokenCacheTest, ALookupThatRacedARevocationIsNotRemembered) {
  TokenCache cache;
  std::string header = make_token("invoker");
  auto looked_up = authenticate(*store_, header, kNow, nullptr);
  ASSERT_TRUE(principal_of(looked_up));
  // The lookup began before the revocation was forgotten, so its answer may be stale.
  uint64_t before = cache.generation();
  cache.forget_token(last_token_.id);
  cache.remember(hash_secret(header.substr(7)), *principal_of(looked_up), std::nullopt, kNow,
                 before);
  EXPECT_FALSE(cached_principal(cache, header, kNow));
  EXPECT_EQ(cache.stats().entries, 0u);
  // A lookup begun after it is remembered.
  cache.remember(hash_secret(header.substr(7)), *principal_of(looked_up), std::nullopt, kNow,
                 cache.generation());
  EXPECT_TRUE(cached_principal(cache, header, kNow));
}

TEST_F(TokenCacheTest, AnEntryNeverOutlivesItsTokensExpiry) {
  TokenCache cache({.ttl_ms = 60'000, .max_entries = 100});
  std::string header = make_token("invoker", kNow + 1'000);
  ASSERT_TRUE(principal_of(authenticate(*store_, header, kNow, &cache)));
  EXPECT_TRUE(cached_principal(cache, header, kNow + 999));
  EXPECT_FALSE(cached_principal(cache, header, kNow + 1'000));
  EXPECT_NE(failure_of(authenticate(*store_, header, kNow + 1'000, &cache)).find("has expired"),
            std::string::npos);
}

TEST_F(TokenCacheTest, FailuresAreNeverCached) {
  TokenCache cache;
  EXPECT_FALSE(principal_of(authenticate(*store_, "Bearer corral_unknown", kNow, &cache)));
  EXPECT_FALSE(principal_of(authenticate(*store_, "Basic abc", kNow, &cache)));
  std::string header = make_token("invoker");
  store_->revoke_token(last_token_.id, kNow);
  EXPECT_FALSE(principal_of(authenticate(*store_, header, kNow + 1, &cache)));
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST_F(TokenCacheTest, ItHoldsAtMostMaxEntries) {
  TokenCache cache({.ttl_ms = 5'000, .max_entries = 3});
  std::vector<std::string> headers;
  for (int i = 0; i < 10; ++i) {
    headers.push_back(make_token("invoker"));
    ASSERT_TRUE(principal_of(authenticate(*store_, headers.back(), kNow, &cache)));
    EXPECT_LE(cache.stats().entries, 3u);
  }
  // The newest is always kept; every token still authenticates through the store.
  EXPECT_TRUE(cached_principal(cache, headers.back(), kNow));
  for (const auto& header : headers)
    EXPECT_TRUE(principal_of(authenticate(*store_, header, kNow, &cache)));
}

TEST_F(TokenCacheTest, ATtlOfZeroKeepsNothing) {
  TokenCache cache({.ttl_ms = 0, .max_entries = 100});
  std::string header = make_token("invoker");
  ASSERT_TRUE(principal_of(authenticate(*store_, header, kNow, &cache)));
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_FALSE(cached_principal(cache, header, kNow));
}

TEST_F(TokenCacheTest, ItCountsHitsAndMisses) {
  TokenCache cache;
  std::string header = make_token("invoker");
  ASSERT_TRUE(principal_of(authenticate(*store_, header, kNow, &cache)));
  ASSERT_TRUE(principal_of(authenticate(*store_, header, kNow + 1, &cache)));
  ASSERT_TRUE(principal_of(authenticate(*store_, header, kNow + 2, &cache)));
  EXPECT_FALSE(principal_of(authenticate(*store_, "Bearer corral_unknown", kNow, &cache)));
  TokenCache::Stats stats = cache.stats();
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.entries, 1u);
}

TEST_F(TokenCacheTest, ConcurrentUseKeepsEveryAnswerRight) {
  TokenCache cache({.ttl_ms = 5'000, .max_entries = 4});
  std::vector<std::string> headers, ids;
  for (int i = 0; i < 8; ++i) {
    headers.push_back(make_token(i % 2 ? "invoker" : "publisher"));
    ids.push_back(last_token_.id);
  }
  // Readers on four threads while this one fills the cache through the store and a bound of 4
  // keeps clearing it: whatever a reader finds must be the principal of the token it asked for.
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0}, found{0};
  std::atomic<bool> filled{false};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // Until the cache is filled, and one pass over every token after.
      for (int i = 0, after = 0; after < static_cast<int>(headers.size()); ++i) {
        if (filled) ++after;
        size_t k = static_cast<size_t>(t + i) % headers.size();
        if (auto principal = cached_principal(cache, headers[k], kNow)) {
          ++found;
          if (principal->token_id != ids[k] || principal->tenant_name != "acme" ||
              principal->role != (k % 2 ? Role::invoker : Role::publisher)) {
            ++wrong;
          }
        }
        if (i % 500 == 0) cache.forget_token("no-such-token");
      }
    });
  }
  for (int round = 0; round < 20; ++round) {
    for (const auto& header : headers) authenticate(*store_, header, kNow, &cache);
  }
  filled = true;
  for (auto& thread : threads) thread.join();
  EXPECT_GT(found, 0);  // the readers did see cached principals
  EXPECT_EQ(wrong, 0) << "of " << found << " found";
  EXPECT_LE(cache.stats().entries, 4u);
}

}  // namespace
}  // namespace corral::auth
