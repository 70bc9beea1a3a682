// The store's side of the broker and the policy: kv rows and their usage, quotas checked in the
// same transaction as the write (also under concurrent puts from threads and from separate
// connections), secrets, the event outbox and policy versions.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "store/sqlite_fixture.h"
#include "store/store.h"
#include "support/store_under_test.h"

namespace {

using namespace corral::store;
using corral::testing::RawDb;
using corral::testing::TempDir;

constexpr KvQuota kRoomy{1000, 1 << 20};

class BrokerStateStoreTest : public ::testing::Test {
 protected:
  std::filesystem::path data_dir() const { return dir_.path() / "data"; }
  std::filesystem::path db_file() const { return data_dir() / "corral.db"; }
  Store& store() {
    if (!store_) store_ = corral::testing::open_store_under_test(data_dir());
    return *store_;
  }
  void reopen() {
    store_.reset();
    store_ = corral::testing::open_store_under_test(data_dir());
  }
  std::string tenant(const std::string& name = "acme") {
    if (auto found = store().find_tenant_by_name(name)) return found->id;
    return store().create_tenant(name, 1000).id;
  }
  KvPutOutcome put(const std::string& t, std::string_view ns, std::string_view key,
                   std::string_view sealed, int64_t bytes, KvQuota quota = kRoomy) {
    return store().put_kv(t, ns, key, KvValue{std::string(sealed), bytes}, quota);
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

// ---- kv

TEST_F(BrokerStateStoreTest, KvPutsGetsReplacesAndDeletes) {
  auto acme = tenant();
  EXPECT_FALSE(store().find_kv(acme, "", "k"));
  std::string sealed("\x00\x01\xff sealed", 10);  // any bytes, NUL included
  EXPECT_TRUE(put(acme, "", "k", sealed, 7).stored);

  auto found = store().find_kv(acme, "", "k");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->sealed, sealed);
  EXPECT_EQ(found->value_bytes, 7);

  EXPECT_TRUE(put(acme, "", "k", "other", 3).stored);
  EXPECT_EQ(store().find_kv(acme, "", "k")->sealed, "other");
  EXPECT_EQ(store().kv_usage(acme, "").keys, 1);

  EXPECT_TRUE(store().delete_kv(acme, "", "k"));
  EXPECT_FALSE(store().delete_kv(acme, "", "k"));
  EXPECT_FALSE(store().find_kv(acme, "", "k"));
}

TEST_F(BrokerStateStoreTest, KvScopesAreSeparate) {
  auto acme = tenant("acme"), globex = tenant("globex");
  put(acme, "", "k", "acme-wide", 1);
  put(acme, "script-a", "k", "acme-a", 1);
  put(globex, "", "k", "globex-wide", 1);
  EXPECT_EQ(store().find_kv(acme, "", "k")->sealed, "acme-wide");
  EXPECT_EQ(store().find_kv(acme, "script-a", "k")->sealed, "acme-a");
  EXPECT_FALSE(store().find_kv(acme, "script-b", "k"));
  EXPECT_EQ(store().find_kv(globex, "", "k")->sealed, "globex-wide");
  EXPECT_TRUE(store().delete_kv(acme, "script-a", "k"));
  EXPECT_TRUE(store().find_kv(acme, "", "k"));
  EXPECT_EQ(store().kv_usage(globex, "").keys, 1);
}

TEST_F(BrokerStateStoreTest, KvUsageCountsKeysAndValueBytes) {
  auto acme = tenant();
  EXPECT_EQ(store().kv_usage(acme, "").keys, 0);
  EXPECT_EQ(store().kv_usage(acme, "").bytes, 0);
  put(acme, "", "ab", "x", 10);    // 2 + 10
  put(acme, "", "héllo", "x", 5);  // 6 bytes of UTF-8 + 5
  EXPECT_EQ(store().kv_usage(acme, "").keys, 2);
  EXPECT_EQ(store().kv_usage(acme, "").bytes, 12 + 11);

  auto outcome = put(acme, "", "ab", "x", 4);  // replace: 12 -> 6
  EXPECT_TRUE(outcome.stored);
  EXPECT_EQ(outcome.before.bytes, 23);
  EXPECT_EQ(outcome.after.bytes, 17);
  EXPECT_EQ(store().kv_usage(acme, "").bytes, 17);
  EXPECT_EQ(store().kv_usage(acme, "").keys, 2);

  store().delete_kv(acme, "", "héllo");
  EXPECT_EQ(store().kv_usage(acme, "").keys, 1);
  EXPECT_EQ(store().kv_usage(acme, "").bytes, 6);
  EXPECT_EQ(store().kv_usage(acme, "other").keys, 0);
}

TEST_F(BrokerStateStoreTest, KvQuotaRefusesGrowthOnlyAndChangesNothing) {
  auto acme = tenant();
  KvQuota quota{2, 100};
  EXPECT_TRUE(put(acme, "", "a", "1", 40, quota).stored);
  EXPECT_TRUE(put(acme, "", "b", "2", 40, quota).stored);

  auto third = put(acme, "", "c", "3", 1, quota);
  EXPECT_FALSE(third.stored);
  EXPECT_EQ(third.before.keys, 2);
  EXPECT_EQ(third.after.keys, 3);
  EXPECT_FALSE(store().find_kv(acme, "", "c"));

  auto bigger = put(acme, "", "a", "big", 60, quota);  // 82 -> 102 bytes
  EXPECT_FALSE(bigger.stored);
  EXPECT_EQ(bigger.after.bytes, 102);
  EXPECT_EQ(store().find_kv(acme, "", "a")->sealed, "1");
  EXPECT_EQ(store().kv_usage(acme, "").bytes, 82);

  // Under a lowered quota a namespace may still shrink or stay the same size.
  KvQuota lowered{1, 10};
  EXPECT_TRUE(put(acme, "", "a", "same", 40, lowered).stored);
  EXPECT_TRUE(put(acme, "", "a", "smaller", 5, lowered).stored);
  EXPECT_FALSE(put(acme, "", "a", "grows", 6, lowered).stored);
}

TEST_F(BrokerStateStoreTest, KvListsByPrefixInKeyOrderWithCursor) {
  auto acme = tenant();
  for (std::string key : {"user:3", "user:1", "order:9", "user:2", "user;", "user", "usera",
                          "user:10", "\xc3\xa9t\xc3\xa9"}) {
    put(acme, "", key, "v", 1);
  }
  put(acme, "script", "user:0", "v", 1);  // another namespace: never listed

  using Keys = std::vector<std::string>;
  EXPECT_EQ(store().list_kv_keys(acme, "", {.prefix = "user:"}),
            (Keys{"user:1", "user:10", "user:2", "user:3"}));
  EXPECT_EQ(store().list_kv_keys(acme, "", {.prefix = "user"}),
            (Keys{"user", "user:1", "user:10", "user:2", "user:3", "user;", "usera"}));
  EXPECT_EQ(store().list_kv_keys(acme, "", {}),
            (Keys{"order:9", "user", "user:1", "user:10", "user:2", "user:3", "user;", "usera",
                  "\xc3\xa9t\xc3\xa9"}));
  EXPECT_EQ(store().list_kv_keys(acme, "", {.prefix = "\xc3"}), (Keys{"\xc3\xa9t\xc3\xa9"}));
  EXPECT_TRUE(store().list_kv_keys(acme, "", {.prefix = "zzz"}).empty());

  // Paging: each page starts after the last key of the one before.
  Keys all;
  std::optional<std::string> after;
  for (int page = 0; page < 10; ++page) {
    auto keys = store().list_kv_keys(acme, "", {.prefix = "user", .after = after, .limit = 3});
    if (keys.empty()) break;
    EXPECT_LE(keys.size(), 3u);
    all.insert(all.end(), keys.begin(), keys.end());
    after = keys.back();
  }
  EXPECT_EQ(all, store().list_kv_keys(acme, "", {.prefix = "user"}));

  EXPECT_THROW(store().list_kv_keys(acme, "", {.limit = 0}), std::invalid_argument);
}

TEST_F(BrokerStateStoreTest, KvPrefixOfHighBytesLeavesNothingOut) {
  auto acme = tenant();
  std::string high("\xff\xff", 2);
  put(acme, "", high + "a", "v", 1);
  put(acme, "", high, "v", 1);
  put(acme, "", "a", "v", 1);
  EXPECT_EQ(store().list_kv_keys(acme, "", {.prefix = high}).size(), 2u);
  EXPECT_EQ(store().list_kv_keys(acme, "", {.prefix = "\xff"}).size(), 2u);
}

TEST_F(BrokerStateStoreTest, KvWritesForAnUnknownTenantAreNotFound) {
  EXPECT_THROW(put("no-such-tenant", "", "k", "v", 1), NotFound);
  EXPECT_FALSE(store().find_kv("no-such-tenant", "", "k"));
  EXPECT_EQ(store().kv_usage("no-such-tenant", "").keys, 0);
}

// Every thread tries to add its own keys under one quota; however the puts interleave, exactly
// max_keys of them land and the usage row agrees with the rows.
void expect_quota_holds_under_concurrency(Store& check, const std::string& tenant_id,
                                          const std::function<Store&(int)>& store_for_thread) {
  constexpr int kThreads = 4, kPerThread = 25;
  constexpr KvQuota quota{30, 1 << 20};
  std::atomic<int> stored{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < kPerThread; ++i) {
          auto key = "t" + std::to_string(t) + "-" + std::to_string(i);
          if (store_for_thread(t).put_kv(tenant_id, "", key, KvValue{"v", 1}, quota).stored) {
            ++stored;
          }
        }
      } catch (const std::exception& error) {
        ADD_FAILURE() << error.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(stored, quota.max_keys);
  EXPECT_EQ(check.kv_usage(tenant_id, "").keys, quota.max_keys);
  EXPECT_EQ(check.list_kv_keys(tenant_id, "", {.limit = 1000}).size(),
            static_cast<size_t>(quota.max_keys));
}

TEST_F(BrokerStateStoreTest, KvQuotaHoldsUnderConcurrentPutsThroughOneStore) {
  auto acme = tenant();
  expect_quota_holds_under_concurrency(store(), acme, [&](int) -> Store& { return store(); });
}

TEST_F(BrokerStateStoreTest, KvQuotaHoldsUnderConcurrentPutsThroughSeparateConnections) {
  auto acme = tenant();
  std::vector<std::unique_ptr<Store>> stores;
  for (int t = 0; t < 4; ++t) stores.push_back(corral::testing::open_store_under_test(data_dir()));
  expect_quota_holds_under_concurrency(store(), acme, [&](int t) -> Store& { return *stores[t]; });
}

TEST_F(BrokerStateStoreTest, KvUsageIsKeptByTheDatabaseForEveryWritePath) {
  auto acme = tenant();
  put(acme, "", "a", "v", 10);
  put(acme, "", "b", "v", 20);
  {
    // An operator deleting a row by hand does not leave the usage wrong.
    corral::testing::RawSql raw(data_dir());
    raw.exec("DELETE FROM kv_entries WHERE key = 'a'");
  }
  EXPECT_EQ(store().kv_usage(acme, "").keys, 1);
  EXPECT_EQ(store().kv_usage(acme, "").bytes, 21);
}

// ---- secrets

TEST_F(BrokerStateStoreTest, SecretsArePutFoundListedAndDeleted) {
  auto acme = tenant("acme"), globex = tenant("globex");
  store().put_secret(acme, "db.password", std::string("s\0e", 3), 100);
  store().put_secret(acme, "api-key", "k1", 101);
  store().put_secret(globex, "api-key", "g1", 102);

  EXPECT_EQ(store().find_secret(acme, "db.password"), std::string("s\0e", 3));
  EXPECT_EQ(store().find_secret(globex, "api-key"), "g1");
  EXPECT_FALSE(store().find_secret(globex, "db.password"));

  store().put_secret(acme, "api-key", "k2", 200);
  EXPECT_EQ(store().find_secret(acme, "api-key"), "k2");

  auto listed = store().list_secrets(acme);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].name, "api-key");
  EXPECT_EQ(listed[0].updated_at, 200);
  EXPECT_EQ(listed[1].name, "db.password");

