// What the store's SQL runs on, inside src/store only: a connection to SQLite or PostgreSQL, the
// statements prepared on it, and its transactions. The store's methods are written once, in SQL
// both databases take (parameters as ?N or :name, RETURNING, ON CONFLICT, IS NOT DISTINCT FROM),
// and each backend makes of them what its database needs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "store/store.h"

namespace corral::store {

// A uniqueness rule or a foreign key refused a change. The store's methods turn it into Conflict
// or NotFound with a message about their own entity; it never leaves the store.
class ConstraintError : public StoreError {
 public:
  enum class Rule { unique, foreign_key };
  ConstraintError(const std::string& message, Rule rule) : StoreError(message), rule_(rule) {}
  bool unique() const { return rule_ == Rule::unique; }
  bool foreign_key() const { return rule_ == Rule::foreign_key; }

 private:
  Rule rule_;
};

// A prepared statement. Values are bound by number (1-based) or by name; rows are read by
// column number (0-based) while step() answers true. One user at a time (busy).
class SqlStatement {
 public:
  enum class Kind { text, integer, bytes };
  virtual ~SqlStatement() = default;

  virtual void bind_text(int index, std::string_view text) = 0;
  virtual void bind_integer(int index, int64_t value) = 0;
  virtual void bind_bytes(int index, std::string_view bytes) = 0;
  // NULL, said with the kind of value that could have been there (PostgreSQL wants a type).
  virtual void bind_null(int index, Kind kind) = 0;
  // The number of a :name parameter, 0 when the statement has none of that name.
  virtual int parameter_index(const char* name) = 0;

  // True while there is a row to read; false when the statement is done.
  virtual bool step(std::string_view what) = 0;
  virtual bool is_null(int column) const = 0;
  virtual int64_t integer(int column) const = 0;   // NULL reads as 0
  virtual std::string text(int column) const = 0;  // NULL reads as ""
  virtual std::string bytes(int column) const = 0;
  // Ready for the next user: bindings and rows forgotten.
  virtual void reset() noexcept = 0;

  bool busy = false;
};

class SqlConnection {
 public:
  virtual ~SqlConnection() = default;

  // The statement for this SQL text, prepared once and kept for the connection's life.
  virtual SqlStatement& statement(const std::string& sql) = 0;
  // Runs SQL with no parameters and no rows wanted.
  virtual void exec(const std::string& sql, std::string_view what) = 0;

  // A transaction that takes the store's write lock up front, so that what a method reads stays
  // true until it commits: SQLite's BEGIN IMMEDIATE; on PostgreSQL an advisory lock that every
  // node's writers share.
  virtual void begin() = 0;
  virtual void commit() = 0;
  virtual void rollback() noexcept = 0;

  // What messages name: the database's file, or PostgreSQL's host/database.
  virtual std::string describe() const = 0;
  // Whether other corrald nodes may use the database at the same time.
  virtual bool shared() const = 0;
};

}  // namespace corral::store
