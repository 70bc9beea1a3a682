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

std::string bounded(std::string_view text, size_t most) {
  if (text.size() <= most) return std::string(text);
  std::string note = "\u2026 (" + std::to_string(text.size()) + " bytes in all)";
  size_t keep = most > note.size() ? most - note.size() : 0;
  // Back off to the start of a UTF-8 sequence, so that the cut never splits a character.
  while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) --keep;
  return std::string(text.substr(0, keep)) + note;
}

AuditTrail::AuditTrail(store::Store& store, Clock clock, DenialOptions denials)
    : store_(store), clock_(std::move(clock)), denial_options_(denials) {
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
                          bounded(principal, kFieldBounds.principal),
                          bounded(tenant, kFieldBounds.tenant),
                          bounded(action, kFieldBounds.action),
                          bounded(target, kFieldBounds.target),
                          std::string(to_string(decision)),
                          bounded(reason, kFieldBounds.reason)};
  return store_.append_audit(draft, kGenesisHash, entry_hash);
}

AuditTrail::~AuditTrail() {
  try {
    flush_denials(true);
  } catch (const std::exception&) {
    // The store is failing as corrald stops: the counts are lost, the entries before them are not.
  }
}

std::optional<Entry> AuditTrail::record_denial(std::string_view kind, std::string_view principal,
                                               std::string_view tenant, std::string_view action,
                                               std::string_view target, std::string_view reason) {
  int64_t now = clock_();
  const std::string base = bounded(tenant, kFieldBounds.tenant) + '\x1f' +
                           bounded(action, kFieldBounds.action) + '\x1f' + bounded(kind, 256);
  std::string key = base + '\x1f' + bounded(reason, kFieldBounds.reason);
  std::vector<DenialWindow> due;
  bool shared = false;
  {
    std::lock_guard lock(denials_mutex_);
    if (now - last_sweep_ms_ >= denial_options_.window_ms / 4) due = take_due_denials(now, false);
    auto found = denials_.find(key);
    // A denial that gets no key of its own shares one, whose summary then says the reasons vary.
    if (found == denials_.end()) {
      std::string shared_key;
      if (!reasons_.contains(base) && reasons_.size() >= denial_options_.max_kinds) {
        shared_key = bounded(tenant, kFieldBounds.tenant) + "\x1f(overflow)";
      } else {
        // A new reason: recorded apart while the kind has had few in this window.
        auto& [started, reasons] = reasons_[base];
        if (now - started >= denial_options_.window_ms) {
          started = now;
          reasons = 0;
        }
        if (reasons >= denial_options_.reasons_per_kind)
          shared_key = base + "\x1f(other reasons)";
        else
          ++reasons;
      }
      if (!shared_key.empty()) {
        key = std::move(shared_key);
        shared = true;
        found = denials_.find(key);
      }
    }
    if (found != denials_.end() && now - found->second.started_ms < denial_options_.window_ms) {
      ++found->second.repeats;
      found->second.last_ms = now;
      found = denials_.end();
      key.clear();
    } else if (found != denials_.end()) {
      if (found->second.repeats > 0) due.push_back(found->second);
      denials_.erase(found);
    }
  }
  for (const auto& window : due) write_summary(window);
  if (key.empty()) return std::nullopt;
  Entry entry = record(principal, tenant, action, target, Decision::deny, reason);
  std::lock_guard lock(denials_mutex_);
  // A concurrent denial of the same kind may have started the window first: it then counts this
  // one's successors, and this one stands recorded on its own.
  denials_.try_emplace(key, DenialWindow{.started_ms = now,
                                         .last_ms = now,
                                         .first_seq = entry.seq,
                                         .repeats = 0,
                                         .other_reasons = shared,
                                         .principal = entry.principal,
                                         .tenant = entry.tenant,
                                         .action = entry.action,
                                         .target = entry.target});
  return entry;
}

std::vector<AuditTrail::DenialWindow> AuditTrail::take_due_denials(int64_t now, bool all) {
  last_sweep_ms_ = now;
  std::erase_if(reasons_, [&](const auto& entry) {
    return all || now - entry.second.first >= denial_options_.window_ms;
  });
  std::vector<DenialWindow> due;
  for (auto it = denials_.begin(); it != denials_.end();) {
    if (all || now - it->second.started_ms >= denial_options_.window_ms) {
      if (it->second.repeats > 0) due.push_back(std::move(it->second));
      it = denials_.erase(it);
    } else {
      ++it;
    }
  }
  return due;
}

void AuditTrail::write_summary(const DenialWindow& window) {
  std::string times = window.repeats == 1 ? " more time" : " more times";
  std::string like = window.other_reasons ? " for other reasons, after entry " : " like entry ";
  record(window.principal, window.tenant, window.action, window.target, Decision::deny,
         "denied " + std::to_string(window.repeats) + times + like +
             std::to_string(window.first_seq) + ", from " + store::iso8601(window.started_ms) +
             " to " + store::iso8601(window.last_ms) +
             " (repeats within a window are counted, not recorded one by one)");
}

void AuditTrail::flush_denials(bool all) {
  std::vector<DenialWindow> due;
  {
    std::lock_guard lock(denials_mutex_);
    due = take_due_denials(clock_(), all);
  }
  for (const auto& window : due) write_summary(window);
}

std::vector<Entry> AuditTrail::query(const Filter& filter) {
  flush_denials();
  return store_.read_audit(filter);
}

VerifyReport AuditTrail::verify(int64_t page_size) {
  flush_denials();
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
