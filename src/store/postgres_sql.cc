#include "store/postgres_sql.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "store/postgres_schema.h"

namespace corral::store {

// Values are gathered as they are bound and sent with the statement at its first step; its rows
// are then read one by one from the answer.
class PostgresSqlConnection::Statement : public SqlStatement {
 public:
  Statement(PostgresConnection& connection, std::string sql)
      : connection_(connection), sql_(std::move(sql)) {
    PostgresConnection::translate(sql_, &names_);
  }

  void bind_text(int index, std::string_view text) override {
    at(index) = PostgresValue::text(text);
  }
  void bind_integer(int index, int64_t value) override {
    at(index) = PostgresValue::integer(value);
  }
  void bind_bytes(int index, std::string_view bytes) override {
    at(index) = PostgresValue::bytes(bytes);
  }
  void bind_null(int index, Kind kind) override {
    // Text's NULL, like its values, takes the column's type (text or bytea).
    at(index) = PostgresValue::null(kind == Kind::integer ? PostgresValue::kInt8
                                    : kind == Kind::bytes ? PostgresValue::kBytea
                                                          : PostgresValue::kUnknown);
  }
  int parameter_index(const char* name) override {
    auto found = std::find(names_.begin(), names_.end(), name);
    return found == names_.end() ? 0 : static_cast<int>(found - names_.begin()) + 1;
  }

  bool step(std::string_view what) override {
    if (!rows_) {
      rows_.emplace(connection_.run(sql_, values_, what));
      row_ = 0;
    } else {
      ++row_;
    }
    return row_ < rows_->size();
  }
  bool is_null(int column) const override { return rows_->is_null(row_, column); }
  int64_t integer(int column) const override { return rows_->integer(row_, column); }
  std::string text(int column) const override { return rows_->text(row_, column); }
  std::string bytes(int column) const override { return rows_->bytes(row_, column); }
  void reset() noexcept override {
    values_.clear();
    rows_.reset();
  }

 private:
  PostgresValue& at(int index) {
    if (index < 1) throw std::logic_error("store: parameter numbers start at 1");
    if (values_.size() < static_cast<size_t>(index)) {
      values_.resize(static_cast<size_t>(index), PostgresValue::null());
    }
    return values_[static_cast<size_t>(index) - 1];
  }

  PostgresConnection& connection_;
  std::string sql_;
  std::vector<std::string> names_;
  std::vector<PostgresValue> values_;
  std::optional<PostgresRows> rows_;
  int row_ = 0;
};

PostgresSqlConnection::PostgresSqlConnection(const std::string& url) : connection_(url) {
  migrate_postgres(connection_);
}

PostgresSqlConnection::~PostgresSqlConnection() = default;

void PostgresSqlConnection::reconnect_if_dropped() {
  if (!in_transaction_ && !connection_.usable()) connection_.reconnect();
}

SqlStatement& PostgresSqlConnection::statement(const std::string& sql) {
  reconnect_if_dropped();
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    it = statements_.emplace(sql, std::make_unique<Statement>(connection_, sql)).first;
  }
  return *it->second;
}

void PostgresSqlConnection::exec(const std::string& sql, std::string_view what) {
  reconnect_if_dropped();
  connection_.run_script(sql, what);
}

void PostgresSqlConnection::begin() {
  reconnect_if_dropped();
  connection_.run_script("BEGIN", "starting a transaction");
  in_transaction_ = true;
  try {
    connection_.run("SELECT pg_advisory_xact_lock(?1)", {PostgresValue::integer(kWriteLockKey)},
                    "waiting for the store's write lock");
  } catch (...) {
    rollback();
    throw;
  }
}

void PostgresSqlConnection::commit() {
  in_transaction_ = false;
  connection_.run_script("COMMIT", "committing");
}

void PostgresSqlConnection::rollback() noexcept {
  in_transaction_ = false;
  if (!connection_.usable()) return;
  try {
    connection_.run_script("ROLLBACK", "rolling back");
  } catch (const StoreError&) {
    // Whatever made the caller roll back is what it reports.
  }
}

}  // namespace corral::store
