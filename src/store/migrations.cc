#include "store/migrations.h"

namespace corral::store {

const std::vector<std::string_view>& migrations() {
  static const std::vector<std::string_view> all = {
      // 1: tenants, tokens, script versions, aliases and the audit trail.
      //
      // STRICT tables so that a value of the wrong type is an error rather than silently stored.
      // Empty strings mean "none" for audit fields (they are hashed, and NULL would need a second
      // encoding); elsewhere absent values are NULL so that foreign keys and uniqueness apply.
      R"sql(
CREATE TABLE tenants (
  id         TEXT    NOT NULL PRIMARY KEY,
  name       TEXT    NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
  id          TEXT    NOT NULL PRIMARY KEY,
  tenant_id   TEXT    REFERENCES tenants (id),
  role        TEXT    NOT NULL,
  secret_hash TEXT    NOT NULL UNIQUE,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER,
  revoked_at  INTEGER,
  created_by  TEXT    NOT NULL
) STRICT;
CREATE INDEX tokens_by_tenant ON tokens (tenant_id);

CREATE TABLE script_versions (
  tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
  script       TEXT    NOT NULL,
  version      INTEGER NOT NULL CHECK (version >= 1),
  sha256       TEXT    NOT NULL,
  source       TEXT    NOT NULL,
  manifest     TEXT    NOT NULL,
  state        TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'deprecated', 'disabled')),
  published_by TEXT    NOT NULL,
  published_at INTEGER NOT NULL,
  approved_by  TEXT,
  approved_at  INTEGER,
  PRIMARY KEY (tenant_id, script, version),
  UNIQUE (tenant_id, script, sha256)
) STRICT;

CREATE TABLE aliases (
  tenant_id  TEXT    NOT NULL,
  script     TEXT    NOT NULL,
  name       TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  updated_by TEXT    NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, script, name),
  FOREIGN KEY (tenant_id, script, version) REFERENCES script_versions (tenant_id, script, version)
) STRICT;

CREATE TABLE audit_entries (
  seq       INTEGER NOT NULL PRIMARY KEY CHECK (seq >= 1),
  time_ms   INTEGER NOT NULL,
  principal TEXT    NOT NULL,
  tenant    TEXT    NOT NULL,
  action    TEXT    NOT NULL,
  target    TEXT    NOT NULL,
  decision  TEXT    NOT NULL CHECK (decision IN ('allow', 'deny')),
  reason    TEXT    NOT NULL,
  prev_hash TEXT    NOT NULL,
  hash      TEXT    NOT NULL
) STRICT;
CREATE INDEX audit_by_tenant ON audit_entries (tenant, seq);
CREATE INDEX audit_by_action ON audit_entries (action, seq);
CREATE INDEX audit_by_time ON audit_entries (time_ms);

-- The hash chain is what detects tampering; these only stop corral's own code from rewriting
-- history by mistake. Anyone with the file can drop them, which is why the chain exists.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
  SELECT RAISE(ABORT, 'audit entries are append-only');
END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
  SELECT RAISE(ABORT, 'audit entries are append-only');
END;
)sql",
      // 2: who a token was issued to, so that approving one's own version can be refused even when
      // one person holds a publisher and a reviewer token.
      R"sql(
ALTER TABLE tokens ADD COLUMN subject TEXT NOT NULL DEFAULT '';
)sql",
      // 3: the broker's durable state (sealed kv values and secrets, the event outbox) and the
      // policy's version history.
      //
      // kv_usage is kept by triggers rather than by the code that writes kv_entries, so that every
      // write path (including a future one, or an operator's DELETE) keeps it right; a put reads
      // it in O(1) to check quotas instead of summing the namespace.
      R"sql(
