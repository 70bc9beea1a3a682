// Sealing: how the broker keeps tenants' kv values and secrets unreadable at rest.
//
// One master key lives in <data-dir>/master.key (32 random bytes, mode 0600, created on first
// use). Each tenant's key is derived from it, and each value is sealed with
// XChaCha20-Poly1305-IETF under its tenant's key, with a fresh random nonce, and bound by the
// associated data to its place (purpose, tenant, namespace, key or name): a sealed value copied
// into another row, another namespace or another tenant does not open.
//
// Losing master.key loses every sealed value; back it up with the database, but not next to it
// if the backups may be read by others.
//
// A Sealer is immutable once made, so one may be shared by any number of threads.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace corral::broker {

// The master key cannot be created or read, or is not fit for use. The message names the file and
// what to do.
class MasterKeyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A sealed value does not open: it was altered, moved from another place, or sealed under another
// master key.
class UnsealError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where a sealed value belongs. Every field takes part in the associated data.
struct SealedPlace {
  std::string_view purpose;  // "kv" or "secret"
  std::string_view tenant_id;
  std::string_view ns;    // the kv namespace; "" for secrets
  std::string_view name;  // the kv key or the secret's name

  // For messages: "kv key "k" of script "s" for tenant "t"".
  std::string describe() const;
};

class Sealer {
 public:
  static constexpr size_t kMasterKeyBytes = 32;

  // Reads <data_dir>/master.key, creating it first if it does not exist. Throws MasterKeyError if
  // data_dir does not exist, if the file is not a regular file, if its mode lets its group or
  // others read or write it, if its size is not kMasterKeyBytes, or if it cannot be read or
  // written.
  static Sealer open_or_create(const std::filesystem::path& data_dir);

  // A sealer over a key the caller holds, for tests and tools. `origin` names where the key came
  // from, for messages.
  static Sealer from_key(std::string_view master_key, std::string origin);

  ~Sealer();
  Sealer(Sealer&&) noexcept;
  Sealer& operator=(Sealer&&) noexcept;
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;

  // The sealed form of `plaintext` for `place`: a format version byte, a 24-byte random nonce, the
  // ciphertext and a 16-byte tag; kSealOverhead bytes longer than the plaintext. Two seals of the
  // same plaintext differ.
  std::string seal(const SealedPlace& place, std::string_view plaintext) const;

  // The plaintext sealed for `place`. Throws UnsealError if `sealed` was not sealed for exactly
  // this place under this master key, or was changed since.
  std::string open(const SealedPlace& place, std::string_view sealed) const;

  static const size_t kSealOverhead;

 private:
  struct Key;
  Sealer(std::unique_ptr<Key> master, std::string origin);

  std::unique_ptr<Key> master_;
  std::string origin_;  // the master key's file, for messages
};

}  // namespace corral::broker