  EXPECT_TRUE(store().delete_secret(acme, "api-key"));
  EXPECT_FALSE(store().delete_secret(acme, "api-key"));
  EXPECT_EQ(store().list_secrets(acme).size(), 1u);
  EXPECT_EQ(store().find_secret(globex, "api-key"), "g1");
  EXPECT_THROW(store().put_secret("no-such-tenant", "x", "v", 1), NotFound);
}

// ---- events

TEST_F(BrokerStateStoreTest, EventsAreNumberedPerTenantAndReadInOrder) {
  auto acme = tenant("acme"), globex = tenant("globex");
  for (int i = 1; i <= 5; ++i) {
    auto event = store().append_event(acme, "orders", R"({"n":)" + std::to_string(i) + "}", i);
    EXPECT_EQ(event.seq, i);
  }
  EXPECT_EQ(store().append_event(globex, "other", "{}", 9).seq, 1);

  auto all = store().read_events(acme, 0, 100);
  ASSERT_EQ(all.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(all[i].seq, i + 1);
    EXPECT_EQ(all[i].tenant_id, acme);
    EXPECT_EQ(all[i].topic, "orders");
    EXPECT_EQ(all[i].payload, R"({"n":)" + std::to_string(i + 1) + "}");
    EXPECT_EQ(all[i].created_at, i + 1);
  }
  auto page = store().read_events(acme, 2, 2);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].seq, 3);
  EXPECT_EQ(page[1].seq, 4);
  EXPECT_TRUE(store().read_events(acme, 5, 10).empty());
  EXPECT_EQ(store().read_events(globex, 0, 10).size(), 1u);
  EXPECT_THROW(store().read_events(acme, 0, 0), std::invalid_argument);
  EXPECT_THROW(store().append_event("no-such-tenant", "t", "{}", 1), NotFound);
}