CREATE TABLE kv_entries (
  tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
  namespace   TEXT    NOT NULL,
  key         TEXT    NOT NULL,
  sealed      BLOB    NOT NULL,
  value_bytes INTEGER NOT NULL CHECK (value_bytes >= 0),
  PRIMARY KEY (tenant_id, namespace, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE kv_usage (
  tenant_id TEXT    NOT NULL,
  namespace TEXT    NOT NULL,
  keys      INTEGER NOT NULL CHECK (keys >= 0),
  bytes     INTEGER NOT NULL CHECK (bytes >= 0),
  PRIMARY KEY (tenant_id, namespace)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER kv_entries_count_insert AFTER INSERT ON kv_entries
BEGIN
  INSERT INTO kv_usage (tenant_id, namespace, keys, bytes)
  VALUES (NEW.tenant_id, NEW.namespace, 1, length(CAST(NEW.key AS BLOB)) + NEW.value_bytes)
  ON CONFLICT (tenant_id, namespace) DO UPDATE SET keys = keys + 1,
    bytes = bytes + length(CAST(NEW.key AS BLOB)) + NEW.value_bytes;
END;
CREATE TRIGGER kv_entries_count_update AFTER UPDATE ON kv_entries
BEGIN
  UPDATE kv_usage SET bytes = bytes - length(CAST(OLD.key AS BLOB)) - OLD.value_bytes
    WHERE tenant_id = OLD.tenant_id AND namespace = OLD.namespace;
  UPDATE kv_usage SET keys = keys - 1
    WHERE tenant_id = OLD.tenant_id AND namespace = OLD.namespace;
  INSERT INTO kv_usage (tenant_id, namespace, keys, bytes)
  VALUES (NEW.tenant_id, NEW.namespace, 1, length(CAST(NEW.key AS BLOB)) + NEW.value_bytes)
  ON CONFLICT (tenant_id, namespace) DO UPDATE SET keys = keys + 1,
    bytes = bytes + length(CAST(NEW.key AS BLOB)) + NEW.value_bytes;
END;
CREATE TRIGGER kv_entries_count_delete AFTER DELETE ON kv_entries
BEGIN
  UPDATE kv_usage SET keys = keys - 1,
    bytes = bytes - length(CAST(OLD.key AS BLOB)) - OLD.value_bytes
    WHERE tenant_id = OLD.tenant_id AND namespace = OLD.namespace;
END;

CREATE TABLE secrets (
  tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
  name       TEXT    NOT NULL,
  sealed     BLOB    NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, name)
) STRICT, WITHOUT ROWID;

-- The last number given per tenant, so that numbers are not reused after old events are pruned.
CREATE TABLE event_counters (
  tenant_id TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
  last_seq  INTEGER NOT NULL CHECK (last_seq >= 1)
) STRICT;

CREATE TABLE events (
  tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
  seq        INTEGER NOT NULL CHECK (seq >= 1),
  topic      TEXT    NOT NULL,
  payload    TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, seq)
) STRICT;

CREATE TABLE policy_versions (
  version    INTEGER NOT NULL PRIMARY KEY CHECK (version >= 1),
  document   TEXT    NOT NULL,
  created_by TEXT    NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;

-- Which policy an invocation ran under must stay answerable: versions are never rewritten.
CREATE TRIGGER policy_versions_no_update BEFORE UPDATE ON policy_versions
BEGIN
  SELECT RAISE(ABORT, 'policy versions are immutable');
END;
CREATE TRIGGER policy_versions_no_delete BEFORE DELETE ON policy_versions
BEGIN
  SELECT RAISE(ABORT, 'policy versions are immutable');
END;
)sql",
      // 4: aliases that roll back by themselves when their version is quarantined by its circuit
      // breaker, and the version such a rollback moved them away from (NULL: set by a person).
      R"sql(
ALTER TABLE aliases ADD COLUMN auto_rollback INTEGER NOT NULL DEFAULT 0
  CHECK (auto_rollback IN (0, 1));
ALTER TABLE aliases ADD COLUMN rolled_back_from INTEGER;
)sql",
      // 5: canary splits on aliases (a second version taking a share of the traffic, in percent),
      // and stored runs: the last results per script, their inputs only when the policy keeps
      // them (NULL otherwise), for listing and replay against another version.
      R"sql(
ALTER TABLE aliases ADD COLUMN canary_version INTEGER;
ALTER TABLE aliases ADD COLUMN canary_weight INTEGER NOT NULL DEFAULT 0
  CHECK (canary_weight BETWEEN 0 AND 100);

