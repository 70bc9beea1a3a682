// The store's write-ahead log is checkpointed by a thread of its own (store/wal_checkpointer.h),
// so that no commit waits for a checkpoint's disk flush: the log is copied into the database
// while writers go on, below SQLite's automatic threshold, and restarts instead of growing.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "sqlite_fixture.h"
#include "store/store.h"

namespace corral::store {
namespace {

namespace fs = std::filesystem;
using corral::testing::TempDir;

// Waits up to ten seconds for the file to reach `bytes`; returns its size then.
uintmax_t wait_for_size(const fs::path& file, uintmax_t bytes) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::error_code error;
  while (fs::file_size(file, error) < bytes && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return fs::file_size(file, error);
}

TEST(WalCheckpoints, TheLogIsCopiedIntoTheDatabaseBesideTheWritersAndRestarts) {
  TempDir dir;
  auto store = open_sqlite_store(dir.path());
  Tenant tenant = store->create_tenant("acme", 1);
  fs::path database = dir.path() / "corral.db";
  fs::path log = dir.path() / "corral.db-wal";
  const std::string payload(32 * 1024, 'e');
  constexpr uintmax_t kRound = 64 * 32 * 1024;  // 2 MiB, half SQLite's automatic threshold
  for (int round = 1; round <= 8; ++round) {
    for (int i = 0; i < 64; ++i) store->append_event(tenant.id, "orders.created", payload, i);
    // Only a checkpoint moves the events from the log into the database file.
    EXPECT_GE(wait_for_size(database, round * kRound), round * kRound) << "round " << round;
  }
  // 16 MiB went through the log: it started over (a writer found a pass caught up) instead of
  // holding them all. A log that grew past the store's journal_size_limit (8 MiB) before a writer
  // could start it over is cut back to exactly that bound, not below it.
  std::error_code error;
  EXPECT_LE(fs::file_size(log, error), 4 * kRound) << "the log kept growing";
}

}  // namespace
}  // namespace corral::store
