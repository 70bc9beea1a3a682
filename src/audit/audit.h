// The audit trail: every change and every denial, in order, each entry carrying the SHA-256 of the
// one before it so that editing, removing or reordering entries behind corral's back shows up in
// verify(). (Removing entries from the very end leaves a shorter chain that still verifies; only a
// copy of the last hash kept elsewhere can catch that.)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
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

// The most each field of an entry may hold, in bytes. Callers pass text that scripts, tokens and
// strangers choose (a URL, a topic, a path); record() cuts a longer field at a UTF-8 boundary and
// says how long it was, so that no entry can be made large, whatever it is about.
struct FieldBounds {
  size_t principal = 160;
  size_t tenant = 128;
  size_t action = 64;
  size_t target = 512;
  size_t reason = 1024;
};
inline constexpr FieldBounds kFieldBounds{};

// `text` if it fits in `most` bytes; else its first bytes (never a broken UTF-8 sequence) and
// "… (N bytes in all)", within `most` bytes.
std::string bounded(std::string_view text, size_t most);

// Repeated denials of one kind are one entry with a count (DenialWindow below): the first of a
// kind in a window is recorded in full; the others are counted, and when the window has passed a
// summary entry says how many there were, from when to when.
struct DenialOptions {
  int64_t window_ms = 60'000;
  // Denials of one tenant, action and kind whose reasons differ are recorded apart, up to this
  // many reasons in a window; past it, further reasons share one count.
  size_t reasons_per_kind = 8;
  // Kinds tracked at once; past it, new kinds share one overflow kind per tenant.
  size_t max_kinds = 10'000;
};

class AuditTrail {
 public:
  using Clock = std::function<int64_t()>;  // unix milliseconds

  explicit AuditTrail(store::Store& store, Clock clock = store::now_ms, DenialOptions denials = {});
  // Writes the summaries of denials still being counted.
  ~AuditTrail();
  AuditTrail(const AuditTrail&) = delete;
  AuditTrail& operator=(const AuditTrail&) = delete;

  // Appends an entry stamped with the clock's time and returns it as stored. principal is a token
  // id (never the token itself), or "bootstrap" / "system"; tenant may be empty. Each field is
  // bounded by kFieldBounds.
  Entry record(std::string_view principal, std::string_view tenant, std::string_view action,
               std::string_view target, Decision decision, std::string_view reason);

  // A denial that may repeat at a caller's will (a bad token, a probe of another tenant, a
  // capability the policy refuses). `kind` says what makes two denials the same beside tenant,
  // action and reason (the client, the token, the script). The first of a tenant, action, kind and
  // reason in a window is recorded and returned; later ones are counted, and nullopt is returned.
  std::optional<Entry> record_denial(std::string_view kind, std::string_view principal,
                                     std::string_view tenant, std::string_view action,
                                     std::string_view target, std::string_view reason);

  // Writes a summary for every kind whose window has passed with denials counted (or, with
  // `all`, every kind with denials counted). record_denial(), query() and verify() call it, so
  // that a reader of the trail sees every count that is due.
  void flush_denials(bool all = false);

  std::vector<Entry> query(const Filter& filter);

  // Re-walks the whole chain in seq order, a page at a time, and stops at the first entry that does
  // not fit: a gap in the sequence, a prev_hash that is not the previous entry's hash, or a hash
  // that does not match the entry's contents.
  VerifyReport verify(int64_t page_size = 1000);

 private:
  struct DenialWindow {
    int64_t started_ms = 0;
    int64_t last_ms = 0;
    int64_t first_seq = 0;
    int64_t repeats = 0;         // denials after the first, not recorded one by one
    bool other_reasons = false;  // the repeats' reasons differ from the first's
    std::string principal, tenant, action, target;
  };
  // Takes the summaries due, under the lock; the caller writes them after releasing it.
  std::vector<DenialWindow> take_due_denials(int64_t now, bool all);
  void write_summary(const DenialWindow& window);

  store::Store& store_;
  Clock clock_;
  const DenialOptions denial_options_;
  std::mutex denials_mutex_;
  std::map<std::string, DenialWindow, std::less<>> denials_;
  // Reasons seen per tenant, action and kind in the current window: {window start, count}.
  std::map<std::string, std::pair<int64_t, size_t>, std::less<>> reasons_;
  int64_t last_sweep_ms_ = 0;
};

}  // namespace corral::audit