// The outbox's bound (policy quotas.events): a tenant emitting without end keeps only its newest
// events, and never touches another tenant's.
TEST_F(BrokerStateStoreTest, ATenantKeepsOnlyItsNewestEvents) {
  auto acme = tenant("acme"), globex = tenant("globex");
  for (int i = 1; i <= 3; ++i) store().append_event(globex, "g", "{}", i, 2);
  for (int i = 1; i <= 50; ++i) store().append_event(acme, "a", "{}", i, 10);
  auto kept = store().read_events(acme, 0, 1000);
  ASSERT_EQ(kept.size(), 10u);
  EXPECT_EQ(kept.front().seq, 41);
  EXPECT_EQ(kept.back().seq, 50);
  EXPECT_EQ(store().read_events(globex, 0, 1000).size(), 2u);
  {
    corral::testing::RawSql raw(data_dir());
    EXPECT_EQ(raw.integer("SELECT count(*) FROM events"), 12);
  }
}

TEST_F(BrokerStateStoreTest, ATenantKeepsNoMoreThanItsEventBytes) {
  auto acme = tenant("acme"), globex = tenant("globex");
  store().append_event(globex, "g", std::string(1000, 'g'), 1, 100, 4000);
  std::string kilobyte(1000, 'k');
  for (int i = 1; i <= 200; ++i) store().append_event(acme, "a", kilobyte, i, 1000, 10'500);
  auto kept = store().read_events(acme, 0, 1000);
  ASSERT_EQ(kept.size(), 10u);  // 10 x 1000 bytes fit in 10,500; 11 do not
  EXPECT_EQ(kept.back().seq, 200);
  EXPECT_EQ(store().read_events(globex, 0, 1000).size(), 1u);
  {
    corral::testing::RawSql raw(data_dir());
    EXPECT_EQ(raw.integer("SELECT kept_bytes FROM event_counters WHERE tenant_id = '" + acme + "'"),
              10'000);
  }
}

TEST_F(BrokerStateStoreTest, EventNumbersAreNotReusedAfterPruning) {
  auto acme = tenant();
  store().append_event(acme, "t", "{}", 1);
  store().append_event(acme, "t", "{}", 2);
  {
    corral::testing::RawSql raw(data_dir());
    raw.exec("DELETE FROM events");
  }
  // A consumer whose cursor is at 2 must still see the next event.
  EXPECT_EQ(store().append_event(acme, "t", "{}", 3).seq, 3);
  EXPECT_EQ(store().read_events(acme, 2, 10).size(), 1u);
}

TEST_F(BrokerStateStoreTest, ConcurrentAppendsGetDistinctContiguousNumbers) {
  auto acme = tenant();
  std::vector<std::unique_ptr<Store>> stores;
  for (int t = 0; t < 4; ++t) stores.push_back(corral::testing::open_store_under_test(data_dir()));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) stores[t]->append_event(acme, "t", "{}", i);
    });
  }
  for (auto& thread : threads) thread.join();
  auto events = store().read_events(acme, 0, 1000);
  ASSERT_EQ(events.size(), 80u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].seq, static_cast<int64_t>(i + 1));
}

