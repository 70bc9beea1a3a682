// The store's schema on PostgreSQL, numbered as on SQLite (migrations.h): a database at version N
// has the same tables and columns on either backend, which tests/store/postgres_schema_test.cc
// checks column by column. The first PostgreSQL step creates the schema whole at the version
// SQLite had then; every later change is appended to both lists under the same number.
//
// The version lives in the table corral_schema. Migrating takes a transaction-level advisory lock
// first, so that nodes starting together apply each step once, the others waiting and then
// finding nothing left to do.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "store/postgres_connection.h"

namespace corral::store {

struct PostgresMigration {
  int64_t version;  // the schema version the database is at after this step
  std::string_view sql;
};

// Never edit or reorder an entry once released; append.
const std::vector<PostgresMigration>& postgres_migrations();

// The advisory lock every corrald takes while migrating (pg_advisory_xact_lock's key).
inline constexpr int64_t kSchemaLockKey = 0x636f7272616c;  // "corral"

// Brings the database to the latest version in one transaction and returns the version it was
// at before. Throws StoreError, naming both versions, for a database a newer corral wrote.
int64_t migrate_postgres(PostgresConnection& connection);

// The version the database is at (0: no corral schema yet).
int64_t postgres_schema_version(PostgresConnection& connection);

}  // namespace corral::store
