#include "broker/sealing.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

namespace corral::broker {

namespace {

constexpr unsigned char kFormatVersion = 1;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kKeyBytes = crypto_aead_xchacha20poly1305_ietf_KEYBYTES;
static_assert(kKeyBytes == Sealer::kMasterKeyBytes);

// Tenant keys are keyed BLAKE2b (a PRF) of this context and the tenant id, under the master key.
// crypto_kdf_derive_from_key would do the same, but it names subkeys by a 64-bit number, and
// tenant ids are 128-bit strings: hashing the id itself avoids keeping a second numbering. The
// context fixes the purpose, so a future key derived for something else cannot collide with
// these; the id runs to the end of the message, so no two ids share an input.
constexpr std::string_view kTenantKeyContext = "corral/tenant-sealing-key/v1";

void ensure_sodium() {
  if (sodium_init() < 0) {
    throw std::runtime_error("libsodium could not initialise (no usable random source?)");
  }
}

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Each field with its length first, so that ("ab", "c") and ("a", "bc") differ.
std::string associated_data(const SealedPlace& place) {
  std::string data(1, static_cast<char>(kFormatVersion));
  for (std::string_view field : {place.purpose, place.tenant_id, place.ns, place.name}) {
    uint64_t length = field.size();
    for (int i = 0; i < 8; ++i) data.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
    data.append(field);
  }
  return data;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now, reporting the error that a deferred close would lose.
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

std::string errno_text() { return std::strerror(errno); }

}  // namespace

// The master key, in memory that libsodium guards (no swap, guard pages, wiped on free).
struct Sealer::Key {
  Key() : bytes(static_cast<unsigned char*>(sodium_malloc(kKeyBytes))) {
    if (bytes == nullptr) throw std::bad_alloc();
  }
  ~Key() { sodium_free(bytes); }
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;

  unsigned char* bytes;
};

const size_t Sealer::kSealOverhead = 1 + kNonceBytes + kTagBytes;

std::string SealedPlace::describe() const {
  std::string text = purpose == "secret" ? "secret " + quoted(name)
                                         : std::string(purpose) + " key " + quoted(name);
  if (!ns.empty()) text += " of script " + quoted(ns);
  return text + " for tenant " + quoted(tenant_id);
}

namespace {

// Reads the key from an open master key file after checking that it is fit to use.
void read_master_key(int fd, const std::filesystem::path& file, unsigned char* key) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    throw MasterKeyError("cannot inspect the master key " + file.string() + ": " + errno_text());
  }
  if (!S_ISREG(info.st_mode)) {
    throw MasterKeyError("the master key " + file.string() +
                         " is not a regular file; move whatever is there aside and restore the "
                         "key file from a backup");
  }
  if ((info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    throw MasterKeyError("refusing to use the master key " + file.string() + ": its mode is " +
                         mode_text(info.st_mode) +
                         ", which lets its group or other users read or change it, and it unlocks "
                         "every tenant's kv values and secrets. Run `chmod 600 " +
                         file.string() +
                         "`, consider whether it was copied while exposed, and start again.");
  }
  if (info.st_size != static_cast<off_t>(kKeyBytes)) {
    throw MasterKeyError(
        "the master key " + file.string() + " is " + std::to_string(info.st_size) +
        " bytes long, but a master key is exactly " + std::to_string(kKeyBytes) +
        " bytes: the file is damaged or was replaced. Restore it from the backup taken with the "
        "database; without the right key, sealed kv values and secrets cannot be read. Delete it "
        "to start afresh only if you mean to lose them all.");
  }
  size_t done = 0;
  while (done < kKeyBytes) {
    ssize_t got = ::read(fd, key + done, kKeyBytes - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      throw MasterKeyError("cannot read the master key " + file.string() + ": " +
                           (got < 0 ? errno_text() : std::string("it ended early")) +
                           "; check the disk and the file");
    }
    done += static_cast<size_t>(got);
  }
}

// Writes a new random key to `file` unless one appears there first. The key is written and synced
// under a temporary name and then linked into place, so that no reader ever sees a partial key,
// and of two processes creating it at once exactly one wins. Returns false if another did.
bool create_master_key(const std::filesystem::path& file) {
  auto dir = file.parent_path();
  std::array<unsigned char, 8> suffix{};
  randombytes_buf(suffix.data(), suffix.size());
  std::string hex(suffix.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), suffix.data(), suffix.size());
  hex.pop_back();
  auto temporary = dir / (file.filename().string() + ".new-" + hex);

  auto fail = [&](const std::string& doing) {
    std::string reason = errno_text();
    ::unlink(temporary.c_str());
    throw MasterKeyError("cannot create the master key " + file.string() + " (" + doing +
                         " failed: " + reason +
                         "); check that the data directory is writable by this user and the disk "
                         "has room");
  };

  Fd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd.get() < 0) fail("creating " + temporary.string());
  // The umask can only take permissions away, but make the mode exact all the same.
  if (::fchmod(fd.get(), 0600) != 0) fail("setting its mode to 0600");
  std::array<unsigned char, kKeyBytes> key{};
  randombytes_buf(key.data(), key.size());
  size_t done = 0;
  while (done < key.size()) {
    ssize_t wrote = ::write(fd.get(), key.data() + done, key.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) {
      sodium_memzero(key.data(), key.size());
      fail("writing it");
    }
    done += static_cast<size_t>(wrote);
  }
  sodium_memzero(key.data(), key.size());
  if (::fsync(fd.get()) != 0) fail("syncing it to disk");
  if (fd.close() != 0) fail("closing it");

