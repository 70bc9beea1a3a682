// The PostgreSQL backend's foundations against a real server the test starts
// (support/postgres_server.h): the schema matches SQLite's column by column, nodes starting
// together migrate once, a newer database is refused, PostgreSQL's failures become the store's
// errors, and a server that went away is reported as such and reached again once it is back.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "store/migrations.h"
#include "store/postgres_connection.h"
#include "store/postgres_schema.h"
#include "store/sqlite_fixture.h"
#include "store/sqlite_store.h"
#include "support/postgres_server.h"

namespace corral::store {
namespace {

using corral::testing::PostgresServer;
using corral::testing::RawDb;
using corral::testing::TempDir;

#define SKIP_WITHOUT_POSTGRES() \
  if (auto why = PostgresServer::unavailable()) GTEST_SKIP() << *why

// name -> "type:notnull" of every column of every corral table.
using Columns = std::map<std::string, std::map<std::string, std::string>>;

// SQLite's and PostgreSQL's names for the same kinds of value.
std::string kind_of(std::string type) {
  for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (type == "integer" || type == "bigint") return "integer";
  if (type == "blob" || type == "bytea") return "bytes";
  return type;
}

Columns sqlite_columns(const std::filesystem::path& file) {
  RawDb raw(file);
  Columns columns;
  std::string tables = raw.text(
      "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_schema WHERE type = 'table' "
      "AND name NOT LIKE 'sqlite_%' ORDER BY name)");
  std::stringstream names(tables);
  for (std::string table; std::getline(names, table, ',');) {
    std::string described = raw.text(
        "SELECT group_concat(name || ' ' || type || ' ' || \"notnull\""
        " || ' ' || pk, ',') FROM pragma_table_info('" +
        table + "')");
    std::stringstream each(described);
    for (std::string column; std::getline(each, column, ',');) {
      std::stringstream parts(column);
      std::string name, type, not_null, primary;
      parts >> name >> type >> not_null >> primary;
      // A PRIMARY KEY column is NOT NULL on PostgreSQL whatever it says; on SQLite only when it
      // says so (or is the rowid).
      bool required = not_null == "1" || primary != "0";
      columns[table][name] = kind_of(type) + (required ? ":not null" : ":null");
    }
  }
  return columns;
}

Columns postgres_columns(PostgresConnection& connection) {
  auto rows = connection.run(
      "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
      "WHERE table_schema = 'public' AND table_name <> 'corral_schema'",
      {}, "reading the schema");
  Columns columns;
  for (int row = 0; row < rows.size(); ++row) {
    columns[rows.text(row, 0)][rows.text(row, 1)] =
        kind_of(rows.text(row, 2)) + (rows.text(row, 3) == "NO" ? ":not null" : ":null");
  }
  return columns;
}

TEST(PostgresConnectionText, TheStoresParametersBecomePostgresOnes) {
  EXPECT_EQ(PostgresConnection::translate("SELECT a FROM t WHERE b = ?1 AND c = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = $12");
  std::vector<std::string> names;
  EXPECT_EQ(
      PostgresConnection::translate(
          "UPDATE jobs SET x = :value WHERE id = :id AND y = :value AND z = 5::bigint", &names),
      "UPDATE jobs SET x = $1 WHERE id = $2 AND y = $1 AND z = 5::bigint");
  EXPECT_EQ(names, (std::vector<std::string>{":value", ":id"}));
  EXPECT_EQ(PostgresConnection::translate("SELECT sum(length(CAST(source AS BLOB))) FROM v"),
            "SELECT sum(octet_length(source)) FROM v");
  // Quoted text is data, not parameters.
  EXPECT_EQ(PostgresConnection::translate("SELECT '?1 :id', \"a?2\" FROM t WHERE x = ?1"),
            "SELECT '?1 :id', \"a?2\" FROM t WHERE x = $1");
}

TEST(PostgresConnectionText, APasswordNeverReachesAMessage) {
  EXPECT_EQ(redact_postgres_url("postgresql://corral:s3cret@db.example:5432/corral"),
            "postgresql://corral:***@db.example:5432/corral");
  EXPECT_EQ(redact_postgres_url("postgresql://db.example/corral?user=a&password=s3cret&x=1"),
            "postgresql://db.example/corral?user=a&password=***&x=1");
  EXPECT_EQ(redact_postgres_url("postgresql://corral@/corral?host=/tmp/x"),
            "postgresql://corral@/corral?host=/tmp/x");
}

TEST(PostgresSchema, EveryTableHasSQLitesColumnsAtTheSameVersion) {
  SKIP_WITHOUT_POSTGRES();
  ASSERT_EQ(postgres_migrations().back().version, latest_schema_version())
      << "a migration was added for SQLite (migrations.cc) without its PostgreSQL step "
         "(postgres_schema.cc)";
  PostgresServer server;
  PostgresConnection connection(server.url());
  EXPECT_EQ(migrate_postgres(connection), 0);
  EXPECT_EQ(postgres_schema_version(connection), latest_schema_version());

  TempDir dir;
  { SqliteStore sqlite(dir.path() / "corral.db"); }
  Columns expected = sqlite_columns(dir.path() / "corral.db");
  Columns found = postgres_columns(connection);
  ASSERT_FALSE(expected.empty());
  // Text on SQLite that holds any bytes, bytea on PostgreSQL (postgres_schema.cc says why).
  for (auto [table, column] : {std::pair{"script_versions", "source"}, {"kv_entries", "key"}}) {
    ASSERT_EQ(expected[table][column], "text:not null") << table << "." << column;
    expected[table][column] = "bytes:not null";
  }
  for (const auto& [table, columns] : expected) {
    ASSERT_TRUE(found.contains(table)) << "PostgreSQL has no table " << table;
    EXPECT_EQ(found[table], columns) << "table " << table;
  }
  for (const auto& [table, columns] : found) {
    EXPECT_TRUE(expected.contains(table)) << "SQLite has no table " << table;
  }
}

TEST(PostgresSchema, NodesStartingTogetherMigrateOnce) {
  SKIP_WITHOUT_POSTGRES();
  PostgresServer server;
  server.create_database("together");
  std::vector<int64_t> found_at(4, -1);
  std::vector<std::thread> nodes;
  for (size_t i = 0; i < found_at.size(); ++i) {
    nodes.emplace_back([&, i] {
      PostgresConnection connection(server.url("together"));
      found_at[i] = migrate_postgres(connection);
    });
  }
  for (auto& node : nodes) node.join();
  std::multiset<int64_t> versions(found_at.begin(), found_at.end());
  EXPECT_EQ(versions.count(0), 1u) << "exactly one node found an empty database";
  EXPECT_EQ(versions.count(latest_schema_version()), found_at.size() - 1);
  PostgresConnection connection(server.url("together"));
  EXPECT_EQ(postgres_schema_version(connection), latest_schema_version());
  EXPECT_EQ(migrate_postgres(connection), latest_schema_version()) << "nothing left to do";
}

TEST(PostgresSchema, ADatabaseANewerCorralWroteIsRefused) {
  SKIP_WITHOUT_POSTGRES();
  PostgresServer server;
  PostgresConnection connection(server.url());
  migrate_postgres(connection);
  connection.run("UPDATE corral_schema SET version = 999", {}, "pretending to be newer");
  try {
    migrate_postgres(connection);
    ADD_FAILURE() << "a database at schema 999 was accepted";
  } catch (const StoreError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("written by a newer corral (schema version 999"), std::string::npos)
        << message;
    EXPECT_NE(message.find("--store"), std::string::npos) << message;
  }
  EXPECT_EQ(postgres_schema_version(connection), 999) << "the refusal changed nothing";
}

class PostgresBackend : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_POSTGRES();
    server_.emplace();
    connection_.emplace(server_->url());
    migrate_postgres(*connection_);
    run("INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
        {PostgresValue::text("t1"), PostgresValue::text("acme"), PostgresValue::integer(5)});
  }
  PostgresRows run(std::string_view sql, const std::vector<PostgresValue>& values = {}) {
    return connection_->run(sql, values, "a test's statement");
  }
  std::optional<PostgresServer> server_;
  std::optional<PostgresConnection> connection_;
};

