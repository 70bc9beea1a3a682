// Tenants' secrets: values an admin sets per tenant for scripts to read (ctx.secrets.get), sealed
// at rest. Nothing here returns a value except get() and values(), which exist for the broker
// call and for redaction (redaction.h) respectively; the API never shows one.
//
// Thread-safe: it keeps no state of its own beyond the store and sealer it is given, which must
// outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/sealing.h"
#include "store/store.h"

namespace corral::broker {

// A secret's name or value is not acceptable; the message says which rule it broke.
class SecretInvalid : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class SecretsService {
 public:
  static constexpr size_t kMaxNameBytes = 64;
  static constexpr size_t kMaxValueBytes = 64 * 1024;

  SecretsService(store::Store& store, const Sealer& sealer) : store_(store), sealer_(sealer) {}

  // True if `name` is 1 to 64 of A-Z, a-z, 0-9, '_', '.', '-'.
  static bool valid_name(std::string_view name);

  // Creates or replaces the secret. The value is any bytes, 1 B to 64 KiB. Throws SecretInvalid
  // for a bad name or size, store::NotFound for an unknown tenant.
  void put(std::string_view tenant_id, std::string_view name, std::string_view value, int64_t at);

  // The secret's value, or none. Throws SecretInvalid for a bad name and UnsealError if the
  // stored value does not open.
  std::optional<std::string> get(std::string_view tenant_id, std::string_view name);

  // Names and update times, by name; never values.
  std::vector<store::SecretInfo> names(std::string_view tenant_id);

  // Returns whether the secret existed.
  bool remove(std::string_view tenant_id, std::string_view name);

  // Every secret of the tenant as (name, value), the input redact() needs. Throws UnsealError if
  // one does not open: redacting with a secret missing would leak it.
  std::vector<std::pair<std::string, std::string>> values(std::string_view tenant_id);

 private:
  store::Store& store_;
  const Sealer& sealer_;
};

}  // namespace corral::broker