  bool created = ::link(temporary.c_str(), file.c_str()) == 0;
  if (!created && errno != EEXIST) fail("linking it into place");
  ::unlink(temporary.c_str());
  // The new name must survive a power cut too, or the data sealed under it would be lost.
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) fail("syncing the data directory");
  return created;
}

}  // namespace

Sealer::Sealer(std::unique_ptr<Key> master, std::string origin)
    : master_(std::move(master)), origin_(std::move(origin)) {}
Sealer::~Sealer() = default;
Sealer::Sealer(Sealer&&) noexcept = default;
Sealer& Sealer::operator=(Sealer&&) noexcept = default;

Sealer Sealer::open_or_create(const std::filesystem::path& data_dir) {
  ensure_sodium();
  auto file = data_dir / "master.key";
  std::error_code error;
  if (!std::filesystem::is_directory(data_dir, error)) {
    throw MasterKeyError("cannot use the master key " + file.string() + ": the data directory " +
                         data_dir.string() +
                         " does not exist; open the store first (it creates the directory) or "
                         "create it with mode 0700");
  }
  auto key = std::make_unique<Key>();
  // Twice at most: if another process creates the key between our look and our create, the
  // second look finds its key.
  for (int attempt = 0; attempt < 2; ++attempt) {
    Fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() >= 0) {
      read_master_key(fd.get(), file, key->bytes);
      return Sealer(std::move(key), file.string());
    }
    if (errno == ELOOP) {
      throw MasterKeyError("refusing to use the master key " + file.string() +
                           ": it is a symbolic link, which could point it anywhere; put the key "
                           "file itself there (mode 0600)");
    }
    if (errno != ENOENT) {
      throw MasterKeyError("cannot open the master key " + file.string() + ": " + errno_text() +
                           "; check that this user owns it and can read it");
    }
    create_master_key(file);
  }
  throw MasterKeyError("the master key " + file.string() +
                       " was created but then disappeared; is another program removing files "
                       "from the data directory?");
}

Sealer Sealer::from_key(std::string_view master_key, std::string origin) {
  ensure_sodium();
  if (master_key.size() != kKeyBytes) {
    throw MasterKeyError("the master key from " + origin + " is " +
                         std::to_string(master_key.size()) + " bytes long; it must be exactly " +
                         std::to_string(kKeyBytes));
  }
  auto key = std::make_unique<Key>();
  std::memcpy(key->bytes, master_key.data(), kKeyBytes);
  return Sealer(std::move(key), std::move(origin));
}

namespace {

// A tenant's key for the duration of one call, wiped when it goes.
class TenantKey {
 public:
  TenantKey(const unsigned char* master, std::string_view tenant_id) {
    std::string message(kTenantKeyContext);
    message.push_back('\0');
    message.append(tenant_id);
    crypto_generichash(bytes_.data(), bytes_.size(),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       master, kKeyBytes);
  }
  ~TenantKey() { sodium_memzero(bytes_.data(), bytes_.size()); }
  TenantKey(const TenantKey&) = delete;
  TenantKey& operator=(const TenantKey&) = delete;
  const unsigned char* data() const { return bytes_.data(); }

 private:
  std::array<unsigned char, kKeyBytes> bytes_{};
};

const unsigned char* bytes_of(std::string_view text) {
  return reinterpret_cast<const unsigned char*>(text.data());
}

}  // namespace

std::string Sealer::seal(const SealedPlace& place, std::string_view plaintext) const {
  TenantKey key(master_->bytes, place.tenant_id);
  std::string ad = associated_data(place);
  std::string sealed(kSealOverhead + plaintext.size(), '\0');
  auto out = reinterpret_cast<unsigned char*>(sealed.data());
  out[0] = kFormatVersion;
  unsigned char* nonce = out + 1;
  // 192-bit random nonces: collisions are negligible however many values one key seals, which is
  // why XChaCha rather than ChaCha (96-bit nonces) is used.
  randombytes_buf(nonce, kNonceBytes);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + kNonceBytes, &written, bytes_of(plaintext),
                                             plaintext.size(), bytes_of(ad), ad.size(), nullptr,
                                             nonce, key.data());
  sealed.resize(1 + kNonceBytes + written);
  return sealed;
}

std::string Sealer::open(const SealedPlace& place, std::string_view sealed) const {
  std::string where = "cannot open the sealed " + place.describe();
  if (sealed.size() < kSealOverhead) {
    throw UnsealError(where + ": the stored value is " + std::to_string(sealed.size()) +
                      " bytes, too short to be a sealed value; it was truncated or altered. "
                      "Write the value again, or restore the database from a backup.");
  }
  auto in = bytes_of(sealed);
  if (in[0] != kFormatVersion) {
    throw UnsealError(where + ": the stored value has format version " + std::to_string(in[0]) +
                      ", and this corrald knows only version " + std::to_string(kFormatVersion) +
                      ". A newer corrald wrote it, or it was altered; run the corrald that wrote "
                      "it, or write the value again.");
  }
  TenantKey key(master_->bytes, place.tenant_id);
  std::string ad = associated_data(place);
  std::string plaintext(sealed.size() - kSealOverhead, '\0');
  unsigned long long length = 0;
  const unsigned char* nonce = in + 1;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(plaintext.data()),
                                                 &length, nullptr, in + 1 + kNonceBytes,
                                                 sealed.size() - 1 - kNonceBytes, bytes_of(ad),
                                                 ad.size(), nonce, key.data()) != 0) {
    throw UnsealError(where +
                      ": the stored value was altered, was copied from another key or tenant, or "
                      "the master key " +
                      origin_ +
                      " changed since it was sealed. Restore the database and the master key "
                      "from the same backup, or write the value again.");
  }
  plaintext.resize(length);
  return plaintext;
}

}  // namespace corral::broker
