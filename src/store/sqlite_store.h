// The store's methods, written once in SQL that SQLite and PostgreSQL both take, over one
// connection (sql_connection.h) that a mutex serialises: the embedded SQLite file
// (sqlite_connection.h), or a PostgreSQL database (postgres_sql.h). Several stores (in one process
// or several) may share a database: each transaction takes the database's write lock up front.
// (The name is older than the second backend.)
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "store/store.h"

namespace corral::store {

class SqlConnection;

class SqliteStore : public Store {
 public:
  // Opens or creates the database file and migrates it; throws StoreError if the file cannot be
  // opened, is not a database, or was written by a newer corrald.
  explicit SqliteStore(const std::filesystem::path& file);
  // On a connection already open and migrated.
  explicit SqliteStore(std::unique_ptr<SqlConnection> connection);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  const std::filesystem::path& file() const { return file_; }

  Tenant create_tenant(std::string_view name, int64_t at) override;
  std::optional<Tenant> find_tenant(std::string_view id) override;
  std::optional<Tenant> find_tenant_by_name(std::string_view name) override;
  std::vector<Tenant> list_tenants() override;

  Token insert_token(const TokenDraft& draft) override;
  std::optional<Token> find_token(std::string_view id) override;
  std::optional<Token> find_token_by_hash(std::string_view secret_hash) override;
  Token revoke_token(std::string_view id, int64_t at) override;
  int64_t count_tokens() override;
  void note_token_used(std::string_view id, int64_t at) override;

  Published insert_version(std::string_view tenant_id, std::string_view script,
                           std::string_view sha256, std::string_view source,
                           std::string_view manifest, std::string_view published_by,
                           int64_t at) override;
  std::optional<ScriptVersion> find_version(std::string_view tenant_id, std::string_view script,
                                            int64_t version) override;
  std::vector<ScriptSummary> list_scripts(std::string_view tenant_id) override;
  VersionUsage version_usage(std::string_view tenant_id) override;
  std::vector<ScriptVersion> list_versions(std::string_view tenant_id,
                                           std::string_view script) override;
  ScriptVersion record_signer(std::string_view tenant_id, std::string_view script, int64_t version,
                              std::string_view public_key) override;
  ScriptVersion set_version_state(std::string_view tenant_id, std::string_view script,
                                  int64_t version, VersionState state, std::string_view by,
                                  int64_t at) override;

  Alias put_alias(std::string_view tenant_id, std::string_view script, std::string_view name,
                  int64_t version, std::string_view by, int64_t at, bool auto_rollback = false,
                  std::optional<Canary> canary = {}) override;
  std::optional<Alias> roll_back_alias(std::string_view tenant_id, std::string_view script,
                                       std::string_view name, int64_t from_version,
                                       int64_t to_version, int64_t at) override;
  std::optional<Alias> find_alias(std::string_view tenant_id, std::string_view script,
                                  std::string_view name) override;
  std::vector<Alias> list_aliases(std::string_view tenant_id, std::string_view script) override;
  std::vector<AliasChange> alias_history(std::string_view tenant_id, std::string_view script,
                                         std::string_view name, int64_t limit) override;

  void insert_runs(const std::vector<StoredRun>& runs, int64_t keep,
                   int64_t tenant_keep = std::numeric_limits<int64_t>::max()) override;
  std::optional<StoredRun> find_run(std::string_view tenant_id, std::string_view script,
                                    std::string_view id) override;
  std::vector<StoredRun> list_runs(std::string_view tenant_id, std::string_view script,
                                   int64_t limit) override;

  AuditEntry append_audit(const AuditDraft& draft, std::string_view genesis_hash,
                          const AuditHasher& hasher) override;
  std::vector<AuditEntry> read_audit(const AuditFilter& filter) override;
  std::optional<AuditEntry> last_audit_entry() override;

  std::optional<KvValue> find_kv(std::string_view tenant_id, std::string_view ns,
                                 std::string_view key) override;
  KvPutOutcome put_kv(std::string_view tenant_id, std::string_view ns, std::string_view key,
                      const KvValue& value, const KvQuota& quota) override;
  bool delete_kv(std::string_view tenant_id, std::string_view ns, std::string_view key) override;
  std::vector<std::string> list_kv_keys(std::string_view tenant_id, std::string_view ns,
                                        const KvListing& listing) override;
  KvUsage kv_usage(std::string_view tenant_id, std::string_view ns) override;

  void put_secret(std::string_view tenant_id, std::string_view name, std::string_view sealed,
                  int64_t at) override;
  std::optional<std::string> find_secret(std::string_view tenant_id,
                                         std::string_view name) override;
  std::vector<SecretInfo> list_secrets(std::string_view tenant_id) override;
  bool delete_secret(std::string_view tenant_id, std::string_view name) override;