CREATE TABLE stored_runs (
  tenant_id TEXT    NOT NULL REFERENCES tenants (id),
  script    TEXT    NOT NULL,
  id        TEXT    NOT NULL,
  seq       INTEGER NOT NULL,
  version   INTEGER NOT NULL,
  time_ms   INTEGER NOT NULL,
  outcome   TEXT    NOT NULL,
  input     TEXT,
  result    TEXT    NOT NULL,
  PRIMARY KEY (tenant_id, script, id)
) STRICT;
CREATE INDEX stored_runs_by_seq ON stored_runs (tenant_id, script, seq);
)sql",
      // 6: durable jobs, their webhook deliveries, and each tenant's sealed webhook signing secret.
      // A job keeps what it was submitted under (the resolved version, the policy's max_attempts
      // and webhook settings), so that a restart, or a policy change meanwhile, does not change how
      // an accepted job is run. The guard on (tenant, idempotency key) is what makes a retried
      // submission find its job; one delivery per job (UNIQUE job_id) is what keeps a finished
      // job from being announced twice.
      R"sql(
CREATE TABLE jobs (
  id                TEXT    NOT NULL PRIMARY KEY,
  tenant_id         TEXT    NOT NULL REFERENCES tenants (id),
  script            TEXT    NOT NULL,
  version           INTEGER NOT NULL CHECK (version >= 1),
  alias             TEXT,
  idempotency_key   TEXT    NOT NULL,
  request_sha256    TEXT    NOT NULL,
  input             TEXT    NOT NULL,
  callback_url      TEXT,
  state             TEXT    NOT NULL
    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts      INTEGER NOT NULL CHECK (max_attempts >= 1),
  webhook_attempts  INTEGER NOT NULL CHECK (webhook_attempts >= 1),
  webhook_backoff_ms INTEGER NOT NULL CHECK (webhook_backoff_ms >= 1),
  cancel_requested  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
  outcome           TEXT,
  status            INTEGER,
  result            TEXT,
  error             TEXT,
  created_by        TEXT    NOT NULL,
  created_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  run_after         INTEGER NOT NULL,
  started_at        INTEGER,
  finished_at       INTEGER,
  result_writes     INTEGER NOT NULL DEFAULT 0,
  UNIQUE (tenant_id, idempotency_key)
) STRICT;
CREATE INDEX jobs_to_run ON jobs (state, run_after, created_at);
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, created_at, id);

CREATE TABLE webhook_deliveries (
  id              TEXT    NOT NULL PRIMARY KEY,
  tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
  job_id          TEXT    NOT NULL UNIQUE REFERENCES jobs (id),
  url             TEXT    NOT NULL,
  state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
  backoff_ms      INTEGER NOT NULL CHECK (backoff_ms >= 1),
  next_attempt_at INTEGER NOT NULL,
  in_flight       INTEGER NOT NULL DEFAULT 0 CHECK (in_flight IN (0, 1)),
  last_status     INTEGER,
  last_error      TEXT,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  delivered_at    INTEGER
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (tenant_id, state, created_at);

CREATE TABLE webhook_secrets (
  tenant_id  TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
  sealed     BLOB    NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
)sql",
      // The outbox's bound in bytes (policy quotas.event_bytes): each event's payload size, and
      // each tenant's sum of them, kept as events come and go.
      R"sql(
ALTER TABLE events ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_counters ADD COLUMN kept_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE events SET bytes = length(CAST(payload AS BLOB));
UPDATE event_counters SET kept_bytes =
  (SELECT coalesce(sum(bytes), 0) FROM events WHERE events.tenant_id = event_counters.tenant_id);
)sql",
      // 8: every change of an alias, so that an automatic rollback goes back to the version the
      // alias pointed at before (not merely a lower number) and people can see where it has been.
      // Triggers write it, so that no path that moves an alias can forget to. An alias that
      // existed before this migration starts its history with what it points at now.
      R"sql(
