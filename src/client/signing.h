// Publisher keys for signed versions (docs/api.md, "Signed versions"): `corral keygen` makes a key
// pair, `corral publish --sign NAME.key` signs the source it sends. The server checks what these
// make against the policy's governance.public_keys (src/registry/signature.h has that contract).
//
// Key files are one line of standard base64 each, so that NAME.pub can be pasted into the policy
// as it is:
//   NAME.key  the 64-byte libsodium Ed25519 secret key (seed, then public key), mode 0600
//   NAME.pub  the 32-byte public key
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace corral::client {

// A key file that cannot be written or used; what() says what and where, hint what to do.
class KeyFileError : public std::runtime_error {
 public:
  KeyFileError(const std::string& message, std::string hint)
      : std::runtime_error(message), hint(std::move(hint)) {}
  std::string hint;
};

struct KeyFiles {
  std::string secret_path;  // NAME.key
  std::string public_path;  // NAME.pub
  std::string public_key;   // base64, as NAME.pub holds it
};

// Makes a new key pair and writes NAME.key (created 0600) and NAME.pub. Refuses to replace either
// file if it exists, so that a key in use is never lost. Throws KeyFileError.
KeyFiles write_key_pair(const std::string& name);

class SigningKey {
 public:
  // Reads a NAME.key file. Throws KeyFileError for a file that is missing or unreadable, that
  // holds a public key (NAME.pub) instead, or that is not a well-formed secret key.
  static SigningKey read(const std::string& path);

  // The public key, base64: what the policy must list, and what publish sends as key_id.
  const std::string& public_key() const { return public_key_; }

  // The base64 detached Ed25519 signature of the raw 32-byte SHA-256 of `source`.
  std::string sign_source(std::string_view source) const;

 private:
  std::string secret_;  // 64 bytes
  std::string public_key_;
};

}  // namespace corral::client
