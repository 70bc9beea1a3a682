#include "audit/audit.h"

#include <sodium.h>

#include <array>
#include <stdexcept>

namespace corral::audit {

namespace {

// Bumped if the encoding ever changes, so that old and new hashes can never be confused.
constexpr std::string_view kEncodingTag = "corral-audit-v1";

void append_u64(std::string& out, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(value >> shift));
}

void append_field(std::string& out, std::string_view field) {
  append_u64(out, field.size());
  out.append(field);
}

}  // namespace

std::string_view to_string(Decision decision) {
  return decision == Decision::allow ? "allow" : "deny";
}

std::string entry_hash(const Entry& entry) {
  std::string encoded;
  append_field(encoded, kEncodingTag);
  append_u64(encoded, static_cast<uint64_t>(entry.seq));
  append_u64(encoded, static_cast<uint64_t>(entry.time_ms));
  for (const std::string* field : {&entry.principal, &entry.tenant, &entry.action, &entry.target,
                                   &entry.decision, &entry.reason, &entry.prev_hash}) {
    append_field(encoded, *field);
  }
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest;
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(encoded.data()),
                     encoded.size());
  std::string hex(digest.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), digest.data(), digest.size());
  hex.pop_back();
  return hex;
}

AuditTrail::AuditTrail(store::Store& store, Clock clock) : store_(store), clock_(std::move(clock)) {
  if (sodium_init() < 0) {
    throw std::runtime_error(
        "audit: libsodium failed to initialise (it could not get system randomness); check that "
        "/dev/urandom is readable");
  }
}

Entry AuditTrail::record(std::string_view principal, std::string_view tenant,
                         std::string_view action, std::string_view target, Decision decision,
                         std::string_view reason) {
  store::AuditDraft draft{clock_(),
                          std::string(principal),
                          std::string(tenant),
                          std::string(action),
                          std::string(target),
                          std::string(to_string(decision)),
                          std::string(reason)};
  return store_.append_audit(draft, kGenesisHash, entry_hash);
}

std::vector<Entry> AuditTrail::query(const Filter& filter) { return store_.read_audit(filter); }

VerifyReport AuditTrail::verify(int64_t page_size) {
  VerifyReport report;
  auto bad = [&report](int64_t seq, std::string problem) {
    report.ok = false;
    report.first_bad_seq = seq;
    report.problem = std::move(problem);
    return report;
  };
  // One page and the previous entry are all that is held, so memory stays flat however long the
  // trail grows.
  std::optional<Entry> previous;
  Filter page_filter;
  page_filter.limit = page_size;
  for (;;) {
    page_filter.after_seq = previous ? std::optional(previous->seq) : std::nullopt;
    std::vector<Entry> page = store_.read_audit(page_filter);
    if (page.empty()) return report;
    for (Entry& entry : page) {
      int64_t expected_seq = previous ? previous->seq + 1 : 1;
      if (entry.seq != expected_seq) {
        std::string where =
            previous ? "sequence gap after entry " + std::to_string(previous->seq) : "sequence gap";
        return bad(expected_seq, where + ": entry " + std::to_string(expected_seq) +
                                     " is missing (the next one is " + std::to_string(entry.seq) +
                                     ")");
      }
      std::string_view expected_prev = previous ? std::string_view(previous->hash) : kGenesisHash;
      if (entry.prev_hash != expected_prev) {
        return bad(
            entry.seq,
            "entry " + std::to_string(entry.seq) +
                (previous ? ": prev_hash does not match entry " + std::to_string(previous->seq)
                          : ": prev_hash is not the genesis hash, but this is the first entry"));
      }
      if (entry.hash != entry_hash(entry)) {
        return bad(entry.seq,
                   "entry " + std::to_string(entry.seq) + ": hash does not match its contents");
      }
      ++report.entries_checked;
      previous = std::move(entry);
    }
  }
}

}  // namespace corral::audit