  Event append_event(std::string_view tenant_id, std::string_view topic, std::string_view payload,
                     int64_t at, int64_t keep = std::numeric_limits<int64_t>::max(),
                     int64_t keep_bytes = std::numeric_limits<int64_t>::max()) override;
  std::vector<Event> read_events(std::string_view tenant_id, int64_t after_seq,
                                 int64_t limit) override;

  PolicyVersion insert_policy_version(std::string_view document, std::string_view created_by,
                                      int64_t at) override;
  std::optional<PolicyVersion> find_policy_version(int64_t version) override;
  std::optional<PolicyVersion> latest_policy_version() override;
  std::vector<PolicyVersionSummary> list_policy_versions() override;

  // ---- jobs
  JobSubmission submit_job(const JobDraft& draft, int64_t max_unfinished,
                           int64_t max_kept = std::numeric_limits<int64_t>::max()) override;
  std::optional<Job> find_job(std::string_view tenant_id, std::string_view id) override;
  std::vector<Job> list_jobs(std::string_view tenant_id, const JobListing& listing) override;
  std::optional<Job> claim_job(int64_t now, std::string_view node, int64_t lease_ms) override;
  bool renew_job_lease(std::string_view id, int64_t lease_token, int64_t until) override;
  std::optional<Job> finish_job(const JobFinish& finish) override;
  std::optional<Job> requeue_job(std::string_view id, int64_t lease_token, int64_t run_after,
                                 bool count_attempt, std::string_view error, int64_t at) override;
  CancelOutcome cancel_job(std::string_view tenant_id, std::string_view id, int64_t at,
                           std::optional<Job>* job) override;
  std::pair<int64_t, int64_t> recover_jobs(int64_t at) override;
  std::vector<std::pair<JobState, int64_t>> count_jobs() override;
  int64_t prune_jobs(int64_t finished_before, int64_t limit) override;
  std::optional<Delivery> claim_delivery(int64_t now) override;
  bool record_delivery_attempt(const DeliveryAttempt& attempt) override;
  int64_t recover_deliveries(int64_t at) override;
  bool shared() const override;
  std::vector<std::string> tokens_revoked_since(int64_t since) override;
  std::vector<Delivery> list_deliveries(std::string_view tenant_id,
                                        std::optional<DeliveryState> state,
                                        std::optional<std::string> before_id,
                                        int64_t limit) override;
  int64_t count_deliveries(DeliveryState state) override;
  void put_webhook_secret(std::string_view tenant_id, std::string_view sealed, int64_t at) override;
  std::optional<std::string> find_webhook_secret(std::string_view tenant_id) override;

  std::vector<Token> list_tokens(std::string_view tenant_id) override;
  std::vector<std::string> list_kv_namespaces(std::string_view tenant_id) override;
  TenantDataErased erase_tenant_data(std::string_view tenant_id) override;
  void add_usage(const std::vector<UsageRow>& rows) override;
  std::vector<UsageRow> read_usage(std::string_view tenant_id, int64_t from_hour,
                                   int64_t until) override;
  int64_t prune_usage(int64_t before) override;

  void atomically(const std::function<void()>& work) override;

 private:
  class Statement;
  class Transaction;

  // A prepared statement for this SQL text, compiled once and kept for the connection's life.
  Statement statement(const std::string& sql);

  std::optional<Tenant> find_tenant_locked(std::string_view column_sql, std::string_view value);
  std::optional<Token> find_token_locked(const std::string& sql, std::string_view value);
  std::optional<ScriptVersion> find_version_locked(std::string_view tenant_id,
                                                   std::string_view script, int64_t version);
  std::optional<AuditEntry> last_audit_entry_locked();
  KvUsage kv_usage_locked(std::string_view tenant_id, std::string_view ns);
  std::optional<PolicyVersion> find_policy_version_locked(const std::string& sql,
                                                          std::optional<int64_t> version);

  // ---- jobs
  std::optional<Job> find_job_locked(std::string_view id);
  // The delivery of a job that just became final, if it names a callback.
  void create_delivery_locked(std::string_view job_id, int64_t at);
  // Hands back the running jobs whose lease expired before `now` (all of them with
  // every_running): queued again, or final on their last attempt. Returns {requeued, failed}.
  std::pair<int64_t, int64_t> hand_back_jobs_locked(int64_t now, bool every_running);

  std::filesystem::path file_;  // what messages name: the file, or PostgreSQL's host/database
  // Recursive so that the methods called inside atomically() may take it again.
  std::recursive_mutex mutex_;
  int transaction_depth_ = 0;
  std::unique_ptr<SqlConnection> connection_;
};

}  // namespace corral::store