CREATE TABLE alias_history (
  seq              INTEGER PRIMARY KEY,
  tenant_id        TEXT    NOT NULL,
  script           TEXT    NOT NULL,
  name             TEXT    NOT NULL,
  version          INTEGER NOT NULL,
  previous_version INTEGER,
  auto_rollback    INTEGER NOT NULL,
  rolled_back_from INTEGER,
  canary_version   INTEGER,
  canary_weight    INTEGER NOT NULL,
  changed_by       TEXT    NOT NULL,
  changed_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX alias_history_by_alias ON alias_history (tenant_id, script, name, seq);

INSERT INTO alias_history (tenant_id, script, name, version, previous_version, auto_rollback,
                           rolled_back_from, canary_version, canary_weight, changed_by, changed_at)
  SELECT tenant_id, script, name, version, rolled_back_from, auto_rollback, rolled_back_from,
         canary_version, canary_weight, updated_by, updated_at
  FROM aliases ORDER BY updated_at;

CREATE TRIGGER aliases_history_insert AFTER INSERT ON aliases
BEGIN
  INSERT INTO alias_history (tenant_id, script, name, version, previous_version, auto_rollback,
                             rolled_back_from, canary_version, canary_weight, changed_by,
                             changed_at)
  VALUES (NEW.tenant_id, NEW.script, NEW.name, NEW.version, NULL, NEW.auto_rollback,
          NEW.rolled_back_from, NEW.canary_version, NEW.canary_weight, NEW.updated_by,
          NEW.updated_at);
END;
CREATE TRIGGER aliases_history_update AFTER UPDATE ON aliases
BEGIN
  INSERT INTO alias_history (tenant_id, script, name, version, previous_version, auto_rollback,
                             rolled_back_from, canary_version, canary_weight, changed_by,
                             changed_at)
  VALUES (NEW.tenant_id, NEW.script, NEW.name, NEW.version, OLD.version, NEW.auto_rollback,
          NEW.rolled_back_from, NEW.canary_version, NEW.canary_weight, NEW.updated_by,
          NEW.updated_at);
END;
)sql",
      // 9: the public key that verified a version's signature, so that a version says who signed
      // it (NULL: published without a signature).
      R"sql(
ALTER TABLE script_versions ADD COLUMN signed_by TEXT;
)sql",
      // 10: a job's input is customers' data: it is dropped when the job ends unless the policy
      // kept it at submission (jobs.inputs), and its webhook may leave it out (webhook_input).
      // A trigger drops it, so that every path to a final state (a result, a cancellation, a
      // recovery after a crash) does. Jobs submitted before this migration keep theirs, as they
      // were promised.
      R"sql(
ALTER TABLE jobs ADD COLUMN keep_input INTEGER NOT NULL DEFAULT 1 CHECK (keep_input IN (0, 1));
ALTER TABLE jobs ADD COLUMN webhook_input INTEGER NOT NULL DEFAULT 1
  CHECK (webhook_input IN (0, 1));
CREATE TRIGGER jobs_drop_input_when_final AFTER UPDATE OF state ON jobs
  WHEN NEW.state IN ('succeeded', 'failed', 'cancelled') AND NEW.keep_input = 0
    AND NEW.input <> ''
BEGIN
  UPDATE jobs SET input = '' WHERE id = NEW.id;
END;
)sql",
      // 11: when a token last authenticated, so that an admin listing tokens sees which are idle.
      R"sql(
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
)sql",
      // 12: usage for billing, per tenant, script and hour (GET /v1/tenants/{tenant}/usage).
      R"sql(
CREATE TABLE usage (
  tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
  hour        INTEGER NOT NULL,
  script      TEXT    NOT NULL,
  invocations INTEGER NOT NULL DEFAULT 0,
  failures    INTEGER NOT NULL DEFAULT 0,
  cpu_us      INTEGER NOT NULL DEFAULT 0,
  fuel        INTEGER NOT NULL DEFAULT 0,
  jobs        INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, hour, script)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_by_hour ON usage (hour);
)sql",
      // 13: jobs leased by a node (store.h, "Leases"): who holds a running job, until when, and
      // the fencing token of its latest claim, which only grows. A job left running by a corrald
      // from before has no lease, which counts as expired: it is handed back like a lapsed one
      // (and, on SQLite, by the recovery at start-up anyway).
      R"sql(
ALTER TABLE jobs ADD COLUMN lease_holder TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at INTEGER;
ALTER TABLE jobs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0 CHECK (lease_token >= 0);
CREATE INDEX jobs_by_lease ON jobs (state, lease_expires_at);
)sql",
  };
  return all;
}

}  // namespace corral::store
