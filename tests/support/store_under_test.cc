#include "support/store_under_test.h"

#include <cstdlib>
#include <functional>
#include <mutex>
#include <set>

#include "store/postgres_connection.h"
#include "store/sqlite_fixture.h"
#include "support/postgres_server.h"

namespace corral::testing {

namespace {

std::mutex databases_mutex;

std::string store_setting() {
  const char* setting = std::getenv("CORRAL_TEST_STORE");
  return setting == nullptr ? "" : setting;
}

PostgresServer& server() {
  std::string setting = store_setting();
  if (auto colon = setting.find(':'); colon != std::string::npos) {
    static PostgresServer shared{std::filesystem::path(setting.substr(colon + 1))};
    return shared;
  }
  static PostgresServer own;
  return own;
}

// A database name for a data directory: the same each time, and unlike any other test's (the
// directory is a fresh temporary one).
std::string database_for(const std::filesystem::path& data_dir) {
  std::string name = "t" + std::to_string(std::hash<std::string>{}(data_dir.string()));
  std::lock_guard lock(databases_mutex);
  static std::set<std::string> made;
  if (!made.contains(name)) {
    server().create_database(name);
    made.insert(name);
  }
  return name;
}

}  // namespace

bool testing_postgres() {
  std::string setting = store_setting();
  return setting == "postgresql" || setting.starts_with("postgresql:");
}

std::unique_ptr<store::Store> open_store_under_test(const std::filesystem::path& data_dir) {
  if (!testing_postgres()) return store::open_sqlite_store(data_dir);
  return store::open_postgres_store(server().url(database_for(data_dir)));
}

struct RawSql::Backend {
  std::unique_ptr<RawDb> sqlite;
  std::unique_ptr<store::PostgresConnection> postgres;
};

RawSql::RawSql(const std::filesystem::path& data_dir) : backend_(std::make_unique<Backend>()) {
  if (testing_postgres()) {
    backend_->postgres =
        std::make_unique<store::PostgresConnection>(server().url(database_for(data_dir)));
  } else {
    backend_->sqlite = std::make_unique<RawDb>(data_dir / "corral.db");
  }
}

RawSql::~RawSql() = default;

void RawSql::exec(const std::string& sql) {
  std::string error = try_exec(sql);
  if (!error.empty()) ADD_FAILURE() << sql << ": " << error;
}

std::string RawSql::try_exec(const std::string& sql) {
  if (backend_->sqlite) return backend_->sqlite->try_exec(sql);
  try {
    backend_->postgres->run_script(sql, "a test's SQL");
    return "";
  } catch (const store::StoreError& error) {
    return error.what();
  }
}

std::string RawSql::text(const std::string& sql) {
  if (backend_->sqlite) return backend_->sqlite->text(sql);
  try {
    auto rows = backend_->postgres->run(sql, {}, "a test's SQL");
    return rows.size() == 0 ? "" : rows.text(0, 0);
  } catch (const store::StoreError& error) {
    ADD_FAILURE() << sql << ": " << error.what();
    return "";
  }
}

std::string sqlite_only(const std::string& what) {
  if (!testing_postgres()) return "";
  return what + " is SQLite's alone; the store under test is PostgreSQL";
}

}  // namespace corral::testing
