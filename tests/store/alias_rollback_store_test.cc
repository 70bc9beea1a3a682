// Aliases with auto_rollback: the flag is stored, an automatic rollback moves only an alias that
// still points at the quarantined version and asks for it, and a person's put clears the mark.
#include <gtest/gtest.h>

#include "store/sqlite_fixture.h"
#include "store/sqlite_store.h"
#include "store/store.h"
#include "support/store_under_test.h"

namespace {

using namespace corral::store;
using corral::testing::TempDir;

TEST(AliasRollbackStore, RollsBackOnlyWhatStillPointsAtTheQuarantinedVersion) {
  TempDir dir;
  auto store = corral::testing::open_store_under_test(dir.path());
  Tenant acme = store->create_tenant("acme", 1);
  for (const char* source : {"a", "b", "c"}) {
    store->insert_version(acme.id, "greet", std::string("sha-of:") + source, source,
                          R"({"runtime":"lua5.4"})", "tok-publisher", 2);
  }
  Alias live = store->put_alias(acme.id, "greet", "live", 3, "tok-r", 10, true);
  EXPECT_TRUE(live.auto_rollback);
  EXPECT_EQ(live.rolled_back_from, 0);
  store->put_alias(acme.id, "greet", "manual", 3, "tok-r", 10);

  // Not the version it points at, or no auto_rollback: nothing moves.
  EXPECT_FALSE(store->roll_back_alias(acme.id, "greet", "live", 2, 1, 20));
  EXPECT_FALSE(store->roll_back_alias(acme.id, "greet", "manual", 3, 1, 20));
  EXPECT_EQ(store->find_alias(acme.id, "greet", "manual")->version, 3);

  auto moved = store->roll_back_alias(acme.id, "greet", "live", 3, 1, 20);
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->version, 1);
  EXPECT_EQ(moved->rolled_back_from, 3);
  EXPECT_EQ(moved->updated_by, "system");
  EXPECT_EQ(moved->updated_at, 20);
  // Survives a reopen.
  store.reset();
  store = corral::testing::open_store_under_test(dir.path());
  Alias found = *store->find_alias(acme.id, "greet", "live");
  EXPECT_EQ(found.version, 1);
  EXPECT_TRUE(found.auto_rollback);
  EXPECT_EQ(found.rolled_back_from, 3);

  // A person's put clears the mark and sets the flag as given.
  Alias reset = store->put_alias(acme.id, "greet", "live", 2, "tok-r", 30, false);
  EXPECT_EQ(reset.rolled_back_from, 0);
  found = *store->find_alias(acme.id, "greet", "live");
  EXPECT_EQ(found.rolled_back_from, 0);
  EXPECT_FALSE(found.auto_rollback);
}

// Every put and every automatic rollback is a change in the alias's history, with the version it
// left, and the history outlives a reopen (the rollback's target is read from it).
TEST(AliasRollbackStore, EveryChangeIsKeptInTheAliasHistoryAcrossAReopen) {
  TempDir dir;
  auto store = corral::testing::open_store_under_test(dir.path());
  Tenant acme = store->create_tenant("acme", 1);
  for (const char* source : {"a", "b", "c"}) {
    store->insert_version(acme.id, "greet", std::string("sha-of:") + source, source,
                          R"({"runtime":"lua5.4"})", "tok-publisher", 2);
  }
  store->put_alias(acme.id, "greet", "live", 2, "tok-r", 10);
  store->put_alias(acme.id, "greet", "live", 1, "tok-r", 11);
  store->put_alias(acme.id, "greet", "live", 3, "tok-r", 12, true, Canary{1, 10});
  ASSERT_TRUE(store->roll_back_alias(acme.id, "greet", "live", 3, 1, 13));
  store->put_alias(acme.id, "greet", "other", 1, "tok-r", 14);
  store.reset();
  store = corral::testing::open_store_under_test(dir.path());

  auto history = store->alias_history(acme.id, "greet", "live", 100);
  ASSERT_EQ(history.size(), 4u);
  EXPECT_EQ(history[0].version, 1);
  EXPECT_EQ(history[0].previous_version, 3);
  EXPECT_EQ(history[0].rolled_back_from, 3);
  EXPECT_EQ(history[0].changed_by, "system");
  EXPECT_EQ(history[0].changed_at, 13);
  EXPECT_EQ(history[1].version, 3);
  EXPECT_EQ(history[1].previous_version, 1);
  EXPECT_TRUE(history[1].auto_rollback);
  EXPECT_EQ(history[1].canary_version, 1);
  EXPECT_EQ(history[1].canary_weight, 10);
  EXPECT_EQ(history[1].rolled_back_from, 0);
  EXPECT_EQ(history[2].previous_version, 2);
  EXPECT_EQ(history[3].version, 2);
  EXPECT_FALSE(history[3].previous_version);
  EXPECT_EQ(history[3].changed_by, "tok-r");
  EXPECT_GT(history[0].seq, history[1].seq);
  EXPECT_EQ(store->alias_history(acme.id, "greet", "live", 2).size(), 2u);
  EXPECT_EQ(store->alias_history(acme.id, "greet", "other", 100).size(), 1u);
  EXPECT_TRUE(store->alias_history(acme.id, "greet", "none", 100).empty());
}

}  // namespace
