#include "store/sqlite_connection.h"

#include <sqlite3.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "store/migrations.h"
#include "store/wal_checkpointer.h"

namespace corral::store {

namespace {

// A failed statement, with SQLite's extended result code, for the few callers here that wait
// and retry on SQLITE_BUSY.
class SqliteError : public StoreError {
 public:
  SqliteError(const std::string& message, int code) : StoreError(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

std::string hint_for(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "; another connection kept the database locked (waited up to " +
             std::to_string(SqliteConnection::kBusyTimeoutMs / 1000) +
             " s): retry, and check for a stuck process using the same data directory";
    case SQLITE_FULL:
      return "; the disk is full: free some space and retry";
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
    case SQLITE_AUTH:
      return "; check that the file and its directory exist and are writable by this user";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return "; the file is damaged or is not a corral database: restore it from a backup or "
             "point --data-dir elsewhere";
    case SQLITE_IOERR:
      return "; the disk reported an I/O error: check the disk and the system log";
    default:
      return "";
  }
}

std::string in_quotes(std::string_view text) { return "\"" + std::string(text) + "\""; }

}  // namespace

class SqliteConnection::Statement : public SqlStatement {
 public:
  Statement(SqliteConnection& connection, sqlite3_stmt* stmt)
      : connection_(connection), stmt_(stmt) {}
  ~Statement() override { sqlite3_finalize(stmt_); }

