// corral's durable state behind one interface. SQLite is the embedded implementation
// (sqlite_store.h); a PostgreSQL one is meant to follow without its callers changing, so nothing
// here mentions SQL, files or connections.
//
// Every method is atomic and thread-safe, and once it returns its change is durable. Times are
// unix milliseconds; ids are lowercase hex strings the store generates.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace corral::store {

// Anything the store cannot do; the message says what failed, on which database, and what to do.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The change would break a uniqueness rule (a tenant name that is taken, a token hash that exists).
class Conflict : public StoreError {
 public:
  using StoreError::StoreError;
};

// The change refers to something that does not exist (a tenant, a token, a script version).
class NotFound : public StoreError {
 public:
  using StoreError::StoreError;
};

// The disk under the store is full (SQLITE_FULL, ENOSPC) or failing (SQLITE_IOERR): nothing was
// changed, and the same request may succeed once the operator has freed space or fixed the disk.
// what() names the database and the cause, for corrald's log only: clients are told neither.
class StorageUnavailable : public StoreError {
 public:
  StorageUnavailable(const std::string& message, bool disk_full)
      : StoreError(message), disk_full_(disk_full) {}
  bool disk_full() const { return disk_full_; }

 private:
  bool disk_full_;
};

// The current time as unix milliseconds, for callers that stamp what they store.
int64_t now_ms();
// A new id for something stored: 128 random bits from the kernel as 32 lowercase hex digits.
// Made by corral rather than by the database, so that every backend's ids look alike; they need
// to be unique and unguessable, not secret.
std::string new_id();
// Unix milliseconds as RFC 3339 UTC with milliseconds: "2026-11-23T12:00:00.000Z".
std::string iso8601(int64_t ms);

struct Tenant {
  std::string id;
  std::string name;
  int64_t created_at = 0;
};

struct TokenDraft {
  std::string tenant_id;  // empty: the token is not bound to one tenant (an admin of all)
  std::string role;
  std::string secret_hash;  // stored as given; the store never sees the secret itself
  int64_t created_at = 0;
  std::optional<int64_t> expires_at;
  std::string created_by;  // a token id, or "bootstrap"
  // Who the token was issued to ("alice@example.com", "billing-service"); empty if not said. Two
  // tokens with the same subject are the same person, which is what self-approval rules compare.
  std::string subject = {};
};

struct Token {
  std::string id;  // public: safe to show, log and audit
  std::string tenant_id;
  std::string role;
  std::string secret_hash;
  int64_t created_at = 0;
  std::optional<int64_t> expires_at;
  std::optional<int64_t> revoked_at;
  std::string created_by;
  std::string subject = {};
  // When it last authenticated, to within a minute (note_token_used); empty: never since
  // schema 11.
  std::optional<int64_t> last_used_at = {};
};

enum class VersionState { pending, approved, deprecated, disabled };

std::string_view to_string(VersionState state);
std::optional<VersionState> parse_version_state(std::string_view text);

struct ScriptVersion {
  std::string tenant_id;
  std::string script;
  int64_t version = 0;  // 1, 2, 3… per tenant and script
  std::string sha256;   // of the source, hex
  std::string source;
  std::string manifest;  // JSON text, stored as given
  VersionState state = VersionState::pending;
  std::string published_by;
  int64_t published_at = 0;
  std::optional<std::string> approved_by;
  std::optional<int64_t> approved_at;
  // The public key (standard base64) that verified the version's signature when it was published;
  // nullopt for a version published without one.
  std::optional<std::string> signed_by = std::nullopt;
};

struct Published {
  ScriptVersion version;
  bool created = false;  // false: the same source was already published, and this is that version
};

struct ScriptSummary {
  std::string name;
  int64_t latest_version = 0;
};

struct Alias {
  std::string tenant_id;
  std::string script;
  std::string name;
  int64_t version = 0;
  std::string updated_by;
  int64_t updated_at = 0;
  // When its version is quarantined by its circuit breaker, the alias moves by itself to the
  // previous approved version (docs/api.md, "Aliases").
  bool auto_rollback = false;
  // The version an automatic rollback moved it away from; 0 when a person set it last.
  int64_t rolled_back_from = 0;
  // A canary split: canary_weight percent of invocations through the alias run canary_version
  // instead (docs/api.md, "Aliases"). 0 / 0 when there is none.
  int64_t canary_version = 0;
  int64_t canary_weight = 0;
};

