// Aliases with auto_rollback: the flag is stored, an automatic rollback moves only an alias that
// still points at the quarantined version and asks for it, and a person's put clears the mark.
#include <gtest/gtest.h>

#include "store/sqlite_fixture.h"
#include "store/sqlite_store.h"
#include "store/store.h"

namespace {

using namespace corral::store;
using corral::testing::TempDir;

TEST(AliasRollbackStore, RollsBackOnlyWhatStillPointsAtTheQuarantinedVersion) {
  TempDir dir;
  auto store = open_sqlite_store(dir.path());
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
  store = open_sqlite_store(dir.path());
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

}  // namespace
