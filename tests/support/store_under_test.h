// The database the store's tests run against. By default SQLite, in the data directory the test
// names, as corrald opens it. With CORRAL_TEST_STORE=postgresql the same tests run on PostgreSQL:
// each data directory stands for a database of its own (the same one each time the test reopens
// it), on a server of the test process's own, started at the first use and stopped at exit; with
// CORRAL_TEST_STORE=postgresql:DIR, on the server that runs in DIR (ctest starts one for the
// whole run: tests/store/CMakeLists.txt).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "store/store.h"

namespace corral::testing {

bool testing_postgres();

// What open_sqlite_store(data_dir) gives, on the backend under test.
std::unique_ptr<store::Store> open_store_under_test(const std::filesystem::path& data_dir);

// Raw SQL on the database under test, behind the store's back, as an operator with sqlite3 or
// psql would have. Failures are test failures, with the database's message.
class RawSql {
 public:
  explicit RawSql(const std::filesystem::path& data_dir);
  ~RawSql();
  void exec(const std::string& sql);
  // The database's message, or "" if the SQL ran.
  std::string try_exec(const std::string& sql);
  // The first column of the first row ("" if there is none).
  std::string text(const std::string& sql);
  int64_t integer(const std::string& sql) { return std::stoll(text(sql)); }

 private:
  struct Backend;
  std::unique_ptr<Backend> backend_;
};

// The reason to skip a test of something only SQLite has (its file, WAL, PRAGMAs), when the
// tests run on PostgreSQL; empty otherwise.
std::string sqlite_only(const std::string& what);

}  // namespace corral::testing

// In a test body: skips it when the store under test is not SQLite.
#define SKIP_UNLESS_SQLITE(what)                                     \
  if (auto why = corral::testing::sqlite_only(what); !why.empty()) { \
    GTEST_SKIP() << why;                                             \
  }
