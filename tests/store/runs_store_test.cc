// Stored runs and alias canaries in the SQLite store: runs are kept newest-first up to `keep` per
// script, a run stored twice is kept once, inputs may be absent; canaries are stored, replaced and
// refused for a version that does not exist. And the RunRecorder that writes runs off the
// invocation's path.
#include <gtest/gtest.h>

#include "runs/run_recorder.h"
#include "store/sqlite_fixture.h"
#include "store/sqlite_store.h"
#include "store/store.h"
#include "support/store_under_test.h"

namespace {

using namespace corral::store;
using corral::testing::TempDir;

StoredRun run_of(const Tenant& tenant, const std::string& script, int n) {
  return StoredRun{
      tenant.id,
      script,
      "run-" + std::to_string(n),
      1,
      100 + n,
      "ok",
      n % 2 ? std::optional<std::string>("{\"n\":" + std::to_string(n) + "}") : std::nullopt,
      "{\"output\":" + std::to_string(n) + "}"};
}

TEST(RunsStore, KeepsTheNewestRunsOfEachScriptOnce) {
  TempDir dir;
  auto store = corral::testing::open_store_under_test(dir.path());
  Tenant acme = store->create_tenant("acme", 1);
  std::vector<StoredRun> runs;
  for (int n = 1; n <= 5; ++n) runs.push_back(run_of(acme, "a", n));
  runs.push_back(run_of(acme, "b", 9));
  store->insert_runs(runs, 3);
  auto kept = store->list_runs(acme.id, "a", 100);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].id, "run-5");
  EXPECT_EQ(kept[2].id, "run-3");
  EXPECT_EQ(kept[0].input, "{\"n\":5}");
  EXPECT_EQ(kept[1].input, std::nullopt);
  EXPECT_EQ(store->list_runs(acme.id, "b", 100).size(), 1u);
  EXPECT_FALSE(store->find_run(acme.id, "a", "run-1"));
  ASSERT_TRUE(store->find_run(acme.id, "a", "run-4"));
  EXPECT_EQ(store->find_run(acme.id, "a", "run-4")->result, "{\"output\":4}");

  // The same run again is kept once, and does not push an older one out.
  store->insert_runs({run_of(acme, "a", 5)}, 3);
  EXPECT_EQ(store->list_runs(acme.id, "a", 100).size(), 3u);
  EXPECT_TRUE(store->find_run(acme.id, "a", "run-3"));
  EXPECT_EQ(store->list_runs(acme.id, "a", 2).size(), 2u);
  EXPECT_THROW(store->list_runs(acme.id, "a", 0), std::invalid_argument);
  EXPECT_THROW(store->insert_runs({run_of(Tenant{"nobody", "nobody", 0}, "a", 1)}, 3), NotFound);
}

// The review found stored runs without a per-tenant bound: runs.keep bounds each script, and a
// tenant may make many scripts. quotas.stored_runs bounds the tenant's runs in all, oldest out,
// and never touches another tenant's.
TEST(RunsStore, ATenantKeepsNoMoreThanItsStoredRunsAcrossScripts) {
  TempDir dir;
  auto store = corral::testing::open_store_under_test(dir.path());
  Tenant acme = store->create_tenant("acme", 1);
  Tenant globex = store->create_tenant("globex", 1);
  store->insert_runs({run_of(globex, "g", 1), run_of(globex, "g", 2)}, 20, 5);
  for (int script = 0; script < 10; ++script) {
    std::vector<StoredRun> runs;
    for (int n = 1; n <= 3; ++n)
      runs.push_back(run_of(acme, "s" + std::to_string(script), script * 10 + n));
    store->insert_runs(runs, 20, 7);
  }
  int64_t kept = 0;
  for (int script = 0; script < 10; ++script)
    kept +=
        static_cast<int64_t>(store->list_runs(acme.id, "s" + std::to_string(script), 100).size());
  EXPECT_EQ(kept, 7);
  EXPECT_TRUE(store->find_run(acme.id, "s9", "run-93")) << "the newest must stay";
  EXPECT_FALSE(store->find_run(acme.id, "s0", "run-1")) << "the oldest must go";
  EXPECT_EQ(store->list_runs(globex.id, "g", 100).size(), 2u);
}

TEST(RunsStore, TheRecorderWritesQueuedRunsAndFlushWaitsForThem) {
  TempDir dir;
  auto store = corral::testing::open_store_under_test(dir.path());
  Tenant acme = store->create_tenant("acme", 1);
  corral::runs::RunRecorder recorder(*store);
  for (int n = 1; n <= 50; ++n) recorder.record(run_of(acme, "a", n), 20);
  recorder.record(run_of(acme, "a", 99), 0);  // keep 0 stores nothing
  recorder.flush();
  auto kept = store->list_runs(acme.id, "a", 100);
  ASSERT_EQ(kept.size(), 20u);
  EXPECT_EQ(kept[0].id, "run-50");
  EXPECT_EQ(recorder.written(), 50u);
  EXPECT_EQ(recorder.dropped(), 0u);
}

TEST(RunsStore, TheRecorderDropsRunsOverItsBoundRatherThanGrow) {
  TempDir dir;
  auto store = corral::testing::open_store_under_test(dir.path());
  Tenant acme = store->create_tenant("acme", 1);
  uint64_t dropped = 0;
  {
    corral::runs::RunRecorder recorder(*store, 5);
    // Hold the store so that the writer cannot drain the queue meanwhile.
    store->atomically([&] {
      for (int n = 1; n <= 20; ++n) recorder.record(run_of(acme, "a", n), 100);
      dropped = recorder.dropped();
    });
  }
  EXPECT_GE(dropped, 10u);
  EXPECT_LE(store->list_runs(acme.id, "a", 100).size(), 10u);
}

TEST(CanaryStore, ACanaryIsStoredReplacedAndMustExist) {
  TempDir dir;
  auto store = corral::testing::open_store_under_test(dir.path());
  Tenant acme = store->create_tenant("acme", 1);
  for (const char* source : {"a", "b"}) {
    store->insert_version(acme.id, "greet", std::string("sha-of:") + source, source,
                          R"({"runtime":"lua5.4"})", "tok-publisher", 2);
  }
  Alias live = store->put_alias(acme.id, "greet", "live", 1, "tok-r", 10, false, Canary{2, 25});
  EXPECT_EQ(live.canary_version, 2);
  EXPECT_EQ(live.canary_weight, 25);
  auto found = store->find_alias(acme.id, "greet", "live");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->canary_version, 2);
  EXPECT_EQ(found->canary_weight, 25);
  store->put_alias(acme.id, "greet", "live", 2, "tok-r", 11);
  found = store->find_alias(acme.id, "greet", "live");
  EXPECT_EQ(found->canary_version, 0);
  EXPECT_EQ(found->canary_weight, 0);
  EXPECT_THROW(store->put_alias(acme.id, "greet", "live", 1, "tok-r", 12, false, Canary{7, 10}),
               NotFound);
}

}  // namespace