// ---- policy versions

TEST_F(BrokerStateStoreTest, PolicyVersionsAreNumberedAndListedNewestFirst) {
  EXPECT_FALSE(store().latest_policy_version());
  EXPECT_TRUE(store().list_policy_versions().empty());

  EXPECT_EQ(store().insert_policy_version("defaults: {}\n", "bootstrap", 10).version, 1);
  EXPECT_EQ(store().insert_policy_version("defaults: {a: 1}\n", "tok-admin", 20).version, 2);
  EXPECT_EQ(store().insert_policy_version("defaults: {}\n", "tok-admin", 30).version, 3);

  auto latest = store().latest_policy_version();
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->version, 3);
  EXPECT_EQ(latest->created_at, 30);

  auto second = store().find_policy_version(2);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->document, "defaults: {a: 1}\n");
  EXPECT_EQ(second->created_by, "tok-admin");
  EXPECT_FALSE(store().find_policy_version(4));

  auto listed = store().list_policy_versions();
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].version, 3);
  EXPECT_EQ(listed[2].version, 1);
  EXPECT_EQ(listed[2].created_by, "bootstrap");
  EXPECT_EQ(listed[2].created_at, 10);
}

TEST_F(BrokerStateStoreTest, PolicyVersionsCannotBeRewritten) {
  store().insert_policy_version("v1", "bootstrap", 10);
  corral::testing::RawSql raw(data_dir());
  EXPECT_NE(raw.try_exec("UPDATE policy_versions SET document = 'evil'"), "");
  EXPECT_NE(raw.try_exec("DELETE FROM policy_versions"), "");
  EXPECT_EQ(store().find_policy_version(1)->document, "v1");
}