// One change of an alias, as its history keeps it: what the alias pointed at after the change,
// and before it (nullopt when the change created the alias).
struct AliasChange {
  int64_t seq = 0;  // increasing in the order the changes were made
  std::string script;
  std::string name;
  int64_t version = 0;
  std::optional<int64_t> previous_version;
  bool auto_rollback = false;
  int64_t rolled_back_from = 0;  // set when the change was an automatic rollback
  int64_t canary_version = 0;
  int64_t canary_weight = 0;
  std::string changed_by;  // a token id, or "system"
  int64_t changed_at = 0;
};

// A second version taking a share of an alias's traffic.
struct Canary {
  int64_t version = 0;
  int64_t weight = 0;  // percent, 1 .. 99
};

// One stored run of a script (docs/operations.md, "Stored runs and replay").
struct StoredRun {
  std::string tenant_id;
  std::string script;
  std::string id;  // the invocation id
  int64_t version = 0;
  int64_t time_ms = 0;
  std::string outcome;
  std::optional<std::string> input;  // JSON text; only when the policy keeps inputs
  std::string result;                // JSON text: the body the invocation answered
};

// What a caller says happened; the store adds seq and the chain hashes.
struct AuditDraft {
  int64_t time_ms = 0;
  std::string principal;  // a token id (never the token), or "bootstrap" / "system"
  std::string tenant;     // empty when the action concerns no one tenant
  std::string action;
  std::string target;
  std::string decision;  // "allow" or "deny"
  std::string reason;
};

struct AuditEntry {
  int64_t seq = 0;  // 1, 2, 3… with no gaps
  int64_t time_ms = 0;
  std::string principal;
  std::string tenant;
  std::string action;
  std::string target;
  std::string decision;
  std::string reason;
  std::string prev_hash;  // hash of entry seq - 1, or the genesis hash for entry 1
  std::string hash;
};

// Unset fields do not filter. Entries come back in seq order.
struct AuditFilter {
  // (Each member has an initializer so that designated initializers may leave any of them out.)
  std::optional<std::string> tenant = std::nullopt;
  std::optional<std::string> action = std::nullopt;
  std::optional<int64_t> since_ms = std::nullopt;   // inclusive
  std::optional<int64_t> until_ms = std::nullopt;   // exclusive
  std::optional<int64_t> after_seq = std::nullopt;  // for paging: the last seq of the previous page
  int64_t limit = 100;                              // must be positive
};

// ---- broker state

// A kv value as stored: sealed by the broker (the store never sees the plaintext), with the
// plaintext's size so that usage can be counted without opening anything.
struct KvValue {
  std::string sealed;  // opaque bytes
  int64_t value_bytes = 0;
};

// What one (tenant, namespace) holds. Bytes count keys and plaintext values both: long keys take
// room too, and counting them keeps a tenant from storing data in key names for free.
struct KvUsage {
  int64_t keys = 0;
  int64_t bytes = 0;
};

// Ceilings a put may not push a namespace's usage over.
struct KvQuota {
  int64_t max_keys = 0;
  int64_t max_total_bytes = 0;
};

struct KvPutOutcome {
  bool stored = false;  // false: the put would have crossed the quota, and nothing changed
  KvUsage before;       // the namespace's usage before the put
  KvUsage after;        // its usage after the put (or what it would have been)
};

// Unset fields do not filter. Keys come back in byte order.
struct KvListing {
  std::string prefix = {};                          // only keys that start with it
  std::optional<std::string> after = std::nullopt;  // for paging: the last key of the previous page
  int64_t limit = 100;                              // must be positive
};

struct SecretInfo {
  std::string name;
  int64_t updated_at = 0;
};

// An event a script emitted, waiting in its tenant's outbox for a consumer.
struct Event {
  std::string tenant_id;
  int64_t seq = 0;  // 1, 2, 3… per tenant, never reused
  std::string topic;
  std::string payload;  // JSON text, stored as given
  int64_t created_at = 0;
};

