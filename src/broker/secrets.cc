#include "broker/secrets.h"

namespace corral::broker {

namespace {

constexpr std::string_view kPurpose = "secret";

SealedPlace place_of(std::string_view tenant_id, std::string_view name) {
  return SealedPlace{kPurpose, tenant_id, "", name};
}

void check_name(std::string_view name) {
  if (SecretsService::valid_name(name)) return;
  // The name is not shown when it is long: it may be a value pasted into the wrong field.
  std::string shown = name.size() <= SecretsService::kMaxNameBytes
                          ? " \"" + std::string(name) + "\""
                          : " of " + std::to_string(name.size()) + " bytes";
  throw SecretInvalid("the secret name" + shown +
                      " is not valid; use 1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and "
                      "'-'");
}

}  // namespace

bool SecretsService::valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void SecretsService::put(std::string_view tenant_id, std::string_view name, std::string_view value,
                         int64_t at) {
  check_name(name);
  if (value.empty() || value.size() > kMaxValueBytes) {
    throw SecretInvalid("the value of secret \"" + std::string(name) + "\" is " +
                        std::to_string(value.size()) + " bytes; a secret holds 1 to " +
                        std::to_string(kMaxValueBytes) + " bytes");
  }
  store_.put_secret(tenant_id, name, sealer_.seal(place_of(tenant_id, name), value), at);
}

std::optional<std::string> SecretsService::get(std::string_view tenant_id, std::string_view name) {
  check_name(name);
  auto sealed = store_.find_secret(tenant_id, name);
  if (!sealed) return std::nullopt;
  return sealer_.open(place_of(tenant_id, name), *sealed);
}

std::vector<store::SecretInfo> SecretsService::names(std::string_view tenant_id) {
  return store_.list_secrets(tenant_id);
}

bool SecretsService::remove(std::string_view tenant_id, std::string_view name) {
  check_name(name);
  return store_.delete_secret(tenant_id, name);
}

std::vector<std::pair<std::string, std::string>> SecretsService::values(
    std::string_view tenant_id) {
  std::vector<std::pair<std::string, std::string>> all;
  for (const auto& info : store_.list_secrets(tenant_id)) {
    // A secret deleted between the listing and the read has nothing left to leak.
    auto sealed = store_.find_secret(tenant_id, info.name);
    if (!sealed) continue;
    all.emplace_back(info.name, sealer_.open(place_of(tenant_id, info.name), *sealed));
  }
  return all;
}

}  // namespace corral::broker
