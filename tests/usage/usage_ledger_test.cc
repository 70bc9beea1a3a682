// Usage for billing (usage/usage_ledger.h) against a real SQLite store: counted per tenant, script
// and hour, added to what is stored, kept when the store refuses a write, written at the end.
#include "usage/usage_ledger.h"

#include <gtest/gtest.h>

#include <atomic>

#include "store/sqlite_fixture.h"
#include "store/store.h"

namespace corral::usage {
namespace {

using corral::testing::RawDb;
using corral::testing::TempDir;

constexpr int64_t kHour = 1'764'000'000'000 - 1'764'000'000'000 % kHourMs;  // an hour's start

struct Ledger {
  TempDir dir;
  std::unique_ptr<store::Store> store = store::open_sqlite_store(dir.path());
  store::Tenant acme = store->create_tenant("acme", 1);
  store::Tenant globex = store->create_tenant("globex", 1);
  std::atomic<int64_t> now{kHour + 10};
  // A write a year from now: only flush() and the destructor write.
  std::optional<UsageLedger> ledger{
      std::in_place, *store,
      UsageLedger::Options{.flush_every = std::chrono::hours(24 * 365),
                           .now_ms = [this] { return now.load(); }}};
  std::vector<store::UsageRow> rows(const store::Tenant& tenant) {
    return store->read_usage(tenant.id, 0, INT64_MAX);
  }
};

TEST(UsageLedger, CountsEachTenantScriptAndHourApart) {
  Ledger f;
  f.ledger->record_invocation(f.acme.id, "orders", false, 1.5, 100);
  f.ledger->record_invocation(f.acme.id, "orders", true, 0.25, 7);
  f.ledger->record_invocation(f.acme.id, "refunds", false, 2, 3);
  f.ledger->record_job(f.acme.id, "orders");
  f.ledger->record_invocation(f.globex.id, "orders", false, 9, 9);
  f.now = kHour + kHourMs + 5;
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 1);
  // Nothing reaches the store before a write.
  EXPECT_TRUE(f.rows(f.acme).empty());
  ASSERT_TRUE(f.ledger->flush());

  auto rows = f.rows(f.acme);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].script, "orders");
  EXPECT_EQ(rows[0].hour, kHour);
  EXPECT_EQ(rows[0].counts.invocations, 2);
  EXPECT_EQ(rows[0].counts.failures, 1);
  EXPECT_EQ(rows[0].counts.cpu_us, 1750);
  EXPECT_EQ(rows[0].counts.fuel, 107);
  EXPECT_EQ(rows[0].counts.jobs, 1);
  EXPECT_EQ(rows[1].script, "refunds");
  EXPECT_EQ(rows[1].counts.invocations, 1);
  EXPECT_EQ(rows[2].script, "orders");
  EXPECT_EQ(rows[2].hour, kHour + kHourMs);
  EXPECT_EQ(rows[2].counts.invocations, 1);
  // Another tenant's runs are its own.
  auto theirs = f.rows(f.globex);
  ASSERT_EQ(theirs.size(), 1u);
  EXPECT_EQ(theirs[0].counts.cpu_us, 9000);
  // A window of one hour.
  EXPECT_EQ(f.store->read_usage(f.acme.id, kHour + kHourMs, kHour + 2 * kHourMs).size(), 1u);
}

TEST(UsageLedger, AddsToWhatIsAlreadyStored) {
  Ledger f;
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 10);
  ASSERT_TRUE(f.ledger->flush());
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 10);
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 10);
  ASSERT_TRUE(f.ledger->flush());
  auto rows = f.rows(f.acme);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].counts.invocations, 3);
  EXPECT_EQ(rows[0].counts.fuel, 30);
}

TEST(UsageLedger, KeepsWhatTheStoreRefusedForTheNextWrite) {
  Ledger f;
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 10);
  {
    RawDb raw(f.dir.path() / "corral.db");
    raw.exec(
        "CREATE TRIGGER refuse_usage BEFORE INSERT ON usage BEGIN SELECT RAISE(ABORT, 'the disk "
        "failed'); END");
  }
  EXPECT_FALSE(f.ledger->flush());
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 10);
  EXPECT_TRUE(f.rows(f.acme).empty());
  RawDb(f.dir.path() / "corral.db").exec("DROP TRIGGER refuse_usage");
  ASSERT_TRUE(f.ledger->flush());
  auto rows = f.rows(f.acme);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].counts.invocations, 2);
}

TEST(UsageLedger, WritesWhatIsLeftWhenItStops) {
  Ledger f;
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 10);
  f.ledger.reset();
  EXPECT_EQ(f.rows(f.acme).size(), 1u);
}

TEST(UsageLedger, WritesOnItsOwnEveryInterval) {
  Ledger f;
  f.ledger.emplace(*f.store, UsageLedger::Options{.flush_every = std::chrono::milliseconds(20),
                                                  .now_ms = [&f] { return f.now.load(); }});
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 10);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (f.rows(f.acme).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(f.rows(f.acme).size(), 1u);
}

TEST(UsageLedger, SkipsRowsOfATenantThatIsGone) {
  Ledger f;
  f.ledger->record_invocation("no-such-tenant", "orders", false, 1, 10);
  f.ledger->record_invocation(f.acme.id, "orders", false, 1, 10);
  ASSERT_TRUE(f.ledger->flush());
  EXPECT_EQ(f.rows(f.acme).size(), 1u);
  EXPECT_TRUE(f.store->read_usage("no-such-tenant", 0, INT64_MAX).empty());
}

TEST(UsageStore, PrunesHoursBeforeTheGivenTime) {
  TempDir dir;
  auto store = store::open_sqlite_store(dir.path());
  auto acme = store->create_tenant("acme", 1);
  store->add_usage({{acme.id, "a", kHour - kHourMs, {.invocations = 1}},
                    {acme.id, "a", kHour, {.invocations = 2}}});
  EXPECT_EQ(store->prune_usage(kHour), 1);
  auto rows = store->read_usage(acme.id, 0, INT64_MAX);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].counts.invocations, 2);
}

TEST(UsageLedger, HourOfRoundsDown) {
  EXPECT_EQ(hour_of(kHour), kHour);
  EXPECT_EQ(hour_of(kHour + kHourMs - 1), kHour);
  EXPECT_EQ(hour_of(kHour + kHourMs), kHour + kHourMs);
}

}  // namespace
}  // namespace corral::usage