struct PolicyVersion {
  int64_t version = 0;  // 1, 2, 3… with no gaps
  std::string document;
  std::string created_by;
  int64_t created_at = 0;
};

struct PolicyVersionSummary {
  int64_t version = 0;
  std::string created_by;
  int64_t created_at = 0;
};

// ---- jobs (src/jobs/jobs.h): durable asynchronous runs and their webhook deliveries

enum class JobState { queued, running, succeeded, failed, cancelled };
std::string_view to_string(JobState state);
std::optional<JobState> parse_job_state(std::string_view text);
inline bool is_final(JobState state) {
  return state == JobState::succeeded || state == JobState::failed || state == JobState::cancelled;
}

struct JobDraft {
  std::string tenant_id;
  std::string script;
  int64_t version = 0;
  std::string alias = {};  // as the submission named it; empty when it named a version
  std::string idempotency_key;
  std::string request_sha256;
  std::string input;              // JSON text
  std::string callback_url = {};  // empty: no webhook
  int64_t max_attempts = 1;       // runs ending crashed before the job fails
  int64_t webhook_attempts = 1;
  int64_t webhook_backoff_ms = 1000;
  std::string created_by;
  int64_t created_at = 0;
  // false: the input is dropped when the job ends (the policy's jobs.inputs decides).
  bool keep_input = true;
  // false: the webhook leaves the input out even while the job keeps it.
  bool webhook_input = true;
};

struct Job {
  std::string id;
  std::string tenant_id;
  std::string script;
  int64_t version = 0;
  std::string alias;
  std::string idempotency_key;
  std::string request_sha256;
  std::string input;
  std::string callback_url;
  JobState state = JobState::queued;
  int64_t attempts = 0;
  int64_t max_attempts = 1;
  int64_t webhook_attempts = 1;
  int64_t webhook_backoff_ms = 1000;
  bool cancel_requested = false;
  std::string outcome;  // of the run that decided the final state; empty before
  int64_t status = 0;   // the HTTP status POST …/invoke would have answered; 0 before
  std::string result;   // JSON text of that answer; empty before
  std::string error;    // why a job failed or was retried without a result, for people
  std::string created_by;
  int64_t created_at = 0;
  int64_t updated_at = 0;
  int64_t run_after = 0;
  std::optional<int64_t> started_at;
  std::optional<int64_t> finished_at;
  int64_t result_writes = 0;  // final writes; more than 1 would be a duplicate result
  bool keep_input = true;
  bool webhook_input = true;
  // The lease (see Store, "Leases"): the node that holds the job while it runs (kept once the job
  // ends by that node's attempt; empty while queued), until when, and the fencing token of the
  // latest claim. The token only grows: every claim of the job adds one.
  std::string lease_holder = {};
  int64_t lease_expires_at = 0;  // 0: none
  int64_t lease_token = 0;
  // The input was dropped when the job ended (input is then empty).
  bool input_dropped() const { return input.empty(); }
};

struct JobSubmission {
  // over_quota: max_unfinished queued or running; over_kept: max_kept jobs kept in all.
  enum class Kind { created, existing, over_quota, over_kept };
  Kind kind = Kind::created;
  Job job;                 // the new or the existing job; unset when over a quota
  int64_t unfinished = 0;  // the tenant's queued and running jobs before this submission
  int64_t kept = 0;        // the tenant's jobs in every state, when over_kept
};

// How a run the runner took ends. Finishing is fenced: it applies only while the job is still
// running under the lease token its claim returned, so a stale or duplicate writer changes nothing.
struct JobFinish {
  std::string id;
  int64_t lease_token = 0;
  JobState state = JobState::succeeded;  // succeeded or failed; cancelled if cancel_requested
  std::string outcome;
  int64_t status = 0;
  std::string result;
  std::string error = {};
  int64_t at = 0;
};

// Unset fields do not filter. Jobs come back newest first.
struct JobListing {
  std::string script = {};
  std::optional<JobState> state = std::nullopt;
  std::optional<std::string> before_id =
      std::nullopt;  // for paging: the last id of the previous page
  int64_t limit = 50;
};

enum class CancelOutcome { cancelled, marked, already_final, not_found };

enum class DeliveryState { pending, delivered, dead };
std::string_view to_string(DeliveryState state);
std::optional<DeliveryState> parse_delivery_state(std::string_view text);

