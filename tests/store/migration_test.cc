// Schema versions: a new database ends at the latest one, reopening changes nothing, and a
// database from a newer corrald is refused untouched, with a message that says what to do.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <tuple>

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
  for (const char* table :
       {"tenants", "tokens", "script_versions", "aliases", "audit_entries", "kv_entries",
        "kv_usage", "secrets", "events", "event_counters", "policy_versions"}) {
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

// A database as corrald left it at schema version 2 (before the broker's tables), with data in it,
// is brought up to date without losing anything.
TEST_F(MigrationTest, UpgradingFromVersionTwoKeepsData) {
  ASSERT_GE(latest_schema_version(), 3);
  {
    RawDb raw(db_file());
    raw.exec(std::string(migrations()[0]));
    raw.exec(std::string(migrations()[1]));
    raw.exec("PRAGMA user_version = 2");
    raw.exec("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'acme', 5)");
    raw.exec(
        "INSERT INTO tokens (id, tenant_id, role, secret_hash, created_at, created_by, subject) "
        "VALUES ('k1', 't1', 'publisher', 'hash-1', 6, 'bootstrap', 'alice')");
    raw.exec(
        "INSERT INTO script_versions (tenant_id, script, version, sha256, source, manifest, "
        "state, published_by, published_at) VALUES ('t1', 'hello', 1, 'sha', 'return 1', '{}', "
        "'pending', 'k1', 7)");
  }
  auto store = open_sqlite_store(dir_.path());
  {
    RawDb raw(db_file());
    EXPECT_EQ(raw.integer("PRAGMA user_version"), latest_schema_version());
  }
  ASSERT_TRUE(store->find_tenant("t1"));
  EXPECT_EQ(store->find_tenant("t1")->name, "acme");
  auto token = store->find_token_by_hash("hash-1");
  ASSERT_TRUE(token);
  EXPECT_EQ(token->subject, "alice");
  auto version = store->find_version("t1", "hello", 1);
  ASSERT_TRUE(version);
  EXPECT_EQ(version->source, "return 1");

  // The new tables work against the old rows.
  EXPECT_TRUE(store->put_kv("t1", "", "k", KvValue{"sealed", 1}, KvQuota{10, 100}).stored);
  EXPECT_EQ(store->kv_usage("t1", "").keys, 1);
  store->put_secret("t1", "name", "sealed", 8);
  EXPECT_EQ(store->append_event("t1", "topic", "{}", 9).seq, 1);
  EXPECT_EQ(store->insert_policy_version("doc", "bootstrap", 10).version, 1);
}

// A database at schema version 7 (before alias history, signers and dropped job inputs): each
// alias starts its history at what it points at, versions are unsigned, and jobs submitted then
// keep their inputs as they were promised.
TEST_F(MigrationTest, UpgradingFromVersionSevenStartsAliasHistoriesAndKeepsOldJobsInputs) {
  ASSERT_GE(latest_schema_version(), 10);
  {
    RawDb raw(db_file());
    for (size_t i = 0; i < 7; ++i) raw.exec(std::string(migrations()[i]));
    raw.exec("PRAGMA user_version = 7");
    raw.exec("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'acme', 5)");
    for (int version : {1, 2}) {
      raw.exec(
          "INSERT INTO script_versions (tenant_id, script, version, sha256, source, manifest, "
          "state, published_by, published_at) VALUES ('t1', 'hello', " +
          std::to_string(version) + ", 'sha" + std::to_string(version) +
          "', 'return 1', '{}', 'approved', 'k1', 7)");
    }
    raw.exec(
        "INSERT INTO aliases (tenant_id, script, name, version, updated_by, updated_at, "
        "auto_rollback, rolled_back_from) VALUES ('t1', 'hello', 'live', 1, 'system', 8, 1, 2)");
    raw.exec(
        "INSERT INTO jobs (id, tenant_id, script, version, idempotency_key, request_sha256, input, "
        "state, max_attempts, webhook_attempts, webhook_backoff_ms, created_by, created_at, "
        "updated_at, run_after) VALUES ('j1', 't1', 'hello', 1, 'key', 'hash', '{\"email\":1}', "
        "'queued', 1, 1, 1000, 'k1', 9, 9, 9)");
  }
  auto store = open_sqlite_store(dir_.path());
  auto history = store->alias_history("t1", "hello", "live", 10);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].version, 1);
  EXPECT_EQ(history[0].previous_version, 2);
  EXPECT_EQ(history[0].changed_at, 8);
  EXPECT_FALSE(store->find_version("t1", "hello", 1)->signed_by);
  auto job = store->find_job("t1", "j1");
  ASSERT_TRUE(job);
  EXPECT_TRUE(job->keep_input);
  ASSERT_TRUE(store->claim_job(100, "node-a", 30'000));
  auto finished = store->finish_job({.id = "j1",
                                     .lease_token = 1,
                                     .state = JobState::succeeded,
                                     .outcome = "ok",
                                     .status = 200,
                                     .result = "{}",
                                     .at = 101});
  ASSERT_TRUE(finished);
  EXPECT_EQ(finished->input, R"({"email":1})");
}

// A database at schema version 12 (before leases), as a corrald left it when it died: a queued
// job, one running on its first attempt and one on its last. Inserts a tenant and the three jobs.
void make_version_twelve_with_jobs(RawDb& raw) {
  for (size_t i = 0; i < 12; ++i) raw.exec(std::string(migrations()[i]));
  raw.exec("PRAGMA user_version = 12");
  raw.exec("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'acme', 5)");
  for (auto [id, state, attempts, max_attempts] :
       {std::tuple{"queued", "queued", 0, 3}, std::tuple{"running", "running", 1, 3},
        std::tuple{"last", "running", 2, 2}}) {
    raw.exec(std::string(
                 "INSERT INTO jobs (id, tenant_id, script, version, idempotency_key, "
                 "request_sha256, input, state, attempts, max_attempts, webhook_attempts, "
                 "webhook_backoff_ms, created_by, created_at, updated_at, run_after, started_at) "
                 "VALUES ('") +
             id + "', 't1', 'hello', 1, '" + id + "', 'hash', '{}', '" + state + "', " +
             std::to_string(attempts) + ", " + std::to_string(max_attempts) +
             ", 1, 1000, 'k1', 9, 9, 9, 9)");
  }
}

// On the shared-store path (no recovery at start), the claim hands back the jobs left running
// without a lease, as lapsed ones, and takes the queued one.
TEST_F(MigrationTest, UpgradingFromVersionTwelveKeepsJobsAndTheirLeaselessRunsAreHandedBack) {
  ASSERT_GE(latest_schema_version(), 13);
  {
    RawDb raw(db_file());
    make_version_twelve_with_jobs(raw);
  }
  auto store = open_sqlite_store(dir_.path());
  auto queued = store->find_job("t1", "queued");
  ASSERT_TRUE(queued);
  EXPECT_EQ(queued->lease_token, 0);
  EXPECT_TRUE(queued->lease_holder.empty());
  auto claimed = store->claim_job(100, "node-a", 30'000);
  ASSERT_TRUE(claimed);
  EXPECT_EQ(claimed->id, "queued") << "due at 9, before the handed-back ones (due at 100)";
  EXPECT_EQ(claimed->lease_token, 1);
  EXPECT_EQ(claimed->lease_holder, "node-a");
  auto requeued = store->find_job("t1", "running");
  EXPECT_EQ(requeued->state, JobState::queued);
  EXPECT_EQ(requeued->attempts, 1);
  auto failed = store->find_job("t1", "last");
  EXPECT_EQ(failed->state, JobState::failed);
  EXPECT_EQ(failed->outcome, "crashed");
  auto next = store->claim_job(101, "node-a", 30'000);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->id, "running");
  EXPECT_EQ(next->attempts, 2);
  EXPECT_TRUE(store->finish_job({.id = "running",
                                 .lease_token = next->lease_token,
                                 .state = JobState::succeeded,
                                 .outcome = "ok",
                                 .status = 200,
                                 .result = "{}",
                                 .at = 102}));
}

// On SQLite, corrald's start recovers them first (recover_jobs), as it did before leases.
TEST_F(MigrationTest, UpgradingFromVersionTwelveRecoversRunningJobsAtStart) {
  {
    RawDb raw(db_file());
    make_version_twelve_with_jobs(raw);
  }
  auto store = open_sqlite_store(dir_.path());
  auto [requeued, failed] = store->recover_jobs(50);
  EXPECT_EQ(requeued, 1);
  EXPECT_EQ(failed, 1);
  EXPECT_EQ(store->find_job("t1", "running")->state, JobState::queued);
  EXPECT_EQ(store->find_job("t1", "last")->state, JobState::failed);
  auto claimed = store->claim_job(60, "node-a", 30'000);
  ASSERT_TRUE(claimed);
  EXPECT_EQ(claimed->id, "queued");
  EXPECT_EQ(claimed->lease_token, 1);
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
