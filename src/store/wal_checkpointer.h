// Checkpoints the SQLite store's write-ahead log on a thread of its own. With SQLite's automatic
// checkpoints, the commit that fills the log past its threshold copies the log into the database
// and syncs it before it returns, holding the store's one connection meanwhile: every writer
// behind it waits for a disk flush that one tenant's writes caused (docs/performance.md, "Floods
// of denials and stored data"). A passive checkpoint from a second connection runs beside the
// writers instead, and the log restarts from its beginning once a checkpoint has caught up (or,
// under writes that never pause, after a restarting checkpoint once it holds 64 MiB).
#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

struct sqlite3;

namespace corral::store {

class WalCheckpointer {
 public:
  // Opens a connection of its own to `file` (already in WAL mode) and starts checkpointing it
  // every `period`. nullptr when the connection cannot be opened: the caller then keeps SQLite's
  // automatic checkpoints.
  static std::unique_ptr<WalCheckpointer> start(const std::filesystem::path& file,
                                                std::chrono::milliseconds period);
  ~WalCheckpointer();  // stops the thread; the last connection to close checkpoints what is left
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

 private:
  // 64 MiB of log (pages of 4 KiB). A restarting pass holds the writers back, and each of them
  // then sleeps in SQLite's busy handler (1, 2, 5, 10 ms…): at SQLite's own 4 MiB, a tenant
  // writing events at its full rate caused one every second, and other tenants' kv calls waited
  // up to 16 ms behind it.
  static constexpr int kRestartAboveFrames = 16384;
  // How long a restarting checkpoint waits for a writer in progress before leaving it to the next
  // pass.
  static constexpr int kRestartWaitMs = 1000;

  WalCheckpointer(sqlite3* db, std::chrono::milliseconds period);
  void run();

  sqlite3* db_;
  std::chrono::milliseconds period_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace corral::store
