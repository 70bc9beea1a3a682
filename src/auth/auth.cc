#include "auth/auth.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace corral::auth {

namespace {

constexpr std::string_view kRoles[] = {"admin", "publisher", "reviewer", "invoker", "auditor"};

std::string to_hex(const unsigned char* bytes, size_t size) {
  std::string hex(size * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), bytes, size);
  hex.pop_back();
  return hex;
}

void ensure_sodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) throw std::runtime_error("libsodium cannot be initialised; tokens cannot be made");
}

// Written under a temporary name and renamed, so the file is never seen half-written; O_EXCL so a
// token file someone left there is not silently replaced.
void write_secret_file(const std::filesystem::path& file, const std::string& secret) {
  std::filesystem::path partial = file.string() + ".partial";
  unlink(partial.c_str());
  int fd = open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  auto fail = [&](const char* step) {
    std::string why = std::strerror(errno);
    if (fd >= 0) close(fd);
    throw std::runtime_error("cannot " + std::string(step) + " " + partial.string() + ": " + why +
                             "; make the data directory writable, or set CORRAL_ADMIN_TOKEN");
  };
  if (fd < 0) fail("create");
  std::string line = secret + "\n";
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) fail("write");
  if (fsync(fd) != 0) fail("sync");
  close(fd);
  fd = -1;
  if (rename(partial.c_str(), file.c_str()) != 0) fail("rename");
}

}  // namespace

std::string_view to_string(Role role) { return kRoles[static_cast<int>(role)]; }

std::optional<Role> parse_role(std::string_view name) {
  for (size_t i = 0; i < std::size(kRoles); ++i) {
    if (kRoles[i] == name) return static_cast<Role>(i);
  }
  return std::nullopt;
}

std::string new_secret() {
  ensure_sodium();
  unsigned char bytes[32];
  randombytes_buf(bytes, sizeof bytes);
  return "corral_" + to_hex(bytes, sizeof bytes);
}

std::string hash_secret(std::string_view secret) {
  ensure_sodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  return to_hex(digest, sizeof digest);
}

std::optional<Principal> TokenCache::find(const std::string& secret_hash, int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto found = entries_.find(secret_hash);
  if (found == entries_.end() || found->second.valid_until_ms <= now_ms) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  return found->second.principal;
}

TokenCache::Stats TokenCache::stats() const {
  std::lock_guard lock(mutex_);
  return {hits_, misses_, entries_.size()};
}

uint64_t TokenCache::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

void TokenCache::remember(const std::string& secret_hash, const Principal& principal,
                          std::optional<int64_t> token_expires_at, int64_t now_ms,
                          uint64_t generation_before_lookup) {
  if (options_.ttl_ms <= 0 || options_.max_entries == 0) return;
  int64_t valid_until = now_ms + options_.ttl_ms;
  if (token_expires_at) valid_until = std::min(valid_until, *token_expires_at);
  if (valid_until <= now_ms) return;
  std::lock_guard lock(mutex_);
  if (generation_ != generation_before_lookup) return;
  if (entries_.size() >= options_.max_entries && !entries_.contains(secret_hash)) {
    std::erase_if(entries_,
                  [&](const auto& entry) { return entry.second.valid_until_ms <= now_ms; });
    if (entries_.size() >= options_.max_entries) entries_.clear();
  }
  entries_[secret_hash] = Entry{principal, valid_until};
}

void TokenCache::forget_token(std::string_view token_id) {
  std::lock_guard lock(mutex_);
  ++generation_;
  std::erase_if(entries_,
                [&](const auto& entry) { return entry.second.principal.token_id == token_id; });
}

namespace {

constexpr std::string_view kBearer = "Bearer ";

std::optional<std::string_view> bearer_secret(std::string_view header) {
  if (header.size() <= kBearer.size() || header.substr(0, kBearer.size()) != kBearer)
    return std::nullopt;
  return header.substr(kBearer.size());
}

}  // namespace

namespace {

// A token's last use is kept to within a minute, so that a busy token costs one small write a
// minute (and none while the token cache answers for it), not one per request.
constexpr int64_t kLastUsedResolutionMs = 60'000;

// Best effort: a store that cannot take the write (a full disk) still lets the token in.
void note_use(store::Store& store, const store::Token& token, int64_t now_ms) {
  if (token.last_used_at && now_ms - *token.last_used_at < kLastUsedResolutionMs) return;
  try {
    store.note_token_used(token.id, now_ms);
  } catch (const store::StoreError&) {
  }
}

}  // namespace