struct Delivery {
  std::string id;
  std::string tenant_id;
  std::string job_id;
  std::string url;
  DeliveryState state = DeliveryState::pending;
  int64_t attempts = 0;
  int64_t max_attempts = 1;
  int64_t backoff_ms = 1000;
  int64_t next_attempt_at = 0;
  std::optional<int64_t> last_status;
  std::string last_error;
  int64_t created_at = 0;
  int64_t updated_at = 0;
  std::optional<int64_t> delivered_at;
};

// What one try of a delivery came to. retry: pending again from next_attempt_at.
struct DeliveryAttempt {
  std::string id;
  int64_t attempt = 0;
  DeliveryState state = DeliveryState::delivered;
  std::optional<int64_t> status;
  std::string error = {};
  int64_t next_attempt_at = 0;
  int64_t at = 0;
};

// Computes an entry's hash from every other field; see Store::append_audit.
using AuditHasher = std::function<std::string(const AuditEntry& unsealed)>;

struct VersionUsage {
  int64_t versions = 0;
  int64_t source_bytes = 0;
};

// Usage for billing (GET /v1/tenants/{tenant}/usage): what a tenant's scripts used, per script
// and hour. usage::UsageLedger adds to it in batches.
struct UsageCounts {
  int64_t invocations = 0;
  int64_t failures = 0;  // invocations whose outcome was not ok
  int64_t cpu_us = 0;
  int64_t fuel = 0;
  int64_t jobs = 0;  // jobs submitted
  UsageCounts& operator+=(const UsageCounts& more) {
    invocations += more.invocations;
    failures += more.failures;
    cpu_us += more.cpu_us;
    fuel += more.fuel;
    jobs += more.jobs;
    return *this;
  }
};

struct UsageRow {
  std::string tenant_id;
  std::string script;
  int64_t hour = 0;  // the hour's start, unix milliseconds (UTC)
  UsageCounts counts;
};

class Store {
 public:
  virtual ~Store() = default;

  // Tenants. Names are unique: a taken one throws Conflict.
  virtual Tenant create_tenant(std::string_view name, int64_t at) = 0;
  virtual std::optional<Tenant> find_tenant(std::string_view id) = 0;
  virtual std::optional<Tenant> find_tenant_by_name(std::string_view name) = 0;
  virtual std::vector<Tenant> list_tenants() = 0;  // by name

  // Tokens. An unknown tenant throws NotFound; a secret hash already stored throws Conflict.
  virtual Token insert_token(const TokenDraft& draft) = 0;
  virtual std::optional<Token> find_token(std::string_view id) = 0;
  virtual std::optional<Token> find_token_by_hash(std::string_view secret_hash) = 0;
  // Revoking twice keeps the first revocation time. An unknown id throws NotFound.
  virtual Token revoke_token(std::string_view id, int64_t at) = 0;
  virtual int64_t count_tokens() = 0;
  // Records that the token authenticated at `at`. An unknown id changes nothing.
  virtual void note_token_used(std::string_view id, int64_t at) = 0;

  // Script versions, immutable once published except for their state. Publishing gives the next
  // number for that tenant and script, unless a version with the same sha256 exists already: then
  // that version comes back with created = false. An unknown tenant throws NotFound.
  virtual Published insert_version(std::string_view tenant_id, std::string_view script,
                                   std::string_view sha256, std::string_view source,
                                   std::string_view manifest, std::string_view published_by,
                                   int64_t at) = 0;
  virtual std::optional<ScriptVersion> find_version(std::string_view tenant_id,
                                                    std::string_view script, int64_t version) = 0;
  virtual std::vector<ScriptSummary> list_scripts(std::string_view tenant_id) = 0;  // by name
  // What a tenant keeps of versions, all scripts together: for quotas.versions and version_bytes.
  virtual VersionUsage version_usage(std::string_view tenant_id) = 0;
  virtual std::vector<ScriptVersion> list_versions(std::string_view tenant_id,
                                                   std::string_view script) = 0;  // by number
  // Moving to approved records who approved and when; other states leave those as they were. The
  // store does not judge transitions (that is the registry's policy). Unknown versions throw
  // NotFound.
  // Records the key that verified a new version's signature (once: a version signed already keeps
  // its key). Unknown versions throw NotFound.
  virtual ScriptVersion record_signer(std::string_view tenant_id, std::string_view script,
                                      int64_t version, std::string_view public_key) = 0;
  virtual ScriptVersion set_version_state(std::string_view tenant_id, std::string_view script,
                                          int64_t version, VersionState state, std::string_view by,
                                          int64_t at) = 0;

