// The audit trail: every change and every denial, in order, each entry carrying the SHA-256 of the
// one before it so that editing, removing or reordering entries behind corral's back shows up in
// verify(). (Removing entries from the very end leaves a shorter chain that still verifies; only a
// copy of the last hash kept elsewhere can catch that.)
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace corral::audit {

using Entry = store::AuditEntry;
using Filter = store::AuditFilter;

enum class Decision { allow, deny };

std::string_view to_string(Decision decision);

// prev_hash of the first entry.
inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// SHA-256, as lowercase hex, of an unambiguous encoding of every field of the entry but its hash.
// Strings are written as an 8-byte big-endian length followed by their bytes, integers as 8-byte
// big-endian two's complement, in this order: the tag "corral-audit-v1", seq, time_ms, principal,
// tenant, action, target, decision, reason, prev_hash. Changing the encoding invalidates every
// existing chain.
std::string entry_hash(const Entry& entry);

struct VerifyReport {
  bool ok = true;
  int64_t entries_checked = 0;
  std::optional<int64_t> first_bad_seq;
  std::string problem;  // empty when ok
};

class AuditTrail {
 public:
  using Clock = std::function<int64_t()>;  // unix milliseconds

  explicit AuditTrail(store::Store& store, Clock clock = store::now_ms);

  // Appends an entry stamped with the clock's time and returns it as stored. principal is a token
  // id (never the token itself), or "bootstrap" / "system"; tenant may be empty.
  Entry record(std::string_view principal, std::string_view tenant, std::string_view action,
               std::string_view target, Decision decision, std::string_view reason);

  std::vector<Entry> query(const Filter& filter);

  // Re-walks the whole chain in seq order, a page at a time, and stops at the first entry that does
  // not fit: a gap in the sequence, a prev_hash that is not the previous entry's hash, or a hash
  // that does not match the entry's contents.
  VerifyReport verify(int64_t page_size = 1000);

 private:
  store::Store& store_;
  Clock clock_;
};

}  // namespace corral::audit
