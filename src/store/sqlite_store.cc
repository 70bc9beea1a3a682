#include "store/sqlite_store.h"

#include <set>
#include <stdexcept>

#include "store/sqlite_connection.h"

namespace corral::store {

namespace {

constexpr const char* kTenantColumns = "id, name, created_at";
constexpr const char* kTokenColumns =
    "id, tenant_id, role, secret_hash, created_at, expires_at, revoked_at, created_by, subject, "
    "last_used_at";
constexpr const char* kVersionColumns =
    "tenant_id, script, version, sha256, source, manifest, state, published_by, published_at, "
    "approved_by, approved_at, signed_by";
constexpr const char* kAliasColumns =
    "tenant_id, script, name, version, updated_by, updated_at, auto_rollback, rolled_back_from, "
    "canary_version, canary_weight";
constexpr const char* kRunColumns =
    "tenant_id, script, id, version, time_ms, outcome, input, result";
constexpr const char* kAuditColumns =
    "seq, time_ms, principal, tenant, action, target, decision, reason, prev_hash, hash";

std::string in_quotes(std::string_view text) { return "\"" + std::string(text) + "\""; }

}  // namespace

// A prepared statement in use, on whichever database the store runs on. Parameters are bound by
// number (?1, ?2…) or by name (:name); values never become part of the SQL text. Destruction
// resets it for the next user.
class SqliteStore::Statement {
 public:
  Statement(SqlStatement& impl, const std::string& sql) : impl_(impl) {
    if (impl_.busy) throw std::logic_error("store: statement used twice at once: " + sql);
    impl_.busy = true;
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() {
    impl_.reset();
    impl_.busy = false;
  }

  Statement& bind(int index, std::string_view text) {
    impl_.bind_text(index, text);
    return *this;
  }
  Statement& bind(int index, int64_t value) {
    impl_.bind_integer(index, value);
    return *this;
  }
  Statement& bind(int index, std::optional<int64_t> value) {
    if (value) {
      impl_.bind_integer(index, *value);
    } else {
      impl_.bind_null(index, SqlStatement::Kind::integer);
    }
    return *this;
  }
  Statement& bind_blob(int index, std::string_view bytes) {
    impl_.bind_bytes(index, bytes);
    return *this;
  }
  // Empty text is stored as NULL: for columns where "none" must not take part in foreign keys.
  Statement& bind_or_null(int index, std::string_view text) {
    if (text.empty()) {
      impl_.bind_null(index, SqlStatement::Kind::text);
      return *this;
    }
    return bind(index, text);
  }
  template <typename T>
  Statement& bind(const char* name, T value) {
    int index = impl_.parameter_index(name);
    if (index == 0) {
      throw std::logic_error(std::string("store: the statement has no parameter ") + name);
    }
    return bind(index, value);
  }

  // True while there is a row to read; false when the statement is done.
  bool step(std::string_view what) { return impl_.step(what); }
  void run(std::string_view what) {
    while (step(what)) {
    }
  }

  int64_t integer(int column) const { return impl_.integer(column); }
  std::optional<int64_t> optional_integer(int column) const {
    if (impl_.is_null(column)) return std::nullopt;
    return integer(column);
  }
  // NULL reads as empty.
  std::string text(int column) const { return impl_.text(column); }
  // A BLOB's bytes: for sealed values, which are not text.
  std::string blob(int column) const { return impl_.bytes(column); }
  std::optional<std::string> optional_text(int column) const {
    if (impl_.is_null(column)) return std::nullopt;
    return text(column);
  }

 private:
  SqlStatement& impl_;
};

// Takes the store's write lock up front (sql_connection.h), so that what a method reads stays true
// until it commits.
class SqliteStore::Transaction {
 public:
  // Inside atomically() a method's transaction joins the one already open: only the outermost
  // begins, commits or rolls back.
  explicit Transaction(SqliteStore& store)
      : store_(store), outermost_(store.transaction_depth_ == 0) {
    if (outermost_) store_.connection_->begin();
    ++store_.transaction_depth_;
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    --store_.transaction_depth_;
    if (outermost_ && !done_) store_.connection_->rollback();
  }
  void commit() {
    if (outermost_) store_.connection_->commit();
    done_ = true;
  }

