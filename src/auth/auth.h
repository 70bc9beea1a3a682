// Who is calling: bearer tokens, their roles, and the admin token corrald makes on its first start.
// A token's secret is shown once, when it is made; the store keeps only its SHA-256, so a copy of
// the database does not let anyone call the API.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "audit/audit.h"
#include "store/store.h"

namespace corral::auth {

enum class Role { admin, publisher, reviewer, invoker, auditor };

std::string_view to_string(Role role);
std::optional<Role> parse_role(std::string_view name);
inline constexpr const char* kRoleNames = "admin, publisher, reviewer, invoker or auditor";

// A fresh secret: "corral_" and 64 hex digits (256 random bits from libsodium).
std::string new_secret();

// SHA-256 of the secret, lowercase hex: what the store keeps and looks tokens up by.
std::string hash_secret(std::string_view secret);

// The caller of one request, once its token has been checked.
struct Principal {
  std::string token_id;
  Role role = Role::invoker;
  std::string tenant_id;  // empty for admins: they belong to no tenant and see all
  std::string tenant_name;
  std::string subject;
};

// Why a request is not authenticated: said in the 401 and recorded in the audit trail.
struct Unauthenticated {
  std::string detail;
  std::string hint;
  std::string token_id;  // when the token is known but expired or revoked; else empty
};

// Checks an Authorization header ("Bearer <secret>") against the store at time now_ms.
std::variant<Principal, Unauthenticated> authenticate(store::Store& store, std::string_view header,
                                                      int64_t now_ms);

struct Bootstrap {
  std::string token_id;
  std::string from;  // "generated" (written to file) or "CORRAL_ADMIN_TOKEN"
  std::filesystem::path file;
};

// On a store without tokens, makes the first admin token: the secret given (from
// CORRAL_ADMIN_TOKEN) or a new one written to <data_dir>/admin.token with mode 0600. A given
// secret is also stored on later starts if it is not there yet, so an operator can always get in
// with it. Returns what was made, or nothing. Throws std::runtime_error saying what failed.
std::optional<Bootstrap> bootstrap_admin(store::Store& store, audit::AuditTrail& audit,
                                         const std::filesystem::path& data_dir,
                                         const char* given_secret);

}  // namespace corral::auth
