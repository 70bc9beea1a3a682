// One connection to PostgreSQL through libpq, for the store's PostgreSQL backend: statements in
// the store's own SQL (parameters written ?1, ?2… or :name, as the SQLite backend takes them) are
// sent with their values apart from the text, and PostgreSQL's failures become the store's errors
// (a uniqueness rule or foreign key broken is ConstraintError, which the store's methods turn into
// Conflict or NotFound; a server that cannot be reached or went away is StorageUnavailable; a
// transaction that lost a serialization race is SerializationFailure (safe to run again from the
// start).
//
// Not thread-safe: one thread uses a connection at a time. Messages name the server as
// host/database (never a password) and say what to do; libpq's own words go only to corrald's log
// through what(), as every StoreError's do.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/sql_connection.h"

struct pg_conn;
struct pg_result;

namespace corral::store {

// A transaction that PostgreSQL aborted so that concurrent ones stay serializable (SQLSTATE
// 40001) or broke a deadlock (40P01): nothing it did was kept, and running it again from BEGIN
// is the remedy.
class SerializationFailure : public StoreError {
 public:
  using StoreError::StoreError;
};

// A value sent with a statement. Integers go as int8; bytes as bytea; text goes as its bytes with
// the type left to the server, which takes the column's: a text column checks they are UTF-8, a
// bytea one (a kv key, a script's source: any bytes, NUL included) keeps them as they are.
class PostgresValue {
 public:
  static constexpr unsigned kUnknown = 0, kBytea = 17, kInt8 = 20, kText = 25;

  static PostgresValue null(unsigned type = kUnknown) { return PostgresValue({}, type); }
  static PostgresValue text(std::string_view text) {
    return PostgresValue(std::string(text), kUnknown);
  }
  static PostgresValue integer(int64_t value) {
    return PostgresValue(std::to_string(value), kInt8);
  }
  static PostgresValue bytes(std::string_view bytes) {
    return PostgresValue(std::string(bytes), kBytea);
  }

  bool is_null() const { return !value_; }
  bool is_bytes() const { return type_ == kBytea; }
  // Sent in binary format: the bytes as they are (text and bytea), not a textual form.
  bool binary() const { return value_ && type_ != kInt8; }
  unsigned type() const { return type_; }
  const std::string& value() const { return *value_; }

 private:
  PostgresValue(std::optional<std::string> value, unsigned type)
      : value_(std::move(value)), type_(type) {}
  std::optional<std::string> value_;
  unsigned type_ = kUnknown;
};

// The rows a statement returned, read by row and column number.
class PostgresRows {
 public:
  explicit PostgresRows(pg_result* result);
  ~PostgresRows();
  PostgresRows(PostgresRows&& other) noexcept;
  PostgresRows& operator=(PostgresRows&&) = delete;
  PostgresRows(const PostgresRows&) = delete;

  int size() const;
  bool is_null(int row, int column) const;
  // NULL reads as empty text and as 0.
  std::string text(int row, int column) const;
  int64_t integer(int row, int column) const;
  std::optional<int64_t> optional_integer(int row, int column) const;
  // A bytea column's bytes.
  std::string bytes(int row, int column) const;
  // Rows changed by an INSERT, UPDATE or DELETE without RETURNING.
  int64_t affected() const;

 private:
  pg_result* result_;
};

class PostgresConnection {
 public:
  // Connects to a postgresql:// URI (libpq's form); throws StorageUnavailable naming the server.
  explicit PostgresConnection(const std::string& url);
  ~PostgresConnection();
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;

  // Runs one statement. `what` says what the caller was doing, for the error's message.
  PostgresRows run(std::string_view sql, const std::vector<PostgresValue>& values,
                   std::string_view what);
  // Runs statements with no parameters, separated by semicolons (a schema, BEGIN, COMMIT).
  void run_script(std::string_view sql, std::string_view what);

  // False once the server has gone away; reconnect() then tries again.
  bool usable() const;
  // Connects anew with the same settings (after the server restarted); throws StorageUnavailable
  // when it still cannot be reached. Whatever transaction was open is gone.
  void reconnect();
  // "host/database" for messages: the socket directory or host, and the database's name.
  const std::string& server() const { return server_; }

  // The store's SQL as PostgreSQL takes it: ?N becomes $N, each :name becomes the $N of the
  // name's first appearance (`names` receives the names in their numbering's order), and
  // CAST(x AS BLOB) becomes convert_to(x, 'UTF8'). Text inside quotes is left alone.
  static std::string translate(std::string_view sql, std::vector<std::string>* names = nullptr);

 private:
  [[noreturn]] void fail(pg_result* result, std::string_view what);

  pg_conn* connection_ = nullptr;
  std::string server_;
};

// A postgresql:// URI with any password replaced by "***", for logs and messages.
std::string redact_postgres_url(std::string_view url);

}  // namespace corral::store