  // Aliases: put creates or moves one. A version that does not exist throws NotFound.
  // Putting clears rolled_back_from.
  // Putting replaces the canary too (none when not given). A canary version that does not exist
  // throws NotFound as well.
  virtual Alias put_alias(std::string_view tenant_id, std::string_view script,
                          std::string_view name, int64_t version, std::string_view by, int64_t at,
                          bool auto_rollback = false, std::optional<Canary> canary = {}) = 0;
  // An automatic rollback, by "system": moves the alias from `from_version` to `to_version` and
  // records from_version in rolled_back_from, only if it still points at from_version and has
  // auto_rollback set (so that a reviewer's move in the meantime wins). nullopt when it did not.
  virtual std::optional<Alias> roll_back_alias(std::string_view tenant_id, std::string_view script,
                                               std::string_view name, int64_t from_version,
                                               int64_t to_version, int64_t at) = 0;
  virtual std::optional<Alias> find_alias(std::string_view tenant_id, std::string_view script,
                                          std::string_view name) = 0;
  virtual std::vector<Alias> list_aliases(std::string_view tenant_id,
                                          std::string_view script) = 0;  // by name
  // An alias's changes, newest first, at most `limit` (positive) of them; every put and every
  // automatic rollback is one, kept for as long as the alias exists.
  virtual std::vector<AliasChange> alias_history(std::string_view tenant_id,
                                                 std::string_view script, std::string_view name,
                                                 int64_t limit) = 0;

  // The audit trail. Appending reads the last entry and writes the next in one transaction, so
  // concurrent appends (from threads or from other nodes) still form one chain: the new entry gets
  // seq = last seq + 1 and prev_hash = the last entry's hash (`genesis_hash` for the first), and
  // `hasher` is called with every field but hash filled in. What the hash is, is the caller's
  // business (the audit library's); the store keeps it. A decision other than "allow" or "deny",
  // or a read with a limit below 1, is a caller's bug and throws std::invalid_argument.
  virtual AuditEntry append_audit(const AuditDraft& draft, std::string_view genesis_hash,
                                  const AuditHasher& hasher) = 0;
  virtual std::vector<AuditEntry> read_audit(const AuditFilter& filter) = 0;
  virtual std::optional<AuditEntry> last_audit_entry() = 0;

  // Kv: per tenant and namespace ("" for the tenant-wide scope, else a script's name), keys to
  // sealed values. Keys are stored in the clear (listing by prefix needs them) and compared
  // byte by byte. An unknown tenant throws NotFound on writes.
  virtual std::optional<KvValue> find_kv(std::string_view tenant_id, std::string_view ns,
                                         std::string_view key) = 0;
  // Inserts or replaces the value, unless that would take the namespace over `quota`: the usage
  // check and the write are one transaction, so concurrent puts (threads, processes) cannot
  // together cross a limit. Only growth is refused: replacing a value with one no larger always
  // goes through, so a namespace left over a lowered quota can still shrink.
  virtual KvPutOutcome put_kv(std::string_view tenant_id, std::string_view ns, std::string_view key,
                              const KvValue& value, const KvQuota& quota) = 0;
  // Returns whether the key existed.
  virtual bool delete_kv(std::string_view tenant_id, std::string_view ns, std::string_view key) = 0;
  // A limit below 1 is a caller's bug and throws std::invalid_argument.
  virtual std::vector<std::string> list_kv_keys(std::string_view tenant_id, std::string_view ns,
                                                const KvListing& listing) = 0;
  virtual KvUsage kv_usage(std::string_view tenant_id, std::string_view ns) = 0;

