// Who is calling: bearer tokens, their roles, and the admin token corrald makes on its first start.
// A token's secret is shown once, when it is made; the store keeps only its SHA-256, so a copy of
// the database does not let anyone call the API.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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

// Principals of tokens checked recently, by secret hash, so that a busy caller (or a flood of
// requests that will be refused) does not cost two store lookups per request.
//
// Contract:
// - Only tokens that authenticated are kept; an unknown, expired or revoked token always goes to
//   the store (and to the audit trail).
// - An entry lasts at most `ttl_ms`, and never past its token's expiry. A token revoked through
//   this corrald is dropped at once (forget_token). A token revoked through another corrald that
//   shares the store is still taken here for at most ttl_ms (docs/operations.md, "Token cache").
// - A lookup that races a revocation cannot put the revoked token back: remember() is given the
//   generation() read before the store was asked, and is ignored if a token was forgotten since.
// - Bounded: at most max_entries; when full, expired entries are dropped, and if none were, all
//   are (the next requests refill it from the store).
// - ttl_ms 0 turns the cache off: find() finds nothing and remember() keeps nothing.
// - Thread-safe: one mutex, held for O(1) work (O(entries) in forget_token and when full).
class TokenCache {
 public:
  struct Options {
    int64_t ttl_ms = 5'000;
    size_t max_entries = 10'000;
  };
  TokenCache() : TokenCache(Options{}) {}
  explicit TokenCache(Options options) : options_(options) {}
  TokenCache(const TokenCache&) = delete;
  TokenCache& operator=(const TokenCache&) = delete;

  std::optional<Principal> find(const std::string& secret_hash, int64_t now_ms);
  uint64_t generation() const;
  void remember(const std::string& secret_hash, const Principal& principal,
                std::optional<int64_t> token_expires_at, int64_t now_ms,
                uint64_t generation_before_lookup);
  void forget_token(std::string_view token_id);

  // Lookups so far that found a live entry (hits) or not (misses), and the entries held now.
  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    size_t entries = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    Principal principal;
    int64_t valid_until_ms = 0;
  };
  const Options options_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  uint64_t generation_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

// Checks an Authorization header ("Bearer <secret>") against the store at time now_ms; with a
// cache, a token that authenticated within its TTL is taken from it instead.
std::variant<Principal, Unauthenticated> authenticate(store::Store& store, std::string_view header,
                                                      int64_t now_ms, TokenCache* cache = nullptr);

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