TEST_F(PostgresBackend, ValuesComeBackAsTheyWereStored) {
  std::string sealed("\0\x01\xff sealed\n", 11);
  run("INSERT INTO secrets (tenant_id, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)",
      {PostgresValue::text("t1"), PostgresValue::text("stripe"), PostgresValue::bytes(sealed),
       PostgresValue::integer(1'700'000'000'123)});
  auto rows = run("SELECT sealed, updated_at, name FROM secrets WHERE tenant_id = ?1",
                  {PostgresValue::text("t1")});
  ASSERT_EQ(rows.size(), 1);
  EXPECT_EQ(rows.bytes(0, 0), sealed);
  EXPECT_EQ(rows.integer(0, 1), 1'700'000'000'123);
  EXPECT_EQ(rows.text(0, 2), "stripe");
  auto token = run(
      "INSERT INTO tokens (id, tenant_id, role, secret_hash, created_at, expires_at, created_by) "
      "VALUES (?1, NULL, 'admin', 'h', 1, ?2, 'bootstrap') RETURNING tenant_id, expires_at",
      {PostgresValue::text("k1"), PostgresValue::null()});
  EXPECT_TRUE(token.is_null(0, 0));
  EXPECT_EQ(token.optional_integer(0, 1), std::nullopt);
}