 private:
  SqliteStore& store_;
  bool outermost_;
  bool done_ = false;
};

namespace {

Tenant read_tenant(const auto& row) { return Tenant{row.text(0), row.text(1), row.integer(2)}; }

Token read_token(const auto& row) {
  return Token{row.text(0),
               row.text(1),
               row.text(2),
               row.text(3),
               row.integer(4),
               row.optional_integer(5),
               row.optional_integer(6),
               row.text(7),
               row.text(8),
               row.optional_integer(9)};
}

ScriptVersion read_version(const auto& row, const std::filesystem::path& file) {
  ScriptVersion version{
      row.text(0),    row.text(1),          row.integer(2),           row.text(3),
      row.text(4),    row.text(5),          VersionState::pending,    row.text(7),
      row.integer(8), row.optional_text(9), row.optional_integer(10), row.optional_text(11)};
  auto state = parse_version_state(row.text(6));
  if (!state) {
    // The schema's CHECK constraint rules this out, so the file was edited by hand.
    throw StoreError("store " + file.string() + ": version " + std::to_string(version.version) +
                     " of script " + in_quotes(version.script) + " has the unknown state " +
                     in_quotes(row.text(6)) + "; repair the row or restore a backup");
  }
  version.state = *state;
  return version;
}

Alias read_alias(const auto& row) {
  return Alias{row.text(0),
               row.text(1),
               row.text(2),
               row.integer(3),
               row.text(4),
               row.integer(5),
               row.integer(6) != 0,
               row.optional_integer(7).value_or(0),
               row.optional_integer(8).value_or(0),
               row.integer(9)};
}

StoredRun read_run(const auto& row) {
  return StoredRun{row.text(0),    row.text(1), row.text(2),          row.integer(3),
                   row.integer(4), row.text(5), row.optional_text(6), row.text(7)};
}

AuditEntry read_audit_entry(const auto& row) {
  return AuditEntry{row.integer(0), row.integer(1), row.text(2), row.text(3), row.text(4),
                    row.text(5),    row.text(6),    row.text(7), row.text(8), row.text(9)};
}

}  // namespace

SqliteStore::SqliteStore(const std::filesystem::path& file)
    : SqliteStore(std::make_unique<SqliteConnection>(file)) {}

SqliteStore::SqliteStore(std::unique_ptr<SqlConnection> connection)
    : file_(connection->describe()), connection_(std::move(connection)) {}

SqliteStore::~SqliteStore() = default;

SqliteStore::Statement SqliteStore::statement(const std::string& sql) {
  return Statement(connection_->statement(sql), sql);
}

// ---- tenants

Tenant SqliteStore::create_tenant(std::string_view name, int64_t at) {
  std::lock_guard lock(mutex_);
  auto insert =
      statement("INSERT INTO tenants (id, name, created_at) VALUES (?3, ?1, ?2) RETURNING id");
  insert.bind(1, name).bind(2, at).bind(3, new_id());
  try {
    insert.step("creating tenant " + in_quotes(name));
    Tenant tenant{insert.text(0), std::string(name), at};
    insert.run("creating tenant " + in_quotes(name));
    return tenant;
  } catch (const ConstraintError& error) {
    if (error.unique()) {
      throw Conflict("a tenant named " + in_quotes(name) + " exists already; choose another name");
    }
    throw;
  }
}

std::optional<Tenant> SqliteStore::find_tenant_locked(std::string_view column_sql,
                                                      std::string_view value) {
  auto select = statement(std::string("SELECT ") + kTenantColumns + " FROM tenants WHERE " +
                          std::string(column_sql) + " = ?1");
  select.bind(1, value);
  if (!select.step("looking up a tenant")) return std::nullopt;
  return read_tenant(select);
}

std::optional<Tenant> SqliteStore::find_tenant(std::string_view id) {
  std::lock_guard lock(mutex_);
  return find_tenant_locked("id", id);
}

std::optional<Tenant> SqliteStore::find_tenant_by_name(std::string_view name) {
  std::lock_guard lock(mutex_);
  return find_tenant_locked("name", name);
}

std::vector<Tenant> SqliteStore::list_tenants() {
  std::lock_guard lock(mutex_);
  auto select = statement(std::string("SELECT ") + kTenantColumns + " FROM tenants ORDER BY name");
  std::vector<Tenant> tenants;
  while (select.step("listing tenants")) tenants.push_back(read_tenant(select));
  return tenants;
}

// ---- tokens

Token SqliteStore::insert_token(const TokenDraft& draft) {
  std::lock_guard lock(mutex_);
  auto insert = statement(
      "INSERT INTO tokens (id, tenant_id, role, secret_hash, created_at, expires_at, revoked_at, "
      "created_by, subject) VALUES (?8, ?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7) RETURNING id");
  insert.bind(8, new_id())
      .bind_or_null(1, draft.tenant_id)
      .bind(2, draft.role)
      .bind(3, draft.secret_hash)
      .bind(4, draft.created_at)
      .bind(5, draft.expires_at)
      .bind(6, draft.created_by)
      .bind(7, draft.subject);
  try {
    insert.step("storing a token");
    Token token{insert.text(0),    draft.tenant_id,  draft.role,
                draft.secret_hash, draft.created_at, draft.expires_at,
                std::nullopt,      draft.created_by, draft.subject};
    insert.run("storing a token");
    return token;
  } catch (const ConstraintError& error) {
    if (error.foreign_key()) {
      throw NotFound("cannot create a token for tenant " + in_quotes(draft.tenant_id) +
                     ": no such tenant; create the tenant first");
    }
    if (error.unique()) {
      throw Conflict("a token with this secret hash exists already; generate a new secret");
    }
    throw;
  }
}

std::optional<Token> SqliteStore::find_token_locked(const std::string& sql,
                                                    std::string_view value) {
  auto select = statement(sql);
  select.bind(1, value);
  if (!select.step("looking up a token")) return std::nullopt;
  return read_token(select);
}

std::optional<Token> SqliteStore::find_token(std::string_view id) {
  std::lock_guard lock(mutex_);
  return find_token_locked(std::string("SELECT ") + kTokenColumns + " FROM tokens WHERE id = ?1",
                           id);
}

std::optional<Token> SqliteStore::find_token_by_hash(std::string_view secret_hash) {
  std::lock_guard lock(mutex_);
  return find_token_locked(
      std::string("SELECT ") + kTokenColumns + " FROM tokens WHERE secret_hash = ?1", secret_hash);
}

Token SqliteStore::revoke_token(std::string_view id, int64_t at) {
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  auto update =
      statement("UPDATE tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1 RETURNING " +
                std::string(kTokenColumns));
  update.bind(1, id).bind(2, at);
  if (!update.step("revoking token " + in_quotes(id))) {
    throw NotFound("cannot revoke token " + in_quotes(id) + ": no such token");
  }
  Token token = read_token(update);
  update.run("revoking token " + in_quotes(id));
  transaction.commit();
  return token;
}

void SqliteStore::note_token_used(std::string_view id, int64_t at) {
  std::lock_guard lock(mutex_);
  auto update = statement("UPDATE tokens SET last_used_at = ?2 WHERE id = ?1");
  update.bind(1, id).bind(2, at);
  update.run("noting that token " + in_quotes(id) + " was used");
}

int64_t SqliteStore::count_tokens() {
  std::lock_guard lock(mutex_);
  auto count = statement("SELECT count(*) FROM tokens");
  count.step("counting tokens");
  return count.integer(0);
}

std::vector<Token> SqliteStore::list_tokens(std::string_view tenant_id) {
  std::lock_guard lock(mutex_);
  auto select =
      statement(std::string("SELECT ") + kTokenColumns +
                " FROM tokens WHERE tenant_id IS NOT DISTINCT FROM ?1 ORDER BY created_at, id");
  select.bind_or_null(1, tenant_id);
  std::vector<Token> tokens;
  while (select.step("listing the tokens of tenant " + in_quotes(tenant_id)))
    tokens.push_back(read_token(select));
  return tokens;
}

std::vector<std::string> SqliteStore::list_kv_namespaces(std::string_view tenant_id) {
  std::lock_guard lock(mutex_);
  auto select = statement(
      "SELECT namespace FROM kv_usage WHERE tenant_id = ?1 AND keys > 0 ORDER BY namespace");
  select.bind(1, tenant_id);
  std::vector<std::string> namespaces;
  while (select.step("listing the kv namespaces of tenant " + in_quotes(tenant_id)))
    namespaces.push_back(select.text(0));
  return namespaces;
}

Store::TenantDataErased SqliteStore::erase_tenant_data(std::string_view tenant_id) {
  std::string what = "erasing the data of tenant " + in_quotes(tenant_id);
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  auto erase = [&](const char* sql) {
    auto statement_ = statement(sql);
    statement_.bind(1, tenant_id);
    int64_t count = 0;
    while (statement_.step(what)) ++count;
    return count;
  };
  TenantDataErased erased;
  erased.stored_runs = erase("DELETE FROM stored_runs WHERE tenant_id = ?1 RETURNING 1");
  erased.webhook_deliveries =
      erase("DELETE FROM webhook_deliveries WHERE tenant_id = ?1 RETURNING 1");
  erased.jobs = erase("DELETE FROM jobs WHERE tenant_id = ?1 RETURNING 1");
  erased.kv_entries = erase("DELETE FROM kv_entries WHERE tenant_id = ?1 RETURNING 1");
  erase("DELETE FROM kv_usage WHERE tenant_id = ?1 RETURNING 1");
  erased.events = erase("DELETE FROM events WHERE tenant_id = ?1 RETURNING 1");
  erase("UPDATE event_counters SET kept_bytes = 0 WHERE tenant_id = ?1 RETURNING 1");
  transaction.commit();
  return erased;
}

// ---- usage

void SqliteStore::add_usage(const std::vector<UsageRow>& rows) {
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  for (const UsageRow& row : rows) {
    // A tenant gone since its runs were counted is skipped rather than failing every row with it.
    auto upsert = statement(
        "INSERT INTO usage (tenant_id, script, hour, invocations, failures, cpu_us, fuel, jobs) "
        "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?1) "
        "ON CONFLICT (tenant_id, hour, script) DO UPDATE "
        "SET invocations = invocations + excluded.invocations, "
        "failures = failures + excluded.failures, cpu_us = cpu_us + excluded.cpu_us, "
        "fuel = fuel + excluded.fuel, jobs = jobs + excluded.jobs");
    upsert.bind(1, row.tenant_id)
        .bind(2, row.script)
        .bind(3, row.hour)
        .bind(4, row.counts.invocations)
        .bind(5, row.counts.failures)
        .bind(6, row.counts.cpu_us)
        .bind(7, row.counts.fuel)
        .bind(8, row.counts.jobs);
    upsert.run("adding to the usage of script " + in_quotes(row.script));
  }
  transaction.commit();
}

std::vector<UsageRow> SqliteStore::read_usage(std::string_view tenant_id, int64_t from_hour,
                                              int64_t until) {
  std::lock_guard lock(mutex_);
  auto select = statement(
      "SELECT script, hour, invocations, failures, cpu_us, fuel, jobs FROM usage "
      "WHERE tenant_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour, script");
  select.bind(1, tenant_id).bind(2, from_hour).bind(3, until);
  std::vector<UsageRow> rows;
  while (select.step("reading the usage of tenant " + in_quotes(tenant_id))) {
    UsageRow row;
    row.tenant_id = std::string(tenant_id);
    row.script = select.text(0);
    row.hour = select.integer(1);
    row.counts = {.invocations = select.integer(2),
                  .failures = select.integer(3),
                  .cpu_us = select.integer(4),
                  .fuel = select.integer(5),
                  .jobs = select.integer(6)};
    rows.push_back(std::move(row));
  }
  return rows;
}

int64_t SqliteStore::prune_usage(int64_t before) {
  std::lock_guard lock(mutex_);
  auto prune = statement("DELETE FROM usage WHERE hour < ?1 RETURNING 1");
  prune.bind(1, before);
  int64_t count = 0;
  while (prune.step("pruning old usage")) ++count;
  return count;
}

// ---- script versions

std::optional<ScriptVersion> SqliteStore::find_version_locked(std::string_view tenant_id,
                                                              std::string_view script,
                                                              int64_t version) {
  auto select = statement(std::string("SELECT ") + kVersionColumns +
                          " FROM script_versions WHERE tenant_id = ?1 AND script = ?2 AND "
                          "version = ?3");
  select.bind(1, tenant_id).bind(2, script).bind(3, version);
  if (!select.step("looking up a script version")) return std::nullopt;
  return read_version(select, file_);
}

Published SqliteStore::insert_version(std::string_view tenant_id, std::string_view script,
                                      std::string_view sha256, std::string_view source,
                                      std::string_view manifest, std::string_view published_by,
                                      int64_t at) {
  std::lock_guard lock(mutex_);
  // The write lock is held from the first read, so no other connection can take the same number
  // or publish the same source in between.
  Transaction transaction(*this);
  {
    auto existing = statement(std::string("SELECT ") + kVersionColumns +
                              " FROM script_versions WHERE tenant_id = ?1 AND script = ?2 AND "
                              "sha256 = ?3");
    existing.bind(1, tenant_id).bind(2, script).bind(3, sha256);
    if (existing.step("looking for an identical version")) {
      return Published{read_version(existing, file_), false};
    }
  }
  int64_t number = 0;
  {
    auto next = statement(
        "SELECT coalesce(max(version), 0) + 1 FROM script_versions WHERE tenant_id = ?1 AND "
        "script = ?2");
    next.bind(1, tenant_id).bind(2, script);
    next.step("numbering a new version");
    number = next.integer(0);
  }
  auto insert = statement(
      "INSERT INTO script_versions (tenant_id, script, version, sha256, source, manifest, state, "
      "published_by, published_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8)");
  insert.bind(1, tenant_id)
      .bind(2, script)
      .bind(3, number)
      .bind(4, sha256)
      .bind(5, source)
      .bind(6, manifest)
      .bind(7, published_by)
      .bind(8, at);
  try {
    insert.run("publishing version " + std::to_string(number) + " of script " + in_quotes(script));
  } catch (const ConstraintError& error) {
    if (error.foreign_key()) {
      throw NotFound("cannot publish script " + in_quotes(script) + " for tenant " +
                     in_quotes(tenant_id) + ": no such tenant");
    }
    throw;
  }
  transaction.commit();
  return Published{
      ScriptVersion{std::string(tenant_id), std::string(script), number, std::string(sha256),
                    std::string(source), std::string(manifest), VersionState::pending,
                    std::string(published_by), at, std::nullopt, std::nullopt, std::nullopt},
      true};
}

std::optional<ScriptVersion> SqliteStore::find_version(std::string_view tenant_id,
                                                       std::string_view script, int64_t version) {
  std::lock_guard lock(mutex_);
  return find_version_locked(tenant_id, script, version);
}

std::vector<ScriptSummary> SqliteStore::list_scripts(std::string_view tenant_id) {
  std::lock_guard lock(mutex_);
  auto select = statement(
      "SELECT script, max(version) FROM script_versions WHERE tenant_id = ?1 GROUP BY script "
      "ORDER BY script");
  select.bind(1, tenant_id);
  std::vector<ScriptSummary> scripts;
  while (select.step("listing scripts")) {
    scripts.push_back(ScriptSummary{select.text(0), select.integer(1)});
  }
  return scripts;
}

VersionUsage SqliteStore::version_usage(std::string_view tenant_id) {
  std::lock_guard lock(mutex_);
  auto select = statement(
      "SELECT count(*), coalesce(sum(length(CAST(source AS BLOB))), 0) FROM script_versions "
      "WHERE tenant_id = ?1");
  select.bind(1, tenant_id);
  VersionUsage usage;
  if (select.step("measuring a tenant's versions")) {
    usage.versions = select.integer(0);
    usage.source_bytes = select.integer(1);
  }
  return usage;
}

std::vector<ScriptVersion> SqliteStore::list_versions(std::string_view tenant_id,
                                                      std::string_view script) {
  std::lock_guard lock(mutex_);
  auto select = statement(std::string("SELECT ") + kVersionColumns +
                          " FROM script_versions WHERE tenant_id = ?1 AND script = ?2 ORDER BY "
                          "version");
  select.bind(1, tenant_id).bind(2, script);
  std::vector<ScriptVersion> versions;
  while (select.step("listing versions")) versions.push_back(read_version(select, file_));
  return versions;
}

ScriptVersion SqliteStore::record_signer(std::string_view tenant_id, std::string_view script,
                                         int64_t version, std::string_view public_key) {
  std::lock_guard lock(mutex_);
  auto update = statement(
      "UPDATE script_versions SET signed_by = coalesce(signed_by, ?4) WHERE tenant_id = ?1 AND "
      "script = ?2 AND version = ?3 RETURNING " +
      std::string(kVersionColumns));
  update.bind(1, tenant_id).bind(2, script).bind(3, version).bind(4, public_key);
  std::string what = "recording the signer of version " + std::to_string(version) + " of script " +
                     in_quotes(script);
  if (!update.step(what)) {
    throw NotFound("cannot record the signer of version " + std::to_string(version) +
                   " of script " + in_quotes(script) + " for tenant " + in_quotes(tenant_id) +
                   ": no such version");
  }
  ScriptVersion updated = read_version(update, file_);
  update.run(what);
  return updated;
}

ScriptVersion SqliteStore::set_version_state(std::string_view tenant_id, std::string_view script,
                                             int64_t version, VersionState state,
                                             std::string_view by, int64_t at) {
  std::lock_guard lock(mutex_);
  // The first approval is the one on record: approving again after a deprecation does not
  // rewrite who let the version out.
  auto update = statement(
      "UPDATE script_versions SET state = ?4, "
      "approved_by = CASE WHEN ?4 = 'approved' AND approved_by IS NULL THEN ?5 ELSE approved_by "
      "END, "
      "approved_at = CASE WHEN ?4 = 'approved' AND approved_at IS NULL THEN ?6 ELSE approved_at "
      "END "
      "WHERE tenant_id = ?1 AND script = ?2 AND version = ?3 RETURNING " +
      std::string(kVersionColumns));
  update.bind(1, tenant_id)
      .bind(2, script)
      .bind(3, version)
      .bind(4, to_string(state))
      .bind(5, by)
      .bind(6, at);
  std::string what = "setting version " + std::to_string(version) + " of script " +
                     in_quotes(script) + " to " + std::string(to_string(state));
  if (!update.step(what)) {
    throw NotFound("cannot set the state of version " + std::to_string(version) + " of script " +
                   in_quotes(script) + " for tenant " + in_quotes(tenant_id) + ": no such version");
  }
  ScriptVersion updated = read_version(update, file_);
  update.run(what);
  return updated;
}

// ---- aliases

Alias SqliteStore::put_alias(std::string_view tenant_id, std::string_view script,
                             std::string_view name, int64_t version, std::string_view by,
                             int64_t at, bool auto_rollback, std::optional<Canary> canary) {
  std::lock_guard lock(mutex_);
  if (canary && !find_version(tenant_id, script, canary->version)) {
    throw NotFound("cannot give alias " + in_quotes(name) + " the canary version " +
                   std::to_string(canary->version) + " of script " + in_quotes(script) +
                   " for tenant " + in_quotes(tenant_id) + ": no such version");
  }
  auto upsert = statement(
      "INSERT INTO aliases (tenant_id, script, name, version, updated_by, updated_at, "
      "auto_rollback, rolled_back_from, canary_version, canary_weight) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9) ON CONFLICT (tenant_id, script, name) DO "
      "UPDATE SET version = excluded.version, updated_by = excluded.updated_by, "
      "updated_at = excluded.updated_at, auto_rollback = excluded.auto_rollback, "
      "rolled_back_from = NULL, canary_version = excluded.canary_version, "
      "canary_weight = excluded.canary_weight");
  upsert.bind(1, tenant_id)
      .bind(2, script)
      .bind(3, name)
      .bind(4, version)
      .bind(5, by)
      .bind(6, at)
      .bind(7, int64_t{auto_rollback ? 1 : 0})
      .bind(8, canary ? std::optional<int64_t>(canary->version) : std::nullopt)
      .bind(9, canary ? canary->weight : int64_t{0});
  try {
    upsert.run("pointing alias " + in_quotes(name) + " of script " + in_quotes(script) +
               " at version " + std::to_string(version));
  } catch (const ConstraintError& error) {
    if (error.foreign_key()) {
      throw NotFound("cannot point alias " + in_quotes(name) + " at version " +
                     std::to_string(version) + " of script " + in_quotes(script) + " for tenant " +
                     in_quotes(tenant_id) + ": no such version");
    }
    throw;
  }
  return Alias{std::string(tenant_id),
               std::string(script),
               std::string(name),
               version,
               std::string(by),
               at,
               auto_rollback,
               0,
               canary ? canary->version : 0,
               canary ? canary->weight : 0};
}

std::optional<Alias> SqliteStore::roll_back_alias(std::string_view tenant_id,
                                                  std::string_view script, std::string_view name,
                                                  int64_t from_version, int64_t to_version,
                                                  int64_t at) {
  std::lock_guard lock(mutex_);
  auto update = statement(
      "UPDATE aliases SET version = ?5, rolled_back_from = ?4, updated_by = 'system', "
      "updated_at = ?6 WHERE tenant_id = ?1 AND script = ?2 AND name = ?3 AND version = ?4 AND "
      "auto_rollback = 1 RETURNING " +
      std::string(kAliasColumns));
  update.bind(1, tenant_id)
      .bind(2, script)
      .bind(3, name)
      .bind(4, from_version)
      .bind(5, to_version)
      .bind(6, at);
  std::string what = "rolling alias " + in_quotes(name) + " of script " + in_quotes(script) +
                     " back from version " + std::to_string(from_version) + " to " +
                     std::to_string(to_version);
  if (!update.step(what)) return std::nullopt;
  Alias moved = read_alias(update);
  update.run(what);
  return moved;
}

std::optional<Alias> SqliteStore::find_alias(std::string_view tenant_id, std::string_view script,
                                             std::string_view name) {
  std::lock_guard lock(mutex_);
  auto select = statement(std::string("SELECT ") + kAliasColumns +
                          " FROM aliases WHERE tenant_id = ?1 AND script = ?2 AND name = ?3");
  select.bind(1, tenant_id).bind(2, script).bind(3, name);
  if (!select.step("looking up an alias")) return std::nullopt;
  return read_alias(select);
}

std::vector<Alias> SqliteStore::list_aliases(std::string_view tenant_id, std::string_view script) {
  std::lock_guard lock(mutex_);
  auto select = statement(std::string("SELECT ") + kAliasColumns +
                          " FROM aliases WHERE tenant_id = ?1 AND script = ?2 ORDER BY name");
  select.bind(1, tenant_id).bind(2, script);
  std::vector<Alias> aliases;
  while (select.step("listing aliases")) aliases.push_back(read_alias(select));
  return aliases;
}

std::vector<AliasChange> SqliteStore::alias_history(std::string_view tenant_id,
                                                    std::string_view script, std::string_view name,
                                                    int64_t limit) {
  if (limit <= 0) {
    throw std::invalid_argument("store: reading an alias's history needs a positive limit, not " +
                                std::to_string(limit));
  }
  std::lock_guard lock(mutex_);
  auto select = statement(
      "SELECT seq, script, name, version, previous_version, auto_rollback, rolled_back_from, "
      "canary_version, canary_weight, changed_by, changed_at FROM alias_history "
      "WHERE tenant_id = ?1 AND script = ?2 AND name = ?3 ORDER BY seq DESC LIMIT ?4");
  select.bind(1, tenant_id).bind(2, script).bind(3, name).bind(4, limit);
  std::vector<AliasChange> changes;
  while (select.step("reading the history of alias " + in_quotes(name))) {
    changes.push_back({select.integer(0), select.text(1), select.text(2), select.integer(3),
                       select.optional_integer(4), select.integer(5) != 0,
                       select.optional_integer(6).value_or(0),
                       select.optional_integer(7).value_or(0), select.integer(8), select.text(9),
                       select.integer(10)});
  }
  return changes;
}

// ---- stored runs

void SqliteStore::insert_runs(const std::vector<StoredRun>& runs, int64_t keep,
                              int64_t tenant_keep) {
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  std::set<std::pair<std::string, std::string>> scripts;
  for (const StoredRun& run : runs) {
    std::string what = "storing run " + in_quotes(run.id) + " of script " + in_quotes(run.script);
    auto insert = statement(
        "INSERT INTO stored_runs (tenant_id, script, id, seq, version, time_ms, outcome, input, "
        "result) SELECT ?1, ?2, ?3, COALESCE(MAX(seq), 0) + 1, ?4, ?5, ?6, ?7, ?8 FROM stored_runs "
        "WHERE tenant_id = ?1 AND script = ?2 ON CONFLICT (tenant_id, script, id) DO NOTHING");
    insert.bind(1, run.tenant_id)
        .bind(2, run.script)
        .bind(3, run.id)
        .bind(4, run.version)
        .bind(5, run.time_ms)
        .bind(6, run.outcome)
        .bind_or_null(7, run.input.value_or(""))
        .bind(8, run.result);
    try {
      insert.run(what);
    } catch (const ConstraintError& error) {
      if (error.foreign_key()) {
        throw NotFound("cannot store run " + in_quotes(run.id) + " for tenant " +
                       in_quotes(run.tenant_id) + ": no such tenant");
      }
      throw;
    }
    scripts.emplace(run.tenant_id, run.script);
  }
  for (const auto& [tenant_id, script] : scripts) {
    auto prune = statement(
        "DELETE FROM stored_runs WHERE tenant_id = ?1 AND script = ?2 AND seq <= "
        "(SELECT MAX(seq) FROM stored_runs WHERE tenant_id = ?1 AND script = ?2) - ?3");
    prune.bind(1, tenant_id).bind(2, script).bind(3, std::max<int64_t>(keep, 0));
    prune.run("pruning the stored runs of script " + in_quotes(script));
  }
  std::set<std::string> tenants;
  for (const auto& [tenant_id, script] : scripts) tenants.insert(tenant_id);
  for (const auto& tenant_id : tenants) {
    std::string what = "pruning the stored runs of tenant " + in_quotes(tenant_id);
    int64_t kept = 0;
    {
      auto count = statement("SELECT count(*) FROM stored_runs WHERE tenant_id = ?1");
      count.bind(1, tenant_id);
      count.step(what);
      kept = count.integer(0);
    }
    if (kept <= tenant_keep) continue;
    // The tenant's oldest go, whichever scripts they belong to.
    auto prune = statement(
        "DELETE FROM stored_runs WHERE (tenant_id, script, id) IN (SELECT tenant_id, script, id "
        "FROM stored_runs WHERE tenant_id = "
        "?1 ORDER BY time_ms, seq LIMIT ?2)");
    prune.bind(1, tenant_id).bind(2, kept - std::max<int64_t>(tenant_keep, 0));
    prune.run(what);
  }
  transaction.commit();
}

std::optional<StoredRun> SqliteStore::find_run(std::string_view tenant_id, std::string_view script,
                                               std::string_view id) {
  std::lock_guard lock(mutex_);
  auto select = statement(std::string("SELECT ") + kRunColumns +
                          " FROM stored_runs WHERE tenant_id = ?1 AND script = ?2 AND id = ?3");
  select.bind(1, tenant_id).bind(2, script).bind(3, id);
  if (!select.step("looking up a stored run")) return std::nullopt;
  return read_run(select);
}

std::vector<StoredRun> SqliteStore::list_runs(std::string_view tenant_id, std::string_view script,
                                              int64_t limit) {
  if (limit <= 0) {
    throw std::invalid_argument("store: listing runs needs a positive limit, not " +
                                std::to_string(limit));
  }
  std::lock_guard lock(mutex_);
  auto select = statement(std::string("SELECT ") + kRunColumns +
                          " FROM stored_runs WHERE tenant_id = ?1 AND script = ?2 ORDER BY seq "
                          "DESC LIMIT ?3");
  select.bind(1, tenant_id).bind(2, script).bind(3, limit);
  std::vector<StoredRun> runs;
  while (select.step("listing stored runs")) runs.push_back(read_run(select));
  return runs;
}

// ---- audit

std::optional<AuditEntry> SqliteStore::last_audit_entry_locked() {
  auto select = statement(std::string("SELECT ") + kAuditColumns +
                          " FROM audit_entries ORDER BY seq DESC LIMIT 1");
  if (!select.step("reading the last audit entry")) return std::nullopt;
  return read_audit_entry(select);
}

std::optional<AuditEntry> SqliteStore::last_audit_entry() {
  std::lock_guard lock(mutex_);
  return last_audit_entry_locked();
}

AuditEntry SqliteStore::append_audit(const AuditDraft& draft, std::string_view genesis_hash,
                                     const AuditHasher& hasher) {
  if (draft.decision != "allow" && draft.decision != "deny") {
    throw std::invalid_argument(
        "store: an audit entry's decision must be \"allow\" or \"deny\", not " +
        in_quotes(draft.decision));
  }
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  auto last = last_audit_entry_locked();
  AuditEntry entry{last ? last->seq + 1 : 1,
                   draft.time_ms,
                   draft.principal,
                   draft.tenant,
                   draft.action,
                   draft.target,
                   draft.decision,
                   draft.reason,
                   last ? last->hash : std::string(genesis_hash),
                   {}};
  entry.hash = hasher(entry);
  auto insert = statement(
      "INSERT INTO audit_entries (seq, time_ms, principal, tenant, action, target, decision, "
      "reason, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  insert.bind(1, entry.seq)
      .bind(2, entry.time_ms)
      .bind(3, entry.principal)
      .bind(4, entry.tenant)
      .bind(5, entry.action)
      .bind(6, entry.target)
      .bind(7, entry.decision)
      .bind(8, entry.reason)
      .bind(9, entry.prev_hash)
      .bind(10, entry.hash);
  insert.run("appending audit entry " + std::to_string(entry.seq) + " (" + entry.action + ")");
  transaction.commit();
  return entry;
}

std::vector<AuditEntry> SqliteStore::read_audit(const AuditFilter& filter) {
  if (filter.limit <= 0) {
    throw std::invalid_argument("store: an audit query needs a positive limit, not " +
                                std::to_string(filter.limit));
  }
  // Only the shape of the query varies with the filter (32 shapes at most, each prepared once); the
  // values are bound.
  std::string sql = std::string("SELECT ") + kAuditColumns + " FROM audit_entries WHERE true";
  if (filter.tenant) sql += " AND tenant = :tenant";
  if (filter.action) sql += " AND action = :action";
  if (filter.since_ms) sql += " AND time_ms >= :since";
  if (filter.until_ms) sql += " AND time_ms < :until";
  if (filter.after_seq) sql += " AND seq > :after";
  sql += " ORDER BY seq LIMIT :limit";

  std::lock_guard lock(mutex_);
  auto select = statement(sql);
  if (filter.tenant) select.bind(":tenant", std::string_view(*filter.tenant));
  if (filter.action) select.bind(":action", std::string_view(*filter.action));
  if (filter.since_ms) select.bind(":since", *filter.since_ms);
  if (filter.until_ms) select.bind(":until", *filter.until_ms);
  if (filter.after_seq) select.bind(":after", *filter.after_seq);
  select.bind(":limit", filter.limit);
  std::vector<AuditEntry> entries;
  while (select.step("reading the audit trail")) entries.push_back(read_audit_entry(select));
  return entries;
}

// ---- kv

namespace {

// The least string above every string that starts with `prefix` (byte order), or none if every
// byte is 0xff. With it a prefix becomes a key range the primary key index can serve.
std::optional<std::string> prefix_successor(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (prefix.empty()) return std::nullopt;
  prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

std::string kv_place(std::string_view tenant_id, std::string_view ns, std::string_view key) {
  return "kv key " + in_quotes(key) + (ns.empty() ? "" : " of script " + in_quotes(ns)) +
         " for tenant " + in_quotes(tenant_id);
}

}  // namespace

std::optional<KvValue> SqliteStore::find_kv(std::string_view tenant_id, std::string_view ns,
                                            std::string_view key) {
  std::lock_guard lock(mutex_);
  auto select = statement(
      "SELECT sealed, value_bytes FROM kv_entries WHERE tenant_id = ?1 AND namespace = ?2 AND "
      "key = ?3");
  select.bind(1, tenant_id).bind(2, ns).bind(3, key);
  if (!select.step("reading " + kv_place(tenant_id, ns, key))) return std::nullopt;
  return KvValue{select.blob(0), select.integer(1)};
}

KvUsage SqliteStore::kv_usage_locked(std::string_view tenant_id, std::string_view ns) {
  auto select =
      statement("SELECT keys, bytes FROM kv_usage WHERE tenant_id = ?1 AND namespace = ?2");
  select.bind(1, tenant_id).bind(2, ns);
  if (!select.step("reading kv usage")) return KvUsage{};
  return KvUsage{select.integer(0), select.integer(1)};
}

KvUsage SqliteStore::kv_usage(std::string_view tenant_id, std::string_view ns) {
  std::lock_guard lock(mutex_);
  return kv_usage_locked(tenant_id, ns);
}

KvPutOutcome SqliteStore::put_kv(std::string_view tenant_id, std::string_view ns,
                                 std::string_view key, const KvValue& value, const KvQuota& quota) {
  if (value.value_bytes < 0) {
    throw std::invalid_argument("store: a kv value's size cannot be negative (" +
                                std::to_string(value.value_bytes) + ")");
  }
  std::string place = kv_place(tenant_id, ns, key);
  std::lock_guard lock(mutex_);
  // The write lock is held from the usage read to the write, so no other put can slip in between.
  Transaction transaction(*this);
  KvPutOutcome outcome;
  outcome.before = kv_usage_locked(tenant_id, ns);
  outcome.after = outcome.before;
  const auto key_bytes = static_cast<int64_t>(key.size());
  {
    auto existing = statement(
        "SELECT value_bytes FROM kv_entries WHERE tenant_id = ?1 AND namespace = ?2 AND key = ?3");
    existing.bind(1, tenant_id).bind(2, ns).bind(3, key);
    if (existing.step("reading " + place)) {
      outcome.after.bytes += value.value_bytes - existing.integer(0);
    } else {
      outcome.after.keys += 1;
      outcome.after.bytes += key_bytes + value.value_bytes;
    }
  }
  bool too_many_keys =
      outcome.after.keys > outcome.before.keys && outcome.after.keys > quota.max_keys;
  bool too_many_bytes =
      outcome.after.bytes > outcome.before.bytes && outcome.after.bytes > quota.max_total_bytes;
  if (too_many_keys || too_many_bytes) return outcome;  // rolled back; nothing was written

  auto upsert = statement(
      "INSERT INTO kv_entries (tenant_id, namespace, key, sealed, value_bytes) "
      "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET "
      "sealed = excluded.sealed, value_bytes = excluded.value_bytes");
  upsert.bind(1, tenant_id)
      .bind(2, ns)
      .bind(3, key)
      .bind_blob(4, value.sealed)
      .bind(5, value.value_bytes);
  try {
    upsert.run("writing " + place);
  } catch (const ConstraintError& error) {
    if (error.foreign_key()) {
      throw NotFound("cannot write " + place + ": no such tenant");
    }
    throw;
  }
  transaction.commit();
  outcome.stored = true;
  return outcome;
}

bool SqliteStore::delete_kv(std::string_view tenant_id, std::string_view ns, std::string_view key) {
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  auto remove = statement(
      "DELETE FROM kv_entries WHERE tenant_id = ?1 AND namespace = ?2 AND key = ?3 RETURNING 1");
  remove.bind(1, tenant_id).bind(2, ns).bind(3, key);
  std::string what = "deleting " + kv_place(tenant_id, ns, key);
  bool existed = remove.step(what);
  remove.run(what);
  transaction.commit();
  return existed;
}

std::vector<std::string> SqliteStore::list_kv_keys(std::string_view tenant_id, std::string_view ns,
                                                   const KvListing& listing) {
  if (listing.limit <= 0) {
    throw std::invalid_argument("store: a kv listing needs a positive limit, not " +
                                std::to_string(listing.limit));
  }
  auto upper = prefix_successor(listing.prefix);
  std::string sql =
      "SELECT key FROM kv_entries WHERE tenant_id = :tenant AND namespace = :ns AND "
      "key >= :prefix";
  if (upper) sql += " AND key < :upper";
  if (listing.after) sql += " AND key > :after";
  sql += " ORDER BY key LIMIT :limit";

  std::lock_guard lock(mutex_);
  auto select = statement(sql);
  select.bind(":tenant", tenant_id)
      .bind(":ns", ns)
      .bind(":prefix", std::string_view(listing.prefix));
  if (upper) select.bind(":upper", std::string_view(*upper));
  if (listing.after) select.bind(":after", std::string_view(*listing.after));
  select.bind(":limit", listing.limit);
  std::vector<std::string> keys;
  while (select.step("listing kv keys")) keys.push_back(select.text(0));
  return keys;
}

// ---- secrets

void SqliteStore::put_secret(std::string_view tenant_id, std::string_view name,
                             std::string_view sealed, int64_t at) {
  std::lock_guard lock(mutex_);
  auto upsert = statement(
      "INSERT INTO secrets (tenant_id, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4) "
      "ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed, "
      "updated_at = excluded.updated_at");
  upsert.bind(1, tenant_id).bind(2, name).bind_blob(3, sealed).bind(4, at);
  try {
    upsert.run("storing secret " + in_quotes(name) + " for tenant " + in_quotes(tenant_id));
  } catch (const ConstraintError& error) {
    if (error.foreign_key()) {
      throw NotFound("cannot store secret " + in_quotes(name) + " for tenant " +
                     in_quotes(tenant_id) + ": no such tenant");
    }
    throw;
  }
}

std::optional<std::string> SqliteStore::find_secret(std::string_view tenant_id,
                                                    std::string_view name) {
  std::lock_guard lock(mutex_);
  auto select = statement("SELECT sealed FROM secrets WHERE tenant_id = ?1 AND name = ?2");
  select.bind(1, tenant_id).bind(2, name);
  if (!select.step("reading secret " + in_quotes(name))) return std::nullopt;
  return select.blob(0);
}

std::vector<SecretInfo> SqliteStore::list_secrets(std::string_view tenant_id) {
  std::lock_guard lock(mutex_);
  auto select =
      statement("SELECT name, updated_at FROM secrets WHERE tenant_id = ?1 ORDER BY name");
  select.bind(1, tenant_id);
  std::vector<SecretInfo> secrets;
  while (select.step("listing secrets")) {
    secrets.push_back(SecretInfo{select.text(0), select.integer(1)});
  }
  return secrets;
}

bool SqliteStore::delete_secret(std::string_view tenant_id, std::string_view name) {
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  auto remove = statement("DELETE FROM secrets WHERE tenant_id = ?1 AND name = ?2 RETURNING 1");
  remove.bind(1, tenant_id).bind(2, name);
  std::string what = "deleting secret " + in_quotes(name) + " of tenant " + in_quotes(tenant_id);
  bool existed = remove.step(what);
  remove.run(what);
  transaction.commit();
  return existed;
}

// ---- events

Event SqliteStore::append_event(std::string_view tenant_id, std::string_view topic,
                                std::string_view payload, int64_t at, int64_t keep,
                                int64_t keep_bytes) {
  std::string what =
      "appending an event on topic " + in_quotes(topic) + " for tenant " + in_quotes(tenant_id);
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  int64_t seq = 0;
  int64_t kept_bytes = 0;
  try {
    auto next = statement(
        "INSERT INTO event_counters (tenant_id, last_seq, kept_bytes) VALUES (?1, 1, ?2) ON "
        "CONFLICT (tenant_id) DO UPDATE SET last_seq = event_counters.last_seq + 1, "
        "kept_bytes = event_counters.kept_bytes + ?2 "
        "RETURNING last_seq, kept_bytes");
    next.bind(1, tenant_id).bind(2, static_cast<int64_t>(payload.size()));
    next.step(what);
    seq = next.integer(0);
    kept_bytes = next.integer(1);
    next.run(what);
  } catch (const ConstraintError& error) {
    if (error.foreign_key()) {
      throw NotFound("cannot append an event for tenant " + in_quotes(tenant_id) +
                     ": no such tenant");
    }
    throw;
  }
  auto insert = statement(
      "INSERT INTO events (tenant_id, seq, topic, payload, created_at, bytes) VALUES (?1, ?2, ?3, "
      "?4, ?5, ?6)");
  insert.bind(1, tenant_id).bind(2, seq).bind(3, topic).bind(4, payload).bind(5, at);
  insert.bind(6, static_cast<int64_t>(payload.size()));
  insert.run(what);
  // The oldest go: those past the newest `keep` (numbers are given one by one, so they are the
  // ones up to seq - keep), then more, oldest first, while the kept bytes are over keep_bytes.
  int64_t dropped_bytes = 0;
  auto drop = [&](std::string_view sql, int64_t bound) {
    auto prune = statement(std::string(sql));
    prune.bind(1, tenant_id).bind(2, bound);
    int64_t dropped = 0;
    while (prune.step(what)) dropped += prune.integer(0);
    dropped_bytes += dropped;
    return dropped;
  };
  if (keep > 0 && seq > keep)
    drop("DELETE FROM events WHERE tenant_id = ?1 AND seq <= ?2 RETURNING bytes", seq - keep);
  if (int64_t excess = kept_bytes - dropped_bytes - keep_bytes; excess > 0) {
    int64_t through = 0;
    {
      auto oldest = statement("SELECT seq, bytes FROM events WHERE tenant_id = ?1 ORDER BY seq");
      oldest.bind(1, tenant_id);
      for (int64_t covered = 0; covered < excess && oldest.step(what);) {
        through = oldest.integer(0);
        covered += oldest.integer(1);
      }
    }
    drop("DELETE FROM events WHERE tenant_id = ?1 AND seq <= ?2 RETURNING bytes", through);
  }
  if (dropped_bytes > 0) {
    auto update =
        statement("UPDATE event_counters SET kept_bytes = kept_bytes - ?2 WHERE tenant_id = ?1");
    update.bind(1, tenant_id).bind(2, dropped_bytes);
    update.run(what);
  }
  transaction.commit();
  return Event{std::string(tenant_id), seq, std::string(topic), std::string(payload), at};
}

std::vector<Event> SqliteStore::read_events(std::string_view tenant_id, int64_t after_seq,
                                            int64_t limit) {
  if (limit <= 0) {
    throw std::invalid_argument("store: reading events needs a positive limit, not " +
                                std::to_string(limit));
  }
  std::lock_guard lock(mutex_);
  auto select = statement(
      "SELECT tenant_id, seq, topic, payload, created_at FROM events WHERE tenant_id = ?1 AND "
      "seq > ?2 ORDER BY seq LIMIT ?3");
  select.bind(1, tenant_id).bind(2, after_seq).bind(3, limit);
  std::vector<Event> events;
  while (select.step("reading events of tenant " + in_quotes(tenant_id))) {
    events.push_back(Event{select.text(0), select.integer(1), select.text(2), select.text(3),
                           select.integer(4)});
  }
  return events;
}

// ---- policy versions

PolicyVersion SqliteStore::insert_policy_version(std::string_view document,
                                                 std::string_view created_by, int64_t at) {
  std::lock_guard lock(mutex_);
  // Numbered under the write lock, so concurrent inserts (from other nodes too) take turns.
  Transaction transaction(*this);
  int64_t number = 0;
  {
    auto next = statement("SELECT coalesce(max(version), 0) + 1 FROM policy_versions");
    next.step("numbering a new policy version");
    number = next.integer(0);
  }
  auto insert = statement(
      "INSERT INTO policy_versions (version, document, created_by, created_at) VALUES (?1, ?2, "
      "?3, ?4)");
  insert.bind(1, number).bind(2, document).bind(3, created_by).bind(4, at);
  insert.run("storing policy version " + std::to_string(number));
  transaction.commit();
  return PolicyVersion{number, std::string(document), std::string(created_by), at};
}

std::optional<PolicyVersion> SqliteStore::find_policy_version_locked(
    const std::string& sql, std::optional<int64_t> version) {
  auto select = statement(sql);
  if (version) select.bind(1, *version);
  if (!select.step("reading a policy version")) return std::nullopt;
  return PolicyVersion{select.integer(0), select.text(1), select.text(2), select.integer(3)};
}

std::optional<PolicyVersion> SqliteStore::find_policy_version(int64_t version) {
  std::lock_guard lock(mutex_);
  return find_policy_version_locked(
      "SELECT version, document, created_by, created_at FROM policy_versions WHERE version = ?1",
      version);
}

std::optional<PolicyVersion> SqliteStore::latest_policy_version() {
  std::lock_guard lock(mutex_);
  return find_policy_version_locked(
      "SELECT version, document, created_by, created_at FROM policy_versions ORDER BY version "
      "DESC LIMIT 1",
      std::nullopt);
}

std::vector<PolicyVersionSummary> SqliteStore::list_policy_versions() {
  std::lock_guard lock(mutex_);
  auto select = statement(
      "SELECT version, created_by, created_at FROM policy_versions ORDER BY version DESC");
  std::vector<PolicyVersionSummary> versions;
  while (select.step("listing policy versions")) {
    versions.push_back(PolicyVersionSummary{select.integer(0), select.text(1), select.integer(2)});
  }
  return versions;
}

// ---- jobs

namespace {

constexpr const char* kJobColumns =
    "id, tenant_id, script, version, alias, idempotency_key, request_sha256, input, callback_url, "
    "state, attempts, max_attempts, webhook_attempts, webhook_backoff_ms, cancel_requested, "
    "outcome, status, result, error, created_by, created_at, updated_at, run_after, started_at, "
    "finished_at, result_writes, keep_input, webhook_input, lease_holder, lease_expires_at, "
    "lease_token";

constexpr const char* kDeliveryColumns =
    "id, tenant_id, job_id, url, state, attempts, max_attempts, backoff_ms, next_attempt_at, "
    "last_status, last_error, created_at, updated_at, delivered_at";

Job read_job(const auto& row, const std::filesystem::path& file) {
  Job job;
  job.id = row.text(0);
  job.tenant_id = row.text(1);
  job.script = row.text(2);
  job.version = row.integer(3);
  job.alias = row.text(4);
  job.idempotency_key = row.text(5);
  job.request_sha256 = row.text(6);
  job.input = row.text(7);
  job.callback_url = row.text(8);
  auto state = parse_job_state(row.text(9));
  if (!state) {
    // The schema's CHECK constraint rules this out, so the file was edited by hand.
    throw StoreError("store " + file.string() + ": job " + job.id + " has the unknown state " +
                     in_quotes(row.text(9)) + "; repair the row or restore a backup");
  }
  job.state = *state;
  job.attempts = row.integer(10);
  job.max_attempts = row.integer(11);
  job.webhook_attempts = row.integer(12);
  job.webhook_backoff_ms = row.integer(13);
  job.cancel_requested = row.integer(14) != 0;
  job.outcome = row.text(15);
  job.status = row.optional_integer(16).value_or(0);
  job.result = row.text(17);
  job.error = row.text(18);
  job.created_by = row.text(19);
  job.created_at = row.integer(20);
  job.updated_at = row.integer(21);
  job.run_after = row.integer(22);
  job.started_at = row.optional_integer(23);
  job.finished_at = row.optional_integer(24);
  job.result_writes = row.integer(25);
  job.keep_input = row.integer(26) != 0;
  job.webhook_input = row.integer(27) != 0;
  job.lease_holder = row.text(28);
  job.lease_expires_at = row.optional_integer(29).value_or(0);
  job.lease_token = row.integer(30);
  return job;
}

Delivery read_delivery(const auto& row, const std::filesystem::path& file) {
  Delivery delivery;
  delivery.id = row.text(0);
  delivery.tenant_id = row.text(1);
  delivery.job_id = row.text(2);
  delivery.url = row.text(3);
  auto state = parse_delivery_state(row.text(4));
  if (!state) {
    throw StoreError("store " + file.string() + ": webhook delivery " + delivery.id +
                     " has the unknown state " + in_quotes(row.text(4)) +
                     "; repair the row or restore a backup");
  }
  delivery.state = *state;
  delivery.attempts = row.integer(5);
  delivery.max_attempts = row.integer(6);
  delivery.backoff_ms = row.integer(7);
  delivery.next_attempt_at = row.integer(8);
  delivery.last_status = row.optional_integer(9);
  delivery.last_error = row.text(10);
  delivery.created_at = row.integer(11);
  delivery.updated_at = row.integer(12);
  delivery.delivered_at = row.optional_integer(13);
  return delivery;
}

}  // namespace

std::optional<Job> SqliteStore::find_job_locked(std::string_view id) {
  auto select = statement(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?1");
  select.bind(1, id);
  if (!select.step("reading job " + std::string(id))) return std::nullopt;
  return read_job(select, file_);
}

void SqliteStore::create_delivery_locked(std::string_view job_id, int64_t at) {
  // Nothing with UNIQUE (job_id): a job is announced once, whatever path made it final.
  auto insert = statement(
      "INSERT INTO webhook_deliveries (id, tenant_id, job_id, url, state, attempts, "
      "max_attempts, backoff_ms, next_attempt_at, created_at, updated_at) "
      "SELECT ?3, tenant_id, id, callback_url, 'pending', 0, "
      "webhook_attempts, webhook_backoff_ms, ?2, ?2, ?2 FROM jobs "
      "WHERE id = ?1 AND callback_url IS NOT NULL AND state IN ('succeeded', 'failed', "
      "'cancelled') ON CONFLICT (job_id) DO NOTHING");
  insert.bind(1, job_id).bind(2, at).bind(3, new_id());
  insert.run("creating the webhook delivery of job " + std::string(job_id));
}

JobSubmission SqliteStore::submit_job(const JobDraft& draft, int64_t max_unfinished,
                                      int64_t max_kept) {
  std::string what = "submitting a job for tenant " + in_quotes(draft.tenant_id);
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  JobSubmission submission;
  {
    auto existing = statement(std::string("SELECT ") + kJobColumns +
                              " FROM jobs WHERE tenant_id = ?1 AND idempotency_key = ?2");
    existing.bind(1, draft.tenant_id).bind(2, draft.idempotency_key);
    if (existing.step(what)) {
      submission.kind = JobSubmission::Kind::existing;
      submission.job = read_job(existing, file_);
      return submission;
    }
  }
  {
    auto count = statement(
        "SELECT count(*) FROM jobs WHERE tenant_id = ?1 AND state IN ('queued', 'running')");
    count.bind(1, draft.tenant_id);
    count.step(what);
    submission.unfinished = count.integer(0);
  }
  if (submission.unfinished >= max_unfinished) {
    submission.kind = JobSubmission::Kind::over_quota;
    return submission;
  }
  if (max_kept < std::numeric_limits<int64_t>::max()) {
    auto count = statement("SELECT count(*) FROM jobs WHERE tenant_id = ?1");
    count.bind(1, draft.tenant_id);
    count.step(what);
    submission.kept = count.integer(0);
    if (submission.kept >= max_kept) {
      submission.kind = JobSubmission::Kind::over_kept;
      return submission;
    }
  }
  auto insert = statement(
      "INSERT INTO jobs (id, tenant_id, script, version, alias, idempotency_key, request_sha256, "
      "input, callback_url, state, attempts, max_attempts, webhook_attempts, webhook_backoff_ms, "
      "created_by, created_at, updated_at, run_after, keep_input, webhook_input) VALUES "
      "(?16, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', 0, ?9, ?10, ?11, ?12, ?13, ?13, ?13, ?14, "
      "?15) RETURNING id");
  insert.bind(16, new_id())
      .bind(1, draft.tenant_id)
      .bind(2, draft.script)
      .bind(3, draft.version)
      .bind_or_null(4, draft.alias)
      .bind(5, draft.idempotency_key)
      .bind(6, draft.request_sha256)
      .bind(7, draft.input)
      .bind_or_null(8, draft.callback_url)
      .bind(9, draft.max_attempts)
      .bind(10, draft.webhook_attempts)
      .bind(11, draft.webhook_backoff_ms)
      .bind(12, draft.created_by)
      .bind(13, draft.created_at)
      .bind(14, int64_t{draft.keep_input ? 1 : 0})
      .bind(15, int64_t{draft.webhook_input ? 1 : 0});
  std::string id;
  try {
    insert.step(what);
    id = insert.text(0);
    insert.run(what);
  } catch (const ConstraintError& error) {
    if (error.foreign_key()) {
      throw NotFound("cannot submit a job for tenant " + in_quotes(draft.tenant_id) +
                     ": no such tenant");
    }
    throw;
  }
  submission.kind = JobSubmission::Kind::created;
  submission.job = *find_job_locked(id);
  transaction.commit();
  return submission;
}

std::optional<Job> SqliteStore::find_job(std::string_view tenant_id, std::string_view id) {
  std::lock_guard lock(mutex_);
  auto job = find_job_locked(id);
  if (!job || job->tenant_id != tenant_id) return std::nullopt;
  return job;
}

std::vector<Job> SqliteStore::list_jobs(std::string_view tenant_id, const JobListing& listing) {
  if (listing.limit <= 0) {
    throw std::invalid_argument("store: listing jobs needs a positive limit, not " +
                                std::to_string(listing.limit));
  }
  std::lock_guard lock(mutex_);
  // One statement for every filter: an unset filter binds NULL and matches everything. (The casts
  // tell PostgreSQL what type a parameter seen first in IS NULL has.)
  auto select = statement(std::string("SELECT ") + kJobColumns +
                          " FROM jobs WHERE tenant_id = :tenant AND (CAST(:script AS TEXT) IS NULL "
                          "OR script = :script) AND "
                          "(CAST(:state AS TEXT) IS NULL OR state = :state) AND (CAST(:before AS "
                          "TEXT) IS NULL OR (created_at, id) < (SELECT "
                          "created_at, id FROM jobs WHERE id = :before AND tenant_id = :tenant)) "
                          "ORDER BY created_at DESC, id DESC LIMIT :limit");
  select.bind(":tenant", tenant_id);
  if (!listing.script.empty()) select.bind(":script", std::string_view(listing.script));
  if (listing.state) select.bind(":state", to_string(*listing.state));
  if (listing.before_id) select.bind(":before", std::string_view(*listing.before_id));
  select.bind(":limit", listing.limit);
  std::vector<Job> jobs;
  while (select.step("listing jobs of tenant " + in_quotes(tenant_id)))
    jobs.push_back(read_job(select, file_));
  return jobs;
}

std::pair<int64_t, int64_t> SqliteStore::hand_back_jobs_locked(int64_t now, bool every_running) {
  // :all = 1 is the recovery at start-up (every running job); else only lapsed leases, a job
  // without one (left by a corrald from before leases) counting as lapsed.
  constexpr const char* kHandedBack =
      "state = 'running' AND (:all = 1 OR lease_expires_at IS NULL OR lease_expires_at < :now)";
  // Why, in the job's error: a stop of this corrald, or a node that stopped renewing its lease.
  constexpr const char* kLastAttempt =
      "CASE WHEN :all = 1 THEN 'corrald stopped while the job''s last allowed attempt was "
      "running' ELSE 'node ' || coalesce(lease_holder, '(unknown)') || ' stopped renewing its "
      "lease on the job''s last allowed attempt (attempt ' || attempts || '); it counts as a "
      "crashed attempt' END";
  constexpr const char* kRequeued =
      "CASE WHEN :all = 1 THEN 'corrald stopped while attempt ' || attempts || ' was running; "
      "it counts as a crashed attempt' ELSE 'node ' || coalesce(lease_holder, '(unknown)') || "
      "' stopped renewing its lease on attempt ' || attempts || '; it counts as a crashed "
      "attempt and the job was handed to another runner' END";
  std::vector<std::string> failed;
  {
    auto exhausted = statement(
        std::string("UPDATE jobs SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled' "
                    "ELSE 'failed' END, outcome = CASE WHEN cancel_requested = 1 THEN NULL ELSE "
                    "'crashed' END, error = ") +
        kLastAttempt +
        ", finished_at = :now, updated_at = :now, result_writes = result_writes + 1, "
        "lease_expires_at = NULL WHERE " +
        kHandedBack + " AND (attempts >= max_attempts OR cancel_requested = 1) RETURNING id");
    exhausted.bind(":all", int64_t{every_running ? 1 : 0}).bind(":now", now);
    while (exhausted.step("failing jobs interrupted on their last attempt"))
      failed.push_back(exhausted.text(0));
  }
  for (const auto& id : failed) create_delivery_locked(id, now);
  int64_t requeued = 0;
  {
    // A lapsed job is due from when its lease lapsed, so that it keeps its place among the
    // queued jobs that fell due since.
    auto requeue = statement(
        std::string("UPDATE jobs SET state = 'queued', run_after = CASE WHEN :all = 1 THEN :now "
                    "ELSE coalesce(lease_expires_at, :now) END, updated_at = :now, error = ") +
        kRequeued + ", lease_holder = NULL, lease_expires_at = NULL WHERE " + kHandedBack +
        " RETURNING id");
    requeue.bind(":all", int64_t{every_running ? 1 : 0}).bind(":now", now);
    while (requeue.step("requeueing jobs whose runner stopped")) ++requeued;
  }
  return {requeued, static_cast<int64_t>(failed.size())};
}

std::optional<Job> SqliteStore::claim_job(int64_t now, std::string_view node, int64_t lease_ms) {
  if (node.empty() || lease_ms <= 0) {
    throw std::invalid_argument("store: claiming a job needs a node and a positive lease, not " +
                                in_quotes(node) + " for " + std::to_string(lease_ms) + " ms");
  }
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  hand_back_jobs_locked(now, false);
  std::string id;
  {
    auto next = statement(
        "SELECT id FROM jobs WHERE state = 'queued' AND run_after <= ?1 "
        "ORDER BY run_after, created_at LIMIT 1");
    next.bind(1, now);
    if (next.step("finding a queued job")) id = next.text(0);
  }
  if (id.empty()) {
    transaction.commit();  // what was handed back stays handed back
    return std::nullopt;
  }
  auto claim = statement(
      "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?2, "
      "updated_at = ?2, lease_holder = ?3, lease_expires_at = ?2 + ?4, "
      "lease_token = lease_token + 1 WHERE id = ?1 AND state = 'queued'");
  claim.bind(1, id).bind(2, now).bind(3, node).bind(4, lease_ms);
  claim.run("marking job " + id + " running");
  auto job = find_job_locked(id);
  transaction.commit();
  return job;
}

bool SqliteStore::renew_job_lease(std::string_view id, int64_t lease_token, int64_t until) {
  std::string what = "renewing the lease of job " + std::string(id);
  std::lock_guard lock(mutex_);
  auto update = statement(
      "UPDATE jobs SET lease_expires_at = ?3 WHERE id = ?1 AND state = 'running' AND "
      "lease_token = ?2 RETURNING id");
  update.bind(1, id).bind(2, lease_token).bind(3, until);
  bool renewed = update.step(what);
  update.run(what);
  return renewed;
}

std::optional<Job> SqliteStore::finish_job(const JobFinish& finish) {
  if (!is_final(finish.state)) {
    throw std::invalid_argument("store: finishing job " + finish.id + " needs a final state, not " +
                                std::string(to_string(finish.state)));
  }
  std::string what = "writing the result of job " + finish.id;
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  // The state and lease token in the WHERE clause are the fence: a duplicate writer, or a node
  // whose lease was taken over, finds no row and changes nothing. A cancellation asked for
  // meanwhile wins over the result.
  auto update = statement(
      "UPDATE jobs SET "
      "state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE :state END, "
      "outcome = CASE WHEN cancel_requested = 1 THEN NULL ELSE :outcome END, "
      "status = CASE WHEN cancel_requested = 1 THEN NULL ELSE :status END, "
      "result = CASE WHEN cancel_requested = 1 THEN NULL ELSE :result END, "
      "error = CASE WHEN cancel_requested = 1 THEN 'cancelled while running; the run''s result "
      "was discarded' ELSE :error END, "
      "finished_at = :at, updated_at = :at, result_writes = result_writes + 1, "
      "lease_expires_at = NULL "
      "WHERE id = :id AND state = 'running' AND lease_token = :token RETURNING id");
  update.bind(":state", to_string(finish.state))
      .bind(":outcome", std::string_view(finish.outcome))
      .bind(":status", finish.status)
      .bind(":result", std::string_view(finish.result))
      .bind(":error", std::string_view(finish.error))
      .bind(":at", finish.at)
      .bind(":id", std::string_view(finish.id))
      .bind(":token", finish.lease_token);
  bool changed = update.step(what);
  update.run(what);
  if (!changed) return std::nullopt;
  create_delivery_locked(finish.id, finish.at);
  auto job = find_job_locked(finish.id);
  transaction.commit();
  return job;
}

std::optional<Job> SqliteStore::requeue_job(std::string_view id, int64_t lease_token,
                                            int64_t run_after, bool count_attempt,
                                            std::string_view error, int64_t at) {
  std::string what = "requeueing job " + std::string(id);
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  auto update = statement(
      "UPDATE jobs SET "
      "state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, "
      "attempts = CASE WHEN :count = 1 THEN attempts ELSE attempts - 1 END, "
      "run_after = :run_after, error = :error, updated_at = :at, "
      "finished_at = CASE WHEN cancel_requested = 1 THEN :at ELSE NULL END, "
      "result_writes = result_writes + cancel_requested, "
      "lease_holder = CASE WHEN cancel_requested = 1 THEN lease_holder ELSE NULL END, "
      "lease_expires_at = NULL "
      "WHERE id = :id AND state = 'running' AND lease_token = :token RETURNING id");
  update.bind(":count", int64_t{count_attempt ? 1 : 0})
      .bind(":run_after", run_after)
      .bind(":error", error)
      .bind(":at", at)
      .bind(":id", id)
      .bind(":token", lease_token);
  bool changed = update.step(what);
  update.run(what);
  if (!changed) return std::nullopt;
  create_delivery_locked(id, at);
  auto job = find_job_locked(id);
  transaction.commit();
  return job;
}

CancelOutcome SqliteStore::cancel_job(std::string_view tenant_id, std::string_view id, int64_t at,
                                      std::optional<Job>* job) {
  std::string what = "cancelling job " + std::string(id);
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  auto found = find_job_locked(id);
  if (!found || found->tenant_id != tenant_id) return CancelOutcome::not_found;
  CancelOutcome outcome = CancelOutcome::already_final;
  if (found->state == JobState::queued) {
    auto update = statement(
        "UPDATE jobs SET state = 'cancelled', finished_at = ?2, updated_at = ?2, "
        "result_writes = result_writes + 1 WHERE id = ?1 AND state = 'queued'");
    update.bind(1, id).bind(2, at);
    update.run(what);
    create_delivery_locked(id, at);
    outcome = CancelOutcome::cancelled;
  } else if (found->state == JobState::running) {
    auto update = statement(
        "UPDATE jobs SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1 AND state = "
        "'running'");
    update.bind(1, id).bind(2, at);
    update.run(what);
    outcome = CancelOutcome::marked;
  }
  if (job) *job = find_job_locked(id);
  transaction.commit();
  return outcome;
}

std::pair<int64_t, int64_t> SqliteStore::recover_jobs(int64_t at) {
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  // Alone on the store (the data directory's lock means no other corrald has the file open), every
  // holder is dead: every running job, leases or not. Shared, only lapsed leases (store.h).
  auto recovered = hand_back_jobs_locked(at, !shared());
  transaction.commit();
  return recovered;
}

std::vector<std::pair<JobState, int64_t>> SqliteStore::count_jobs() {
  std::lock_guard lock(mutex_);
  auto select = statement("SELECT state, count(*) FROM jobs GROUP BY state");
  std::vector<std::pair<JobState, int64_t>> counts;
  while (select.step("counting jobs")) {
    if (auto state = parse_job_state(select.text(0)))
      counts.emplace_back(*state, select.integer(1));
  }
  return counts;
}

int64_t SqliteStore::prune_jobs(int64_t finished_before, int64_t limit) {
  if (limit <= 0) {
    throw std::invalid_argument("store: pruning jobs needs a positive limit, not " +
                                std::to_string(limit));
  }
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  std::vector<std::string> ids;
  {
    auto old = statement(
        "SELECT j.id FROM jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id "
        "WHERE j.state IN ('succeeded', 'failed', 'cancelled') AND j.finished_at < ?1 "
        "AND (d.id IS NULL OR (d.state <> 'pending' AND d.updated_at < ?1)) "
        "ORDER BY j.finished_at, j.id LIMIT ?2");
    old.bind(1, finished_before).bind(2, limit);
    while (old.step("finding jobs to prune")) ids.push_back(old.text(0));
  }
  for (const auto& id : ids) {
    std::string what = "pruning job " + id;
    auto delivery = statement("DELETE FROM webhook_deliveries WHERE job_id = ?1");
    delivery.bind(1, std::string_view(id));
    delivery.run(what);
    auto job = statement("DELETE FROM jobs WHERE id = ?1");
    job.bind(1, std::string_view(id));
    job.run(what);
  }
  transaction.commit();
  return static_cast<int64_t>(ids.size());
}

std::optional<Delivery> SqliteStore::claim_delivery(int64_t now) {
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  std::string id;
  {
    auto next = statement(
        "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND in_flight = 0 AND "
        "next_attempt_at <= ?1 ORDER BY next_attempt_at, created_at LIMIT 1");
    next.bind(1, now);
    if (!next.step("finding a due webhook delivery")) return std::nullopt;
    id = next.text(0);
  }
  auto claim = statement(
      "UPDATE webhook_deliveries SET in_flight = 1, attempts = attempts + 1, updated_at = ?2 "
      "WHERE id = ?1 RETURNING " +
      std::string(kDeliveryColumns));
  claim.bind(1, id).bind(2, now);
  std::string what = "claiming webhook delivery " + id;
  claim.step(what);
  Delivery delivery = read_delivery(claim, file_);
  claim.run(what);
  transaction.commit();
  return delivery;
}

bool SqliteStore::record_delivery_attempt(const DeliveryAttempt& attempt) {
  std::string what = "recording a try of webhook delivery " + attempt.id;
  std::lock_guard lock(mutex_);
  auto update = statement(
      "UPDATE webhook_deliveries SET state = :state, in_flight = 0, last_status = :status, "
      "last_error = :error, next_attempt_at = :next, updated_at = :at, "
      "delivered_at = CASE WHEN :state = 'delivered' THEN :at ELSE NULL END "
      "WHERE id = :id AND state = 'pending' AND in_flight = 1 AND attempts = :attempt "
      "RETURNING id");
  update.bind(":state", to_string(attempt.state))
      .bind(":status", attempt.status)
      .bind(":error", std::string_view(attempt.error))
      .bind(":next", attempt.next_attempt_at)
      .bind(":at", attempt.at)
      .bind(":id", std::string_view(attempt.id))
      .bind(":attempt", attempt.attempt);
  bool changed = update.step(what);
  update.run(what);
  return changed;
}

bool SqliteStore::shared() const { return connection_->shared(); }

std::vector<std::string> SqliteStore::tokens_revoked_since(int64_t since) {
  std::lock_guard lock(mutex_);
  auto select = statement("SELECT id FROM tokens WHERE revoked_at >= ?1 ORDER BY revoked_at");
  select.bind(1, since);
  std::vector<std::string> ids;
  while (select.step("listing tokens revoked lately")) ids.push_back(select.text(0));
  return ids;
}

int64_t SqliteStore::recover_deliveries(int64_t at) {
  std::lock_guard lock(mutex_);
  auto update = statement(
      "UPDATE webhook_deliveries SET in_flight = 0, next_attempt_at = ?1, updated_at = ?1, "
      "last_error = 'corrald stopped while try ' || attempts || ' was being sent' "
      "WHERE state = 'pending' AND in_flight = 1 AND updated_at < ?2 RETURNING id");
  update.bind(1, at).bind(2, shared() ? at - kAbandonedDeliveryMs : at + 1);
  int64_t recovered = 0;
  while (update.step("recovering webhook deliveries in flight")) ++recovered;
  return recovered;
}

std::vector<Delivery> SqliteStore::list_deliveries(std::string_view tenant_id,
                                                   std::optional<DeliveryState> state,
                                                   std::optional<std::string> before_id,
                                                   int64_t limit) {
  if (limit <= 0) {
    throw std::invalid_argument("store: listing webhook deliveries needs a positive limit, not " +
                                std::to_string(limit));
  }
  std::lock_guard lock(mutex_);
  auto select =
      statement(std::string("SELECT ") + kDeliveryColumns +
                " FROM webhook_deliveries WHERE tenant_id = :tenant AND (CAST(:state AS TEXT) IS "
                "NULL OR state = :state) "
                "AND (CAST(:before AS TEXT) IS NULL OR (created_at, id) < (SELECT created_at, id "
                "FROM webhook_deliveries "
                "WHERE id = :before AND tenant_id = :tenant)) ORDER BY created_at DESC, id DESC "
                "LIMIT :limit");
  select.bind(":tenant", tenant_id);
  if (state) select.bind(":state", to_string(*state));
  if (before_id) select.bind(":before", std::string_view(*before_id));
  select.bind(":limit", limit);
  std::vector<Delivery> deliveries;
  while (select.step("listing webhook deliveries of tenant " + in_quotes(tenant_id)))
    deliveries.push_back(read_delivery(select, file_));
  return deliveries;
}

int64_t SqliteStore::count_deliveries(DeliveryState state) {
  std::lock_guard lock(mutex_);
  auto select = statement("SELECT count(*) FROM webhook_deliveries WHERE state = ?1");
  select.bind(1, to_string(state));
  select.step("counting webhook deliveries");
  return select.integer(0);
}

void SqliteStore::put_webhook_secret(std::string_view tenant_id, std::string_view sealed,
                                     int64_t at) {
  std::lock_guard lock(mutex_);
  auto upsert = statement(
      "INSERT INTO webhook_secrets (tenant_id, sealed, updated_at) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (tenant_id) DO UPDATE SET sealed = excluded.sealed, "
      "updated_at = excluded.updated_at");
  upsert.bind(1, tenant_id).bind_blob(2, sealed).bind(3, at);
  try {
    upsert.run("storing the webhook secret of tenant " + in_quotes(tenant_id));
  } catch (const ConstraintError& error) {
    if (error.foreign_key()) {
      throw NotFound("cannot store the webhook secret of tenant " + in_quotes(tenant_id) +
                     ": no such tenant");
    }
    throw;
  }
}

std::optional<std::string> SqliteStore::find_webhook_secret(std::string_view tenant_id) {
  std::lock_guard lock(mutex_);
  auto select = statement("SELECT sealed FROM webhook_secrets WHERE tenant_id = ?1");
  select.bind(1, tenant_id);
  if (!select.step("reading the webhook secret of tenant " + in_quotes(tenant_id)))
    return std::nullopt;
  return select.blob(0);
}

void SqliteStore::atomically(const std::function<void()>& work) {
  std::lock_guard lock(mutex_);
  Transaction transaction(*this);
  work();
  transaction.commit();
}

}  // namespace corral::store