  void bind_text(int index, std::string_view text) override {
    check_bind(
        sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  void bind_integer(int index, int64_t value) override {
    check_bind(sqlite3_bind_int64(stmt_, index, value));
  }
  void bind_bytes(int index, std::string_view bytes) override {
    check_bind(sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT));
  }
  void bind_null(int index, Kind) override { check_bind(sqlite3_bind_null(stmt_, index)); }
  int parameter_index(const char* name) override {
    return sqlite3_bind_parameter_index(stmt_, name);
  }

  bool step(std::string_view what) override {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    connection_.fail(rc, what);
  }
  bool is_null(int column) const override {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  int64_t integer(int column) const override { return sqlite3_column_int64(stmt_, column); }
  std::string text(int column) const override {
    auto data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    if (data == nullptr) return {};
    return std::string(data, static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  std::string bytes(int column) const override {
    auto data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    if (data == nullptr) return {};
    return std::string(data, static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  void reset() noexcept override {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  void check_bind(int rc) {
    if (rc != SQLITE_OK) connection_.fail(rc, "binding a statement parameter");
  }

  SqliteConnection& connection_;
  sqlite3_stmt* stmt_;
};

SqliteConnection::SqliteConnection(const std::filesystem::path& file) : file_(file) {
  // The store serialises every use of the connection, so SQLite's own mutex is not needed.
  int rc =
      sqlite3_open_v2(file.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw StoreError("cannot open the store " + file.string() + ": " + message + hint_for(rc));
  }
  try {
    configure_and_migrate();
    // The log is checkpointed by a connection of its own, so that no commit pays for it.
    checkpointer_ = WalCheckpointer::start(file, kCheckpointPeriod);
    if (checkpointer_) {
      exec("PRAGMA wal_autocheckpoint = 0", "leaving checkpoints to their thread");
      // A log that grew under a burst is cut back to this when it starts over.
      exec("PRAGMA journal_size_limit = 8388608", "bounding the log's file");
    }
  } catch (...) {
    checkpointer_.reset();
    statements_.clear();
    sqlite3_close_v2(db_);
    throw;
  }
}

SqliteConnection::~SqliteConnection() {
  checkpointer_.reset();  // first: the main connection, closing last, checkpoints the rest
  statements_.clear();
  sqlite3_close_v2(db_);
}

void SqliteConnection::configure_and_migrate() {
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);

  // Checked before anything is written, so that a newer corrald's database is left untouched.
  auto refuse_if_newer = [this](int64_t found) {
    if (found > latest_schema_version()) {
      throw StoreError("refusing to open the store " + file_.string() + ": its schema is version " +
                       std::to_string(found) + ", but this corrald knows only versions up to " +
                       std::to_string(latest_schema_version()) +
                       ". A newer corrald wrote it; run that corrald (or a newer one) on this data "
                       "directory, or restore a backup taken before the upgrade. The file has not "
                       "been changed.");
    }
  };
  refuse_if_newer(read_user_version());

  switch_to_wal();
  // FULL rather than NORMAL: in WAL mode NORMAL syncs the log only at checkpoints, so a power cut
  // can lose transactions that were already committed and acknowledged to a client. FULL syncs the
  // log on every commit; that costs one fsync per change, which a control plane can afford.
  exec("PRAGMA synchronous = FULL", "setting synchronous = FULL");
  // Off by default in SQLite for backward compatibility; the schema relies on them. (A future
  // migration that rebuilds a table must turn them off around itself, outside the transaction.)
  exec("PRAGMA foreign_keys = ON", "enabling foreign keys");

  begin();
  try {
    // Read again under the write lock: another process may have migrated since the first look.
    int64_t version = read_user_version();
    refuse_if_newer(version);
    for (int64_t next = version + 1; next <= latest_schema_version(); ++next) {
      exec(std::string(migrations()[next - 1]),
           "applying schema migration " + std::to_string(next));
    }
    if (version < latest_schema_version()) {
      // PRAGMA takes no bound parameters; the number is ours, not input.
      exec("PRAGMA user_version = " + std::to_string(latest_schema_version()),
           "recording the schema version");
    }
    commit();
  } catch (...) {
    rollback();
    throw;
  }
}

void SqliteConnection::switch_to_wal() {
  // Leaving rollback-journal mode needs an exclusive lock, and SQLite answers SQLITE_BUSY at once
  // rather than calling the busy handler when another connection is reading, as happens when
  // several processes open a new database together. The mode is persistent, so once any of them
  // has switched, the others find "wal" without needing the lock.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
  std::string result;
  for (;;) {
    SqlStatement& mode = statement("PRAGMA journal_mode = WAL");
    try {
      result = mode.step("switching to WAL mode") ? mode.text(0) : "";
      mode.reset();
      break;
    } catch (const SqliteError& error) {
      mode.reset();
      if ((error.code() & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() > deadline) {
        throw;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (result != "wal") {
    throw StoreError("cannot put the store " + file_.string() + " in WAL mode (SQLite answered " +
                     in_quotes(result) +
                     "); put the data directory on a local file system that supports shared "
                     "memory (not NFS)");
  }
}

int64_t SqliteConnection::read_user_version() {
  SqlStatement& pragma = statement("PRAGMA user_version");
  pragma.step("reading the schema version");
  int64_t version = pragma.integer(0);
  pragma.reset();
  return version;
}

void SqliteConnection::exec(const std::string& sql, std::string_view what) {
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(rc, what);
}

// BEGIN IMMEDIATE takes the write lock up front: a read-then-write transaction that started
// deferred could find, at its first write, that another connection wrote in between, and fail with
// SQLITE_BUSY instead of waiting.
void SqliteConnection::begin() { exec("BEGIN IMMEDIATE", "starting a transaction"); }
void SqliteConnection::commit() { exec("COMMIT", "committing a transaction"); }
void SqliteConnection::rollback() noexcept {
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

SqlStatement& SqliteConnection::statement(const std::string& sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()) + 1,
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) fail(rc, "preparing a statement");
    it = statements_.emplace(sql, std::make_unique<Statement>(*this, stmt)).first;
  }
  return *it->second;
}

void SqliteConnection::fail(int rc, std::string_view what) {
  const char* message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  if ((rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR) {
    // SQLite reports ENOSPC as SQLITE_FULL on a write, but as an I/O error when it cannot size
    // its shared-memory index or sync: errno tells them apart.
    int error = sqlite3_system_errno(db_);
    bool full = (rc & 0xff) == SQLITE_FULL || error == ENOSPC || error == EDQUOT;
    throw StorageUnavailable("store " + file_.string() + ": " + std::string(what) +
                                 " failed: " + message +
                                 (error ? " (" + std::string(std::strerror(error)) + ")" : "") +
                                 (full ? "; the disk is full: free some space" : hint_for(rc)),
                             full);
  }
  std::string text =
      "store " + file_.string() + ": " + std::string(what) + " failed: " + message + hint_for(rc);
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    throw ConstraintError(text, ConstraintError::Rule::unique);
  }
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
    throw ConstraintError(text, ConstraintError::Rule::foreign_key);
  }
  throw SqliteError(text, rc);
}

}  // namespace corral::store
