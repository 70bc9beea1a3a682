// The policy in force, its numbered versions in the store, and changing it while corrald runs
// (issue 5, "The policy"). The document itself (parsing, merging, explaining) is policy.h.
//
// Contract:
// - current() is cheap and lock-free for readers: an invocation takes the snapshot once when it
//   starts and uses it to the end, so a change made meanwhile never applies to it half-way.
// - Every accepted document is stored as the next version, with an audit entry carrying its diff
//   against the version before, in one store transaction.
// - Version 0 is the built-in safe default (Policy::safe_default()); it is never stored, and is
//   in force only until a document is accepted or loaded.
// - Thread-safe. Versions stored by another corrald sharing the store become current here only
//   when this one restarts (or stores a newer version itself).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/audit.h"
#include "policy/policy.h"
#include "store/store.h"

namespace corral::policy {

struct Snapshot {
  int64_t version = 0;  // 0: the built-in safe default
  Policy policy;
  std::string created_by;  // token id, "bootstrap" (--policy FILE) or "built-in"
  int64_t created_at = 0;
};

struct Accepted {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<std::string> diff;  // against the version that was current before
};

class PolicyService {
 public:
  // Makes the newest stored version current, or the safe default when none is stored.
  PolicyService(store::Store& store, audit::AuditTrail& audit);

  // The version in force now. Never null.
  std::shared_ptr<const Snapshot> current() const;

  // Validates the whole document (throws PolicyInvalid with every problem), stores it as the next
  // version, audits it with its diff (action "policy.update"), and makes it current.
  Accepted update(std::string_view yaml_text, std::string_view principal);

  // A stored version, or nullopt. Version 0 is the built-in default.
  std::optional<Snapshot> version(int64_t number) const;
  std::vector<store::PolicyVersionSummary> versions() const;

  // Stores an earlier version's document again as the next version (history is append-only),
  // audited as "policy.rollback". Version 0 stores the safe default's text. Throws
  // store::NotFound for an unknown version.
  Accepted rollback(int64_t to_version, std::string_view principal);

  // For corrald --policy FILE at start-up: the text becomes a new version unless it is the same
  // document as the newest stored one (then nothing is stored). Throws PolicyInvalid.
  Accepted load_at_startup(std::string_view yaml_text, std::string_view source_name);
  // The same for the file read again later (corrald's SIGHUP): `occasion` says when, in the
  // audit entry ("on SIGHUP"). Throws PolicyInvalid, leaving the policy in force as it was.
  Accepted load_file(std::string_view yaml_text, std::string_view source_name,
                     std::string_view occasion);

  // For a store other nodes share: makes the newest stored version current when another node
  // stored one since (a version this corrald cannot read is left out, the one in force kept, and
  // the reason returned in `problem`). True when the policy in force changed.
  bool follow_store(std::string* problem = nullptr);

 private:
  // Parses, stores, audits and publishes one document; `reason` starts the audit entry's reason.
  Accepted install(std::string_view yaml_text, std::string_view principal, std::string_view action,
                   std::string_view reason);
  // Makes `snapshot` current unless a newer version already is (two updates racing).
  void publish(std::shared_ptr<const Snapshot> snapshot);
  // The stored version parsed, reusing the current snapshot's Policy when it is that version.
  Snapshot load(const store::PolicyVersion& stored) const;

  store::Store& store_;
  audit::AuditTrail& audit_;
  std::atomic<std::shared_ptr<const Snapshot>> current_;
};

}  // namespace corral::policy
