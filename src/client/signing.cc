#include "client/signing.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

namespace corral::client {

namespace {

void require_sodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) throw std::runtime_error("libsodium could not be initialised");
}

std::string to_base64(const unsigned char* bytes, size_t size) {
  std::string text(sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(text.data(), text.size(), bytes, size, sodium_base64_VARIANT_ORIGINAL);
  text.resize(std::strlen(text.c_str()));
  return text;
}

std::optional<std::string> from_base64(std::string_view text) {
  std::string bytes(text.size(), '\0');
  size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), text.data(),
                        text.size(), nullptr, &length, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return std::nullopt;
  }
  bytes.resize(length);
  return bytes;
}

// Creates `path` with `mode`, failing if it exists, and writes `line` and a newline to it.
void write_new_file(const std::string& path, const std::string& line, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    throw KeyFileError("cannot create '" + path + "': " + std::strerror(errno),
                       "check that its directory exists and is writable");
  }
  std::string text = line + "\n";
  bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int saved = errno;
  bool closed = ::close(fd) == 0;
  if (!written || !closed) {
    ::unlink(path.c_str());
    throw KeyFileError("cannot write '" + path + "': " + std::strerror(written ? errno : saved),
                       "check the free space of its file system");
  }
}

}  // namespace

KeyFiles write_key_pair(const std::string& name) {
  require_sodium();
  KeyFiles files{name + ".key", name + ".pub", ""};
  for (const auto& path : {files.secret_path, files.public_path}) {
    struct stat existing;
    if (::lstat(path.c_str(), &existing) == 0) {
      throw KeyFileError("'" + path + "' exists already; corral keygen never replaces a key",
                         "choose another --out NAME, or move the old key files away first");
    }
  }
  unsigned char public_key[crypto_sign_PUBLICKEYBYTES];
  unsigned char secret_key[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(public_key, secret_key);
  std::string secret_text = to_base64(secret_key, sizeof secret_key);
  sodium_memzero(secret_key, sizeof secret_key);
  files.public_key = to_base64(public_key, sizeof public_key);
  // 0600 from the start (O_CREAT with the mode, whatever the umask adds), never chmod'ed later.
  write_new_file(files.secret_path, secret_text, 0600);
  sodium_memzero(secret_text.data(), secret_text.size());
  try {
    write_new_file(files.public_path, files.public_key, 0644);
  } catch (...) {
    ::unlink(files.secret_path.c_str());  // half a key pair is of no use
    throw;
  }
  return files;
}

SigningKey SigningKey::read(const std::string& path) {
  require_sodium();
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw KeyFileError("cannot read the signing key '" + path + "': " + std::strerror(errno),
                       "give the NAME.key file that `corral keygen --out NAME` wrote");
  }
  std::ostringstream content;
  content << file.rdbuf();
  std::string text = content.str();
  if (text.size() > 4096) {
    throw KeyFileError("'" + path + "' is not a corral signing key: it is " +
                           std::to_string(text.size()) + " bytes, a key file is one short line",
                       "give the NAME.key file that `corral keygen --out NAME` wrote");
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.erase(text.begin());
  auto bytes = from_base64(text);
  if (bytes && bytes->size() == crypto_sign_PUBLICKEYBYTES) {
    throw KeyFileError("'" + path + "' holds a public key, which cannot sign",
                       "give the secret key file: NAME.key beside NAME.pub");
  }
  if (!bytes || bytes->size() != crypto_sign_SECRETKEYBYTES) {
    throw KeyFileError("'" + path + "' is not a corral signing key: " +
                           (bytes ? "it holds " + std::to_string(bytes->size()) + " bytes, not " +
                                        std::to_string(crypto_sign_SECRETKEYBYTES)
                                  : std::string("it is not one line of standard base64")),
                       "give the NAME.key file that `corral keygen --out NAME` wrote");
  }
  // A libsodium secret key is the seed followed by its public key; a key whose halves disagree is
  // damaged, and would sign with a key other than the one it names.
  unsigned char public_key[crypto_sign_PUBLICKEYBYTES];
  unsigned char secret_key[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair(public_key, secret_key,
                           reinterpret_cast<const unsigned char*>(bytes->data()));
  bool consistent = sodium_memcmp(secret_key, bytes->data(), sizeof secret_key) == 0;
  sodium_memzero(secret_key, sizeof secret_key);
  if (!consistent) {
    sodium_memzero(bytes->data(), bytes->size());
    throw KeyFileError("'" + path + "' is damaged: its public half does not match its secret half",
                       "restore the key from a backup, or make a new one with corral keygen and "
                       "have the operator list its NAME.pub in the policy");
  }
  SigningKey key;
  key.secret_ = std::move(*bytes);
  key.public_key_ = to_base64(public_key, sizeof public_key);
  return key;
}

std::string SigningKey::sign_source(std::string_view source) const {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(source.data()), source.size());
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_detached(signature, nullptr, digest, sizeof digest,
                       reinterpret_cast<const unsigned char*>(secret_.data()));
  return to_base64(signature, sizeof signature);
}

}  // namespace corral::client
