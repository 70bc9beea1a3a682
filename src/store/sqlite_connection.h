// The store's SQL on SQLite: one file in WAL mode, opened, configured and migrated here, its log
// checkpointed by a thread of its own (wal_checkpointer.h). Several connections (in one process or
// several) may share a file: writes take the database lock with BEGIN IMMEDIATE and wait up to
// kBusyTimeoutMs for each other. Not thread-safe: the store serialises its use.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "store/sql_connection.h"

struct sqlite3;

namespace corral::store {

class WalCheckpointer;

class SqliteConnection : public SqlConnection {
 public:
  static constexpr int kBusyTimeoutMs = 5000;
  // How often the log is checkpointed: at a few MB a second of writes, a pass copies a few
  // hundred KB.
  static constexpr std::chrono::milliseconds kCheckpointPeriod{200};

  // Opens or creates the database file and migrates it; throws StoreError if the file cannot be
  // opened, is not a database, or was written by a newer corrald.
  explicit SqliteConnection(const std::filesystem::path& file);
  ~SqliteConnection() override;
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  SqlStatement& statement(const std::string& sql) override;
  void exec(const std::string& sql, std::string_view what) override;
  void begin() override;
  void commit() override;
  void rollback() noexcept override;
  std::string describe() const override { return file_.string(); }
  // One corrald per data directory (data_dir_lock.h).
  bool shared() const override { return false; }

  // SQLite's failure as the store's error: StorageUnavailable for a full or failing disk,
  // ConstraintError for a broken rule, StoreError with a hint otherwise.
  [[noreturn]] void fail(int rc, std::string_view what);

 private:
  class Statement;

  void configure_and_migrate();
  void switch_to_wal();
  int64_t read_user_version();

  std::filesystem::path file_;
  sqlite3* db_ = nullptr;
  std::map<std::string, std::unique_ptr<Statement>, std::less<>> statements_;
  // Checkpoints the log beside the writers; destroyed first.
  std::unique_ptr<WalCheckpointer> checkpointer_;
};

}  // namespace corral::store