TEST_F(PostgresBackend, FailuresBecomeTheStoresErrors) {
  try {
    run("INSERT INTO tenants (id, name, created_at) VALUES ('t2', 'acme', 1)");
    ADD_FAILURE() << "a second tenant named acme";
  } catch (const ConstraintError& error) {
    EXPECT_TRUE(error.unique()) << error.what();
  }
  try {
    run("INSERT INTO secrets (tenant_id, name, sealed, updated_at) "
        "VALUES ('nobody', 'x', ''::bytea, 1)");
    ADD_FAILURE() << "a secret of no tenant";
  } catch (const ConstraintError& error) {
    EXPECT_TRUE(error.foreign_key()) << error.what();
  }
  // The audit trail and policy versions refuse changes, as on SQLite.
  run("INSERT INTO audit_entries (seq, time_ms, principal, tenant, action, target, decision, "
      "reason, prev_hash, hash) VALUES (1, 1, 'p', '', 'a', 't', 'allow', '', '', 'h')");
  try {
    run("UPDATE audit_entries SET reason = 'rewritten'");
    ADD_FAILURE() << "an audit entry was rewritten";
  } catch (const StoreError& error) {
    EXPECT_NE(std::string(error.what()).find("audit entries are append-only"), std::string::npos)
        << error.what();
  }
  EXPECT_THROW(run("DELETE FROM audit_entries"), StoreError);
  EXPECT_EQ(run("SELECT count(*) FROM audit_entries").integer(0, 0), 1);
}

