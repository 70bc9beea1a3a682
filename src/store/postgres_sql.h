// The store's SQL on PostgreSQL (sql_connection.h over postgres_connection.h): the database is
// migrated when the connection opens (postgres_schema.h), and every transaction takes one
// advisory lock that all nodes' writers share, so that a method's read-then-write holds across
// nodes as BEGIN IMMEDIATE makes it hold across SQLite connections. Correct first: the lock makes
// writers take turns cluster-wide, as SQLite's one writer does on a node; finer locks (per
// tenant, SKIP LOCKED for jobs) are for when that is measured to be the limit.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "store/postgres_connection.h"
#include "store/sql_connection.h"

namespace corral::store {

class PostgresSqlConnection : public SqlConnection {
 public:
  // The advisory lock every write transaction takes (pg_advisory_xact_lock's key).
  static constexpr int64_t kWriteLockKey = 0x636f7272616c + 1;

  // Connects to a postgresql:// URI and migrates the database; throws StoreError.
  explicit PostgresSqlConnection(const std::string& url);
  ~PostgresSqlConnection() override;

  SqlStatement& statement(const std::string& sql) override;
  void exec(const std::string& sql, std::string_view what) override;
  void begin() override;
  void commit() override;
  void rollback() noexcept override;
  std::string describe() const override { return "PostgreSQL at " + connection_.server(); }
  bool shared() const override { return true; }

 private:
  class Statement;

  // Outside a transaction, a connection the server dropped (it restarted) is made anew before
  // the next statement; inside one, the transaction fails as a whole.
  void reconnect_if_dropped();

  PostgresConnection connection_;
  bool in_transaction_ = false;
  std::map<std::string, std::unique_ptr<Statement>, std::less<>> statements_;
};

}  // namespace corral::store