std::variant<Principal, Unauthenticated> authenticate(store::Store& store, std::string_view header,
                                                      int64_t now_ms, TokenCache* cache) {
  if (header.empty()) {
    return Unauthenticated{"the request has no Authorization header",
                           "send \"Authorization: Bearer <token>\"; an admin makes tokens with "
                           "POST /v1/tenants/{tenant}/tokens",
                           ""};
  }
  auto secret = bearer_secret(header);
  if (!secret) {
    return Unauthenticated{"the Authorization header is not of the form \"Bearer <token>\"",
                           "send \"Authorization: Bearer <token>\"", ""};
  }
  std::string hash = hash_secret(*secret);
  uint64_t generation = 0;
  if (cache) {
    if (auto cached = cache->find(hash, now_ms)) return *cached;
    generation = cache->generation();
  }
  auto token = store.find_token_by_hash(hash);
  if (!token) {
    return Unauthenticated{"the bearer token is not known to this server",
                           "check that the whole token was copied; ask an admin for a new one", ""};
  }
  if (token->revoked_at) {
    return Unauthenticated{"token " + token->id + " has been revoked",
                           "ask an admin for a new token", token->id};
  }
  if (token->expires_at && *token->expires_at <= now_ms) {
    return Unauthenticated{"token " + token->id + " has expired", "ask an admin for a new token",
                           token->id};
  }
  auto role = parse_role(token->role);
  if (!role) {
    return Unauthenticated{"token " + token->id + " has the unknown role \"" + token->role + "\"",
                           "the database was edited by hand; ask an admin for a new token",
                           token->id};
  }
  Principal principal{token->id, *role, token->tenant_id, "", token->subject};
  if (!principal.tenant_id.empty()) {
    auto tenant = store.find_tenant(principal.tenant_id);
    if (!tenant) {
      return Unauthenticated{"token " + token->id + " belongs to a tenant that no longer exists",
                             "ask an admin for a new token", token->id};
    }
    principal.tenant_name = tenant->name;
  }
  note_use(store, *token, now_ms);
  if (cache) cache->remember(hash, principal, token->expires_at, now_ms, generation);
  return principal;
}

std::optional<Bootstrap> bootstrap_admin(store::Store& store, audit::AuditTrail& audit,
                                         const std::filesystem::path& data_dir,
                                         const char* given_secret) {
  int64_t now = store::now_ms();
  if (given_secret && *given_secret) {
    std::string secret = given_secret;
    if (secret.size() < 32) {
      throw std::runtime_error("CORRAL_ADMIN_TOKEN is " + std::to_string(secret.size()) +
                               " characters long; use at least 32 random characters (for example: "
                               "openssl rand -hex 32)");
    }
    std::string hash = hash_secret(secret);
    if (store.find_token_by_hash(hash)) return std::nullopt;
    store::Token token;
    store.atomically([&] {
      token = store.insert_token({.tenant_id = "",
                                  .role = "admin",
                                  .secret_hash = hash,
                                  .created_at = now,
                                  .expires_at = std::nullopt,
                                  .created_by = "bootstrap",
                                  .subject = "CORRAL_ADMIN_TOKEN"});
      audit.record("bootstrap", "", "token.create", "tokens/" + token.id, audit::Decision::allow,
                   "admin token supplied by CORRAL_ADMIN_TOKEN");
    });
    return Bootstrap{token.id, "CORRAL_ADMIN_TOKEN", {}};
  }
  if (store.count_tokens() > 0) return std::nullopt;
  std::string secret = new_secret();
  std::filesystem::path file = data_dir / "admin.token";
  // The file first: a token stored but never written down would lock everyone out.
  write_secret_file(file, secret);
  store::Token token;
  store.atomically([&] {
    token = store.insert_token({.tenant_id = "",
                                .role = "admin",
                                .secret_hash = hash_secret(secret),
                                .created_at = now,
                                .expires_at = std::nullopt,
                                .created_by = "bootstrap",
                                .subject = "bootstrap"});
    audit.record("bootstrap", "", "token.create", "tokens/" + token.id, audit::Decision::allow,
                 "first start with an empty store: admin token written to " + file.string());
  });
  return Bootstrap{token.id, "generated", file};
}

}  // namespace corral::auth
