#include "broker/kv.h"

namespace corral::broker {

namespace {

constexpr std::string_view kPurpose = "kv";
// Keys are quoted in messages only this far, so that a long key cannot flood a log line.
constexpr size_t kKeyShownBytes = 64;

// The offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF), or npos.
size_t first_invalid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto byte = [&](size_t at) { return static_cast<unsigned char>(text[at]); };
    unsigned char lead = byte(i);
    size_t length = 0;
    unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
    if (lead < 0x80) {
      ++i;
      continue;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead == 0xe0) low = 0xa0;
      if (lead == 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead == 0xf0) low = 0x90;
      if (lead == 0xf4) high = 0x8f;
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    if (byte(i + 1) < low || byte(i + 1) > high) return i;
    for (size_t k = 2; k < length; ++k) {
      if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return i;
    }
    i += length;
  }
  return std::string_view::npos;
}

// A key for a message: quoted, cut short at a character boundary if it is long.
std::string shown(std::string_view key) {
  if (key.size() <= kKeyShownBytes) return "\"" + std::string(key) + "\"";
  size_t cut = kKeyShownBytes;
  while (cut > 0 && (static_cast<unsigned char>(key[cut]) & 0xc0) == 0x80) --cut;
  return "\"" + std::string(key.substr(0, cut)) + "\"… (" + std::to_string(key.size()) + " bytes)";
}

std::string scope_text(const KvScope& scope) {
  return scope.ns.empty() ? "the tenant's kv store"
                          : "the kv store of script \"" + std::string(scope.ns) + "\"";
}

// Throws KvInvalid unless `text` may be a key (or, with allow_empty, a prefix).
void check_key(std::string_view text, std::string_view what, bool allow_empty = false) {
  if (text.empty() && !allow_empty) {
    throw KvInvalid("kv " + std::string(what) + " is empty; use a non-empty string");
  }
  size_t bad = first_invalid_utf8(text);
  if (bad != std::string_view::npos) {
    throw KvInvalid("kv " + std::string(what) + " is not valid UTF-8 (byte " +
                    std::to_string(bad + 1) + "); use text, or encode binary data as hex");
  }
  size_t nul = text.find('\0');
  if (nul != std::string_view::npos) {
    throw KvInvalid("kv " + std::string(what) + " " + shown(text.substr(0, nul)) +
                    " contains a NUL byte at byte " + std::to_string(nul + 1) +
                    "; remove it from the " + std::string(what));
  }
}

SealedPlace place_of(const KvScope& scope, std::string_view key) {
  return SealedPlace{kPurpose, scope.tenant_id, scope.ns, key};
}

}  // namespace

std::optional<std::string> KvService::get(const KvScope& scope, std::string_view key) {
  check_key(key, "key");
  auto stored = store_.find_kv(scope.tenant_id, scope.ns, key);
  if (!stored) return std::nullopt;
  return sealer_.open(place_of(scope, key), stored->sealed);
}

void KvService::put(const KvScope& scope, std::string_view key, std::string_view json_value,
                    const KvLimits& limits) {
  check_key(key, "key");
  if (json_value.empty()) {
    throw KvInvalid("kv put of key " + shown(key) + ": the value is empty; give a JSON value");
  }
  const auto key_bytes = static_cast<int64_t>(key.size());
  if (key_bytes > limits.max_key_bytes) {
    throw KvLimitExceeded("kv key " + shown(key) + " is " + std::to_string(key_bytes) +
                              " bytes, over the limit max_key_bytes = " +
                              std::to_string(limits.max_key_bytes) + "; use a shorter key",
                          "max_key_bytes", key_bytes, limits.max_key_bytes);
  }
  const auto value_bytes = static_cast<int64_t>(json_value.size());
  if (value_bytes > limits.max_value_bytes) {
    throw KvLimitExceeded(
        "kv put of key " + shown(key) + ": the value is " + std::to_string(value_bytes) +
            " bytes, over the limit max_value_bytes = " + std::to_string(limits.max_value_bytes) +
            "; store a smaller value",
        "max_value_bytes", value_bytes, limits.max_value_bytes);
  }
  store::KvValue sealed{sealer_.seal(place_of(scope, key), json_value), value_bytes};
  auto outcome = store_.put_kv(scope.tenant_id, scope.ns, key, sealed,
                               store::KvQuota{limits.max_keys, limits.max_total_bytes});
  if (outcome.stored) return;
  if (outcome.after.keys > outcome.before.keys && outcome.after.keys > limits.max_keys) {
    throw KvLimitExceeded("kv put of key " + shown(key) + " would make " +
                              std::to_string(outcome.after.keys) + " keys in " + scope_text(scope) +
                              ", over the limit max_keys = " + std::to_string(limits.max_keys) +
                              "; delete keys that are no longer needed",
                          "max_keys", outcome.after.keys, limits.max_keys);
  }
  throw KvLimitExceeded("kv put of key " + shown(key) + " would make " + scope_text(scope) +
                            " hold " + std::to_string(outcome.after.bytes) +
                            " bytes (keys and values), over the limit max_total_bytes = " +
                            std::to_string(limits.max_total_bytes) +
                            "; delete or shrink values that are no longer needed",
                        "max_total_bytes", outcome.after.bytes, limits.max_total_bytes);
}

bool KvService::remove(const KvScope& scope, std::string_view key) {
  check_key(key, "key");
  return store_.delete_kv(scope.tenant_id, scope.ns, key);
}

std::vector<std::string> KvService::list(const KvScope& scope, std::string_view prefix,
                                         int64_t limit, std::optional<std::string_view> after) {
  check_key(prefix, "prefix", /*allow_empty=*/true);
  if (limit < 1) {
    throw KvInvalid("kv list: the limit is " + std::to_string(limit) + "; ask for at least 1 key");
  }
  store::KvListing listing{std::string(prefix), std::nullopt, limit};
  if (after) listing.after = std::string(*after);
  return store_.list_kv_keys(scope.tenant_id, scope.ns, listing);
}

store::KvUsage KvService::usage(const KvScope& scope) {
  return store_.kv_usage(scope.tenant_id, scope.ns);
}

}  // namespace corral::broker