TEST_F(BrokerStateStoreTest, BrokerStateSurvivesReopening) {
  auto acme = tenant();
  put(acme, "s", "k", "sealed", 3);
  store().put_secret(acme, "n", "sealed-secret", 1);
  store().append_event(acme, "t", "{}", 1);
  store().insert_policy_version("doc", "bootstrap", 1);
  reopen();
  EXPECT_EQ(store().find_kv(acme, "s", "k")->sealed, "sealed");
  EXPECT_EQ(store().kv_usage(acme, "s").keys, 1);
  EXPECT_EQ(store().find_secret(acme, "n"), "sealed-secret");
  EXPECT_EQ(store().append_event(acme, "t", "{}", 2).seq, 2);
  EXPECT_EQ(store().latest_policy_version()->document, "doc");
}

TEST_F(BrokerStateStoreTest, AtomicallyRollsBackBrokerState) {
  auto acme = tenant();
  EXPECT_THROW(store().atomically([&] {
    put(acme, "", "k", "v", 1);
    store().append_event(acme, "t", "{}", 1);
    throw std::runtime_error("abandon");
  }),
               std::runtime_error);
  EXPECT_FALSE(store().find_kv(acme, "", "k"));
  EXPECT_EQ(store().kv_usage(acme, "").keys, 0);
  EXPECT_TRUE(store().read_events(acme, 0, 10).empty());
  EXPECT_EQ(store().append_event(acme, "t", "{}", 1).seq, 1);
}

}  // namespace