  // Secrets: one sealed value per tenant and name; put creates or replaces. Listing never returns
  // values. An unknown tenant throws NotFound on put.
  virtual void put_secret(std::string_view tenant_id, std::string_view name,
                          std::string_view sealed, int64_t at) = 0;
  virtual std::optional<std::string> find_secret(std::string_view tenant_id,
                                                 std::string_view name) = 0;
  virtual std::vector<SecretInfo> list_secrets(std::string_view tenant_id) = 0;  // by name
  virtual bool delete_secret(std::string_view tenant_id, std::string_view name) = 0;

  // The event outbox. Each tenant's events are numbered 1, 2, 3… in append order; a number is
  // never given twice, even if events are later pruned. Reads return events with seq > after_seq
  // in seq order; a limit below 1 throws std::invalid_argument. An unknown tenant throws NotFound
  // on append. The tenant keeps its newest `keep` events, and no more than `keep_bytes` of
  // payloads (policy quotas.events and event_bytes): appending drops the oldest in the same
  // transaction.
  virtual Event append_event(std::string_view tenant_id, std::string_view topic,
                             std::string_view payload, int64_t at,
                             int64_t keep = std::numeric_limits<int64_t>::max(),
                             int64_t keep_bytes = std::numeric_limits<int64_t>::max()) = 0;
  virtual std::vector<Event> read_events(std::string_view tenant_id, int64_t after_seq,
                                         int64_t limit) = 0;

  // Policy documents, one numbered version per accepted document. Versions are immutable: a
  // rollback stores the old document again as a new version.
  virtual PolicyVersion insert_policy_version(std::string_view document,
                                              std::string_view created_by, int64_t at) = 0;
  virtual std::optional<PolicyVersion> find_policy_version(int64_t version) = 0;
  virtual std::optional<PolicyVersion> latest_policy_version() = 0;
  virtual std::vector<PolicyVersionSummary> list_policy_versions() = 0;  // newest first

  // Stored runs. insert_runs adds runs (with ids unique per script; a run already stored is left as
  // it was) and then keeps only the newest `keep` of each script it touched, and the newest
  // `tenant_keep` of each tenant (policy quotas.stored_runs), all in one transaction. An unknown
  // tenant throws NotFound.
  virtual void insert_runs(const std::vector<StoredRun>& runs, int64_t keep,
                           int64_t tenant_keep = std::numeric_limits<int64_t>::max()) = 0;
  virtual std::optional<StoredRun> find_run(std::string_view tenant_id, std::string_view script,
                                            std::string_view id) = 0;
  // Newest first; a limit below 1 throws std::invalid_argument.
  virtual std::vector<StoredRun> list_runs(std::string_view tenant_id, std::string_view script,
                                           int64_t limit) = 0;

  // ---- jobs
  //
  // A job is queued → running → succeeded | failed | cancelled; a final state is written once.
  // When a job with a callback_url becomes final, its webhook delivery is created in the same
  // transaction, so every final job with a callback has exactly one delivery.

  // In one transaction: the tenant's job with the same idempotency key if there is one (kind
  // existing, whatever its request hash: the caller compares), else over_quota when the tenant
  // already has max_unfinished queued or running jobs, else over_kept when it keeps max_kept jobs
  // in every state (finished ones until their retention), else the new queued job. An unknown
  // tenant throws NotFound.
  virtual JobSubmission submit_job(const JobDraft& draft, int64_t max_unfinished,
                                   int64_t max_kept = std::numeric_limits<int64_t>::max()) = 0;
  virtual std::optional<Job> find_job(std::string_view tenant_id, std::string_view id) = 0;
  virtual std::vector<Job> list_jobs(std::string_view tenant_id, const JobListing& listing) = 0;
  // Leases. A running job is held by one node (a corrald, named by the caller) until its lease
  // expires; the holder renews it while the run goes on. Every claim adds one to the job's lease
  // token, and every write that ends or moves a running job (finish_job, requeue_job, the webhook
  // delivery those create) applies only under the current token: a node that lost its lease (it
  // paused, or its store connection stalled, past the expiry and another node took the job) finds
  // its writes refused and must drop its result. The token replaces the attempt number as the
  // guard because the attempt can come back (a run turned away gives it back), the token cannot.
  //
  // A lease that expired (lease_expires_at < now; a running job without one, left by a corrald
  // before leases, counts as expired) means its node is presumed dead: its attempt counts as a
  // crashed one, exactly as a crash recovered at start-up does: the job is queued again from the
  // expiry (error says whose lease lapsed), or, if that was its last allowed attempt, it fails
  // with outcome crashed (cancelled instead if its cancellation was asked for), with its webhook
  // delivery. A backend shared by several nodes must make the claim safe against their races (for
  // PostgreSQL: the rows taken with SELECT … FOR UPDATE SKIP LOCKED).

