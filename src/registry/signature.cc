#include "registry/signature.h"

#include <sodium.h>

#include <stdexcept>

#include "registry/registry.h"

namespace corral::registry {

namespace {

constexpr const char* kSignedWhat =
    "the signature must be a detached Ed25519 signature (64 bytes, standard base64) over the raw "
    "32-byte SHA-256 of the source";

Refusal invalid_signature(const std::string& detail, const std::string& hint) {
  return Refusal(403, "signature-invalid", "The version's signature is not valid", detail, hint);
}

std::optional<std::vector<uint8_t>> from_base64(std::string_view text) {
  std::vector<uint8_t> bytes(text.size());
  size_t length = 0;
  if (sodium_base642bin(bytes.data(), bytes.size(), text.data(), text.size(), nullptr, &length,
                        nullptr, sodium_base64_VARIANT_ORIGINAL) != 0) {
    return std::nullopt;
  }
  bytes.resize(length);
  return bytes;
}

std::string key_list(const std::vector<policy::PublicKey>& keys) {
  std::string list;
  for (const auto& key : keys) list += (list.empty() ? "" : ", ") + key.base64;
  return list;
}

}  // namespace

Digest sha256(std::string_view text) {
  Digest digest;
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(text.data()),
                     text.size());
  return digest;
}

std::string to_hex(const Digest& digest) {
  char hex[2 * sizeof(Digest) + 1];
  sodium_bin2hex(hex, sizeof hex, digest.data(), digest.size());
  return hex;
}

const policy::PublicKey& verify_signature(const Signature& signature, const Digest& digest,
                                          const std::vector<policy::PublicKey>& keys,
                                          const std::string& where) {
  // Thread-safe and idempotent; verification itself needs no state, but libsodium asks for it.
  static const bool sodium_ready = sodium_init() >= 0;
  if (!sodium_ready) throw std::runtime_error("libsodium could not be initialised");

  auto bytes = from_base64(signature.base64);
  if (!bytes || bytes->size() != crypto_sign_BYTES) {
    throw invalid_signature(
        "the signature sent for " + where + " is " +
            (bytes ? std::to_string(bytes->size()) + " bytes, not " +
                         std::to_string(crypto_sign_BYTES)
                   : std::string("not standard base64")),
        std::string(kSignedWhat) + "; `corral publish --sign NAME.key` makes one");
  }
  std::vector<const policy::PublicKey*> candidates;
  if (signature.key_id) {
    policy::PublicKey named;
    try {
      named = policy::PublicKey::parse(*signature.key_id);
    } catch (const std::invalid_argument& error) {
      throw invalid_signature("key_id sent for " + where + " is malformed: " + error.what(),
                              "send the signer's public key as NAME.pub holds it, or leave "
                              "key_id out to try every key of the tenant");
    }
    for (const auto& key : keys)
      if (key == named) candidates.push_back(&key);
    if (candidates.empty()) {
      throw invalid_signature(
          where + " is signed by key " + named.base64 +
              ", which is not one of the tenant's public keys in the policy (" +
              (keys.empty() ? std::string("it lists none") : key_list(keys)) + ")",
          "sign with a key the policy lists, or ask an operator to add this public key to the "
          "tenant's governance.public_keys");
    }
  } else {
    for (const auto& key : keys) candidates.push_back(&key);
  }
  for (const policy::PublicKey* key : candidates) {
    if (crypto_sign_verify_detached(bytes->data(), digest.data(), digest.size(),
                                    key->bytes.data()) == 0) {
      return *key;
    }
  }
  std::string by = signature.key_id ? "key " + *signature.key_id
                                    : "any of the tenant's " + std::to_string(keys.size()) +
                                          " public keys (" + key_list(keys) + ")";
  throw invalid_signature(
      "the signature sent for " + where + " does not verify with " + by +
          " over the source's SHA-256 " + to_hex(digest) +
          ": it was made for another source, or with another key",
      "sign exactly the source you publish (`corral publish FILE --sign NAME.key` does), with "
      "a key the policy lists for the tenant");
}

}  // namespace corral::registry