TEST_F(PostgresBackend, TriggersKeepWhatSQLitesKeep) {
  // kv_usage follows kv_entries through insert, update and delete.
  auto put = [&](const std::string& key, int64_t bytes) {
    run("INSERT INTO kv_entries (tenant_id, namespace, key, sealed, value_bytes) "
        "VALUES ('t1', 'ns', ?1, ''::bytea, ?2) ON CONFLICT (tenant_id, namespace, key) "
        "DO UPDATE SET value_bytes = excluded.value_bytes",
        {PostgresValue::text(key), PostgresValue::integer(bytes)});
  };
  using KeysAndBytes = std::pair<int64_t, int64_t>;
  auto usage = [&] {
    auto rows = run("SELECT keys, bytes FROM kv_usage WHERE tenant_id = 't1' AND namespace = 'ns'");
    return KeysAndBytes{rows.integer(0, 0), rows.integer(0, 1)};
  };
  put("ab", 10);
  put("cde", 20);
  EXPECT_EQ(usage(), KeysAndBytes(2, 2 + 10 + 3 + 20));
  put("ab", 1);
  EXPECT_EQ(usage(), KeysAndBytes(2, 2 + 1 + 3 + 20));
  run("DELETE FROM kv_entries WHERE key = 'cde'");
  EXPECT_EQ(usage(), KeysAndBytes(1, 2 + 1));

  // Every change of an alias is in its history, with the version it pointed at before.
  run("INSERT INTO script_versions (tenant_id, script, version, sha256, source, manifest, state, "
      "published_by, published_at) VALUES ('t1', 's', 1, 'a', '', '{}', 'approved', 'p', 1), "
      "('t1', 's', 2, 'b', '', '{}', 'approved', 'p', 2)");
  run("INSERT INTO aliases (tenant_id, script, name, version, updated_by, updated_at) "
      "VALUES ('t1', 's', 'live', 1, 'p', 3)");
  run("UPDATE aliases SET version = 2, updated_at = 4 WHERE name = 'live'");
  auto history =
      run("SELECT version, previous_version FROM alias_history WHERE name = 'live' ORDER BY seq");
  ASSERT_EQ(history.size(), 2);
  EXPECT_EQ(history.integer(0, 0), 1);
  EXPECT_TRUE(history.is_null(0, 1));
  EXPECT_EQ(history.integer(1, 0), 2);
  EXPECT_EQ(history.integer(1, 1), 1);

  // A job's input is dropped when it ends, unless kept.
  for (const char* id : {"dropped", "kept"}) {
    run("INSERT INTO jobs (id, tenant_id, script, version, idempotency_key, request_sha256, "
        "input, state, max_attempts, webhook_attempts, webhook_backoff_ms, created_by, "
        "created_at, updated_at, run_after, keep_input) VALUES (?1, 't1', 's', 1, ?1, 'h', "
        "'{\"email\":\"a@b\"}', 'running', 1, 1, 1, 'p', 1, 1, 1, ?2)",
        {PostgresValue::text(id), PostgresValue::integer(std::string(id) == "kept")});
  }
  run("UPDATE jobs SET state = 'succeeded'");
  EXPECT_EQ(run("SELECT input FROM jobs WHERE id = 'dropped'").text(0, 0), "");
  EXPECT_EQ(run("SELECT input FROM jobs WHERE id = 'kept'").text(0, 0), "{\"email\":\"a@b\"}");
}

TEST_F(PostgresBackend, ConcurrentSerializableTransactionsLoseWithASerializationFailure) {
  PostgresConnection other(server_->url());
  auto begin = [](PostgresConnection& connection) {
    connection.run_script("BEGIN ISOLATION LEVEL SERIALIZABLE", "a test's transaction");
  };
  // Each reads what the other writes: one of them must be rolled back.
  begin(*connection_);
  begin(other);
  run("SELECT count(*) FROM tenants WHERE name = 'a'");
  other.run("SELECT count(*) FROM tenants WHERE name = 'b'", {}, "a test's statement");
  run("INSERT INTO tenants (id, name, created_at) VALUES ('tb', 'b', 1)");
  other.run("INSERT INTO tenants (id, name, created_at) VALUES ('ta', 'a', 1)", {},
            "a test's statement");
  connection_->run_script("COMMIT", "a test's commit");
  // A failed COMMIT ends the transaction: the connection is ready for the next one.
  EXPECT_THROW(other.run_script("COMMIT", "a test's commit"), SerializationFailure);
  EXPECT_EQ(other.run("SELECT count(*) FROM tenants", {}, "reading").integer(0, 0), 2);
}

TEST_F(PostgresBackend, AServerThatWentAwayIsUnavailableAndReachedAgainOnceBack) {
  server_->stop();
  try {
    run("SELECT 1");
    ADD_FAILURE() << "a statement ran on a stopped server";
  } catch (const StorageUnavailable& error) {
    EXPECT_FALSE(error.disk_full());
    EXPECT_NE(std::string(error.what()).find("connection to the server was lost"),
              std::string::npos)
        << error.what();
  }
  EXPECT_FALSE(connection_->usable());
  try {
    PostgresConnection refused(server_->url());
    ADD_FAILURE() << "connected to a stopped server";
  } catch (const StorageUnavailable& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("cannot connect to PostgreSQL at " + server_->directory().string() +
                           "/postgres"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("check that the server runs"), std::string::npos) << message;
  }
  server_->start();
  PostgresConnection again(server_->url());
  EXPECT_EQ(again.run("SELECT name FROM tenants", {}, "reading").text(0, 0), "acme")
      << "what was committed before the restart is there after it";
}

}  // namespace
}  // namespace corral::store