  // In one transaction: hands back every running job whose lease expired before `now` (above),
  // then takes the oldest queued job whose run_after has come: running with attempts + 1, held by
  // `node` until now + lease_ms, lease_token + 1. nullopt when nothing is due.
  virtual std::optional<Job> claim_job(int64_t now, std::string_view node, int64_t lease_ms) = 0;
  // The holder's heartbeat: the lease of job `id` now ends at `until`, only if the job is still
  // running under `lease_token` (an expired lease nobody took yet is renewed: its holder is alive
  // after all). false: the job was taken over, requeued or ended; the caller no longer holds it.
  virtual bool renew_job_lease(std::string_view id, int64_t lease_token, int64_t until) = 0;
  // The final write of a running attempt; nullopt (nothing changed) unless the job is running
  // under finish.lease_token. A job whose cancellation was asked for ends cancelled, its result
  // discarded. The holder is kept (the node that ran the attempt), the lease ends.
  virtual std::optional<Job> finish_job(const JobFinish& finish) = 0;
  // A running attempt that will be tried again: queued from run_after, with `error` kept, no
  // holder. When `count_attempt` is false the attempt is given back. Fenced as finish_job; a job
  // whose cancellation was asked for ends cancelled instead.
  virtual std::optional<Job> requeue_job(std::string_view id, int64_t lease_token,
                                         int64_t run_after, bool count_attempt,
                                         std::string_view error, int64_t at) = 0;
  // Queued: cancelled now. Running: marked, to end cancelled when its run returns. Final:
  // unchanged. `job` is set to the job as it is after the call, when there is one.
  virtual CancelOutcome cancel_job(std::string_view tenant_id, std::string_view id, int64_t at,
                                   std::optional<Job>* job) = 0;
  // At start-up, before any runner: jobs left running by a corrald that died go back to queued,
  // their attempt counted; those that had used their last attempt fail (outcome crashed). Returns
  // how many were requeued and how many failed. On a store no other node uses (SQLite: the data
  // directory's lock proves no other corrald is alive) every running job is handed back, leases
  // or not; on a shared one (shared()), only those whose lease lapsed before `at`, since other
  // holders may be alive (claim_job hands those back too).
  virtual std::pair<int64_t, int64_t> recover_jobs(int64_t at) = 0;
  // Jobs by state, over all tenants, for the metrics gauge.
  virtual std::vector<std::pair<JobState, int64_t>> count_jobs() = 0;
  // Forgets, oldest first and at most `limit` of them, the jobs that became final before
  // `finished_before`, with their webhook delivery. A job whose delivery is still pending, or was
  // settled at or after `finished_before`, is kept until it too is older. A forgotten job's
  // Idempotency-Key is free again. Returns how many jobs were forgotten.
  virtual int64_t prune_jobs(int64_t finished_before, int64_t limit) = 0;

  // Deliveries are sent at least once; a delivery's id is made once, with it, and is the same on
  // every try (the receiver's key to drop repeats).
  // The oldest pending delivery due at `now` and not in flight: now in flight with attempts + 1.
  virtual std::optional<Delivery> claim_delivery(int64_t now) = 0;
  // Guarded by the attempt number, as finish_job is. false when nothing changed.
  virtual bool record_delivery_attempt(const DeliveryAttempt& attempt) = 0;
  // Deliveries in flight when a corrald died become due again (their try counted). On a store no
  // other node uses, every delivery in flight, at start-up. On a shared one, only those in flight
  // for longer than kAbandonedDeliveryMs (no try lasts that long: the policy's longest webhook
  // timeout is 300 s), and then every node calls it now and then, since the dead node will not.
  virtual int64_t recover_deliveries(int64_t at) = 0;
  static constexpr int64_t kAbandonedDeliveryMs = 10 * 60 * 1000;
  // Whether other corrald nodes may use this store at the same time (PostgreSQL), which decides
  // what recovery may hand back.
  virtual bool shared() const = 0;
  // The ids of the tokens revoked at or after `since` (unix ms), for a node to drop them from its
  // token cache when another node revoked them.
  virtual std::vector<std::string> tokens_revoked_since(int64_t since) = 0;
  // Newest first. A limit below 1 throws std::invalid_argument.
  virtual std::vector<Delivery> list_deliveries(std::string_view tenant_id,
                                                std::optional<DeliveryState> state,
                                                std::optional<std::string> before_id,
                                                int64_t limit) = 0;
  virtual int64_t count_deliveries(DeliveryState state) = 0;

