// Signed versions (issue 5, "Signatures"): a publisher signs what the registry stores, so that a
// stolen publisher token alone cannot put code into production for a tenant that requires
// signatures.
//
// Contract:
// - What is signed is the version's digest: the raw 32 bytes of the SHA-256 of the source, the
//   same digest the registry stores as hex (`sha256`). The manifest is not signed: it only asks
//   for capabilities, and the policy decides those whoever signed.
// - The signature is a detached Ed25519 signature (libsodium crypto_sign_detached), sent as
//   standard base64 of its 64 bytes; keys are the policy's `governance.public_keys`, standard
//   base64 of 32 bytes (as `corral keygen` writes NAME.pub).
// - key_id, when given, is the signer's public key in that same form: only that key is tried, and
//   one the tenant does not list is refused by name. Without it every listed key is tried.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/grants.h"

namespace corral::registry {

using Digest = std::array<uint8_t, 32>;

// The SHA-256 of a source, raw and as the lower-case hex the registry stores.
Digest sha256(std::string_view text);
std::string to_hex(const Digest& digest);

// A signature as a publish request carries it.
struct Signature {
  std::string base64;                 // 64 bytes, standard base64
  std::optional<std::string> key_id;  // the signer's public key, standard base64
};

// Checks `signature` over `digest` against `keys`, and returns the key that verifies it.
// `where` names the version for messages ("version 3 of script \"orders\" of tenant \"acme\"").
// Throws Refusal 403 "signature-invalid" saying which of these it is: the signature is not base64
// of 64 bytes; key_id is malformed or not one of `keys`; no key (or not key_id) verifies it, which
// is what a signature of another source, or by another key, looks like.
const policy::PublicKey& verify_signature(const Signature& signature, const Digest& digest,
                                          const std::vector<policy::PublicKey>& keys,
                                          const std::string& where);

}  // namespace corral::registry
