// Schema versions: a new database ends at the latest one, reopening changes nothing, and a
// database from a newer corrald is refused untouched, with a message that says what to do.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "store/migrations.h"
#include "store/sqlite_fixture.h"
#include "store/store.h"

namespace {

using namespace corral::store;
using corral::testing::RawDb;
using corral::testing::TempDir;

class MigrationTest : public ::testing::Test {
 protected:
  std::filesystem::path db_file() const { return dir_.path() / "corral.db"; }
  TempDir dir_;
};

TEST_F(MigrationTest, AFreshDatabaseEndsAtTheLatestVersion) {
  ASSERT_GE(latest_schema_version(), 1);
  open_sqlite_store(dir_.path());
  RawDb raw(db_file());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), latest_schema_version());
  for (const char* table : {"tenants", "tokens", "script_versions", "aliases", "audit_entries"}) {
    EXPECT_EQ(raw.integer(std::string("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                                      "name = '") +
                          table + "'"),
              1)
        << table;
  }
}

TEST_F(MigrationTest, ReopeningIsIdempotent) {
  {
    auto store = open_sqlite_store(dir_.path());
    store->create_tenant("acme", 1);
  }
  std::string schema_before;
  {
    RawDb raw(db_file());
    schema_before = raw.text("SELECT group_concat(sql, ';') FROM sqlite_schema");
  }
  for (int i = 0; i < 3; ++i) {
    auto store = open_sqlite_store(dir_.path());
    EXPECT_EQ(store->list_tenants().size(), 1u);
  }
  RawDb raw(db_file());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), latest_schema_version());
  EXPECT_EQ(raw.text("SELECT group_concat(sql, ';') FROM sqlite_schema"), schema_before);
}

TEST_F(MigrationTest, ANewerDatabaseIsRefusedUntouched) {
  {
    auto store = open_sqlite_store(dir_.path());
    store->create_tenant("acme", 1);
  }
  {
    RawDb raw(db_file());
    raw.exec("PRAGMA user_version = 999");
  }
  try {
    open_sqlite_store(dir_.path());
    FAIL() << "a database at schema version 999 was opened";
  } catch (const StoreError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find(db_file().string()), std::string::npos) << message;
    EXPECT_NE(message.find("version 999"), std::string::npos) << message;
    EXPECT_NE(message.find("up to " + std::to_string(latest_schema_version())), std::string::npos)
        << message;
    EXPECT_NE(message.find("newer corrald"), std::string::npos) << message;
  }
  RawDb raw(db_file());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), 999);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM tenants"), 1);
}

TEST_F(MigrationTest, AnEmptyFileIsMigratedFromScratch) {
  // SQLite treats an empty file as an empty database at version 0.
  { std::ofstream touch(db_file()); }
  auto store = open_sqlite_store(dir_.path());
  EXPECT_TRUE(store->list_tenants().empty());
  RawDb raw(db_file());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), latest_schema_version());
}

TEST_F(MigrationTest, ConcurrentFirstOpensMigrateOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      try {
        open_sqlite_store(dir_.path())->list_tenants();
      } catch (const std::exception& error) {
        ADD_FAILURE() << error.what();
        ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  RawDb raw(db_file());
  EXPECT_EQ(raw.integer("PRAGMA user_version"), latest_schema_version());
}

}  // namespace