  // A tenant's webhook signing secret, sealed by the caller. put replaces; an unknown tenant
  // throws NotFound.
  virtual void put_webhook_secret(std::string_view tenant_id, std::string_view sealed,
                                  int64_t at) = 0;
  virtual std::optional<std::string> find_webhook_secret(std::string_view tenant_id) = 0;

  // ---- a tenant's data as a whole (export and erasure on request, docs/operations.md)

  // The tenant's tokens, oldest first (their secret hashes included: callers show none of them);
  // an empty tenant_id lists the admin tokens, which belong to no tenant.
  virtual std::vector<Token> list_tokens(std::string_view tenant_id) = 0;
  // The kv namespaces that hold keys of the tenant ("" for the tenant-wide one).
  virtual std::vector<std::string> list_kv_namespaces(std::string_view tenant_id) = 0;
  // ---- usage
  // Adds each row's counts to what is stored for its tenant, script and hour, in one transaction.
  virtual void add_usage(const std::vector<UsageRow>& rows) = 0;
  // The tenant's rows whose hour starts in [from_hour, until), by hour, then script.
  virtual std::vector<UsageRow> read_usage(std::string_view tenant_id, int64_t from_hour,
                                           int64_t until) = 0;
  // Deletes the rows of hours that started before `before`; returns how many went.
  virtual int64_t prune_usage(int64_t before) = 0;

  // Deletes what the tenant's scripts processed and kept: stored runs, jobs (in every state) and
  // their webhook deliveries, kv entries, outbox events (their numbers are not reused), in one
  // transaction. Keeps the tenant, its tokens, versions, aliases and their history, secrets,
  // webhook secret and the audit trail. Returns how many of each went.
  struct TenantDataErased {
    int64_t stored_runs = 0;
    int64_t jobs = 0;
    int64_t webhook_deliveries = 0;
    int64_t kv_entries = 0;
    int64_t events = 0;
  };
  virtual TenantDataErased erase_tenant_data(std::string_view tenant_id) = 0;

  // Runs `work` so that every change it makes through this store commits together or not at all,
  // and no other change interleaves: a change and its audit entry, for instance. If work throws,
  // nothing it did is kept and the exception comes out; work must not swallow a store exception and
  // go on, since what that call half-did would then be committed. Other threads' calls wait.
  virtual void atomically(const std::function<void()>& work) = 0;
};

// Opens (creating if need be) the SQLite store at <data_dir>/corral.db, creating data_dir with
// mode 0700 if it is missing, and brings its schema up to date. Throws StoreError if that cannot be
// done, including when the database was written by a newer corrald.
std::unique_ptr<Store> open_sqlite_store(const std::filesystem::path& data_dir);

// Opens the store in a PostgreSQL database (a postgresql:// URI) and brings its schema up to
// date under an advisory lock, so that nodes starting together migrate once. Throws
// StorageUnavailable when the server cannot be reached, StoreError when a newer corral wrote the
// database.
std::unique_ptr<Store> open_postgres_store(const std::string& url);

// The store corrald's --store names: "" (SQLite at <data_dir>/corral.db, as open_sqlite_store),
// sqlite:PATH (SQLite in that file, whose directory must exist), or a postgresql:// or
// postgres:// URI (open_postgres_store). Throws std::invalid_argument, saying what it takes, for
// anything else.
std::unique_ptr<Store> open_store_at(std::string_view location,
                                     const std::filesystem::path& data_dir);
// The location with any password replaced by "***", for logs and messages.
std::string redact_store_url(std::string_view location);

}  // namespace corral::store
