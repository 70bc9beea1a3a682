// The kv capability's durable side: a tenant's keys and JSON values, sealed at rest, within the
// limits the policy sets.
//
// A scope is a tenant and a namespace: "" for the tenant-wide store, or a script's name when the
// policy gives each script its own. Scopes never see each other's keys.
//
// Keys are stored in the clear (listing by prefix needs them), values sealed (sealing.h): keys
// should not hold anything secret. Keys are compared byte by byte, which for UTF-8 is code point
// order.
//
// Thread-safe: it keeps no state of its own beyond the store and sealer it is given, which must
// outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "broker/sealing.h"
#include "store/store.h"

namespace corral::broker {

struct KvScope {
  std::string_view tenant_id;
  std::string_view ns;  // "" for tenant-wide, else the script's name
};

// From the policy; every call that could grow the store takes them afresh, so a policy change
// applies to the next call.
struct KvLimits {
  int64_t max_key_bytes = 0;
  int64_t max_value_bytes = 0;
  int64_t max_keys = 0;         // per scope
  int64_t max_total_bytes = 0;  // per scope, keys and values together
};

// A key or value that is not acceptable whatever the limits: an empty key, one that is not valid
// UTF-8 or holds a NUL byte, an empty value, a listing limit below 1.
class KvInvalid : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A call would cross one of the KvLimits. The message names the limit, the amount the call needed
// and the amount allowed; the fields say the same for code.
class KvLimitExceeded : public std::runtime_error {
 public:
  KvLimitExceeded(const std::string& message, std::string limit, int64_t used, int64_t allowed)
      : std::runtime_error(message), limit(std::move(limit)), used(used), allowed(allowed) {}

  std::string limit;  // "max_key_bytes", "max_value_bytes", "max_keys" or "max_total_bytes"
  int64_t used;       // what the call would have made it
  int64_t allowed;
};

class KvService {
 public:
  KvService(store::Store& store, const Sealer& sealer) : store_(store), sealer_(sealer) {}

  // The value stored under key, or none. Throws KvInvalid for a malformed key and UnsealError if
  // the stored value does not open.
  std::optional<std::string> get(const KvScope& scope, std::string_view key);

  // Stores json_value under key, replacing any value there. Throws KvInvalid for a malformed key
  // or an empty value, KvLimitExceeded if the key or value is too long or the scope would hold too
  // many keys or bytes (nothing is changed then), and store::NotFound for an unknown tenant. The
  // count and byte checks are made in the same transaction as the write.
  void put(const KvScope& scope, std::string_view key, std::string_view json_value,
           const KvLimits& limits);

  // Returns whether the key existed. Throws KvInvalid for a malformed key.
  bool remove(const KvScope& scope, std::string_view key);

  // Up to `limit` keys that start with `prefix`, in key order, after the key `after` if given (the
  // last key of the previous page). Throws KvInvalid for a malformed prefix or a limit below 1.
  std::vector<std::string> list(const KvScope& scope, std::string_view prefix, int64_t limit,
                                std::optional<std::string_view> after = std::nullopt);

  store::KvUsage usage(const KvScope& scope);

 private:
  store::Store& store_;
  const Sealer& sealer_;
};

}  // namespace corral::broker
