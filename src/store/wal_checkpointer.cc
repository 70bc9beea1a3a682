#include "store/wal_checkpointer.h"

#include <sqlite3.h>

#include <cstring>

namespace corral::store {

std::unique_ptr<WalCheckpointer> WalCheckpointer::start(const std::filesystem::path& file,
                                                        std::chrono::milliseconds period) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    sqlite3_close_v2(db);
    return nullptr;
  }
  // A connection learns the log is there when it first reads the file; until then a checkpoint
  // through it does nothing.
  bool in_wal_mode = false;
  sqlite3_stmt* mode = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &mode, nullptr) == SQLITE_OK &&
      sqlite3_step(mode) == SQLITE_ROW) {
    auto text = reinterpret_cast<const char*>(sqlite3_column_text(mode, 0));
    in_wal_mode = text != nullptr && std::strcmp(text, "wal") == 0;
  }
  sqlite3_finalize(mode);
  if (!in_wal_mode) {
    sqlite3_close_v2(db);
    return nullptr;
  }
  sqlite3_busy_timeout(db, kRestartWaitMs);
  return std::unique_ptr<WalCheckpointer>(new WalCheckpointer(db, period));
}

WalCheckpointer::WalCheckpointer(sqlite3* db, std::chrono::milliseconds period)
    : db_(db), period_(period), thread_([this] { run(); }) {}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  sqlite3_close_v2(db_);
}

void WalCheckpointer::run() {
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, period_, [this] { return stopping_; })) {
    lock.unlock();
    // Passive: copies what no reader still needs, never waits for a writer nor makes one wait
    // (a failure, a full disk say, leaves the log to the next pass).
    int frames_in_log = 0;
    int frames_copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames_in_log,
                                       &frames_copied);
    // The log starts over only when a writer begins after a checkpoint caught up with it, which
    // writes that never pause do not allow: past the bound, a restarting checkpoint holds the
    // writers back for the little the passive pass left, and the next writer starts over.
    if (rc == SQLITE_OK && frames_in_log > kRestartAboveFrames) {
      sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_RESTART, &frames_in_log,
                                &frames_copied);
    }
    lock.lock();
  }
}

}  // namespace corral::store
