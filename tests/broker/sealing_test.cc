// Sealing: values round-trip; a changed byte, a value moved to another place or tenant, or another
// master key makes opening fail with a message that says so; the master key file is created
// 0600, reused, and refused when exposed, damaged or replaced by a link.
#include "broker/sealing.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <thread>

#include "store/sqlite_fixture.h"

namespace {

using namespace corral::broker;
using corral::testing::TempDir;

std::string key_of(char fill) { return std::string(Sealer::kMasterKeyBytes, fill); }

const SealedPlace kPlace{"kv", "tenant-1", "script-a", "user:1"};

class SealingTest : public ::testing::Test {
 protected:
  Sealer sealer_ = Sealer::from_key(key_of('k'), "test key");
};

void expect_unseal_error(const Sealer& sealer, const SealedPlace& place, std::string_view sealed,
                         const std::string& expected_words) {
  try {
    auto opened = sealer.open(place, sealed);
    ADD_FAILURE() << "opened as " << opened;
  } catch (const UnsealError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find(expected_words), std::string::npos) << message;
    EXPECT_NE(message.find(place.describe()), std::string::npos) << message;
  }
}

TEST_F(SealingTest, RoundTripsAnyBytes) {
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  for (std::string plaintext :
       {std::string(), std::string("{\"a\":1}"), binary, std::string(100000, 'x')}) {
    auto sealed = sealer_.seal(kPlace, plaintext);
    EXPECT_EQ(sealed.size(), plaintext.size() + Sealer::kSealOverhead);
    EXPECT_EQ(sealer_.open(kPlace, sealed), plaintext);
  }
}

TEST_F(SealingTest, SealingTwiceGivesDifferentBytes) {
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) seen.insert(sealer_.seal(kPlace, "same plaintext"));
  EXPECT_EQ(seen.size(), 20u);
}

TEST_F(SealingTest, SealedBytesDoNotContainThePlaintext) {
  std::string plaintext = "plain-plain-plain-plain-plain";
  auto sealed = sealer_.seal(kPlace, plaintext);
  EXPECT_EQ(sealed.find("plain"), std::string::npos);
}

TEST_F(SealingTest, AnyChangedByteFailsToOpen) {
  auto sealed = sealer_.seal(kPlace, "a value worth protecting");
  // The version byte, the nonce, the ciphertext and the tag: every one is covered.
  for (size_t at = 1; at < sealed.size(); ++at) {
    std::string tampered = sealed;
    tampered[at] = static_cast<char>(tampered[at] ^ 0x01);
    expect_unseal_error(sealer_, kPlace, tampered, "altered");
  }
  std::string other_version = sealed;
  other_version[0] = 2;
  expect_unseal_error(sealer_, kPlace, other_version, "format version 2");
}

TEST_F(SealingTest, TruncatedValuesFailToOpen) {
  auto sealed = sealer_.seal(kPlace, "value");
  expect_unseal_error(sealer_, kPlace, sealed.substr(0, sealed.size() - 1), "altered");
  expect_unseal_error(sealer_, kPlace, sealed.substr(0, 10), "too short");
  expect_unseal_error(sealer_, kPlace, "", "too short");
}

TEST_F(SealingTest, AValueMovedToAnotherPlaceFailsToOpen) {
  auto sealed = sealer_.seal(kPlace, "belongs to user:1");
  for (SealedPlace elsewhere : {
           SealedPlace{"kv", "tenant-1", "script-a", "user:2"},      // another key
           SealedPlace{"kv", "tenant-1", "script-b", "user:1"},      // another script's store
           SealedPlace{"kv", "tenant-1", "", "user:1"},              // the tenant-wide store
           SealedPlace{"kv", "tenant-2", "script-a", "user:1"},      // another tenant
           SealedPlace{"secret", "tenant-1", "script-a", "user:1"},  // another purpose
           SealedPlace{"kv", "tenant-1", "script-au", "ser:1"},      // fields shifted
       }) {
    expect_unseal_error(sealer_, elsewhere, sealed, "copied from another key or tenant");
  }
  EXPECT_EQ(sealer_.open(kPlace, sealed), "belongs to user:1");
}

TEST_F(SealingTest, AnotherMasterKeyFailsToOpenAndSaysSo) {
  auto sealed = sealer_.seal(kPlace, "value");
  auto other = Sealer::from_key(key_of('o'), "/data/master.key");
  expect_unseal_error(other, kPlace, sealed, "the master key /data/master.key changed");
}

TEST_F(SealingTest, AKeyOfTheWrongSizeIsRefused) {
  EXPECT_THROW(Sealer::from_key("short", "test"), MasterKeyError);
}

// ---- the master key file

class MasterKeyFileTest : public ::testing::Test {
 protected:
  std::filesystem::path key_file() const { return dir_.path() / "master.key"; }
  mode_t mode() const {
    struct stat info {};
    EXPECT_EQ(::stat(key_file().c_str(), &info), 0);
    return info.st_mode & 07777;
  }
  void expect_refused(const std::vector<std::string>& expected_words) {
    try {
      Sealer::open_or_create(dir_.path());
      ADD_FAILURE() << "the master key was accepted";
    } catch (const MasterKeyError& error) {
      std::string message = error.what();
      EXPECT_NE(message.find(key_file().string()), std::string::npos) << message;
      for (const auto& words : expected_words) {
        EXPECT_NE(message.find(words), std::string::npos) << message;
      }
    }
  }

  TempDir dir_;
};

TEST_F(MasterKeyFileTest, IsCreatedWithMode0600AndReused) {
  auto first = Sealer::open_or_create(dir_.path());
  EXPECT_EQ(mode(), 0600u);
  EXPECT_EQ(std::filesystem::file_size(key_file()), Sealer::kMasterKeyBytes);
  // Nothing else is left behind (no temporary file).
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()),
                          std::filesystem::directory_iterator()),
            1);

  auto sealed = first.seal(kPlace, "kept across restarts");
  auto second = Sealer::open_or_create(dir_.path());
  EXPECT_EQ(second.open(kPlace, sealed), "kept across restarts");
  EXPECT_EQ(mode(), 0600u);
}

TEST_F(MasterKeyFileTest, EachDataDirectoryGetsItsOwnKey) {
  TempDir other;
  auto sealed = Sealer::open_or_create(dir_.path()).seal(kPlace, "value");
  EXPECT_THROW(Sealer::open_or_create(other.path()).open(kPlace, sealed), UnsealError);
}

TEST_F(MasterKeyFileTest, IsCreated0600EvenUnderAPermissiveUmask) {
  mode_t old = ::umask(0);
  auto sealer = Sealer::open_or_create(dir_.path());
  ::umask(old);
  EXPECT_EQ(mode(), 0600u);
}

TEST_F(MasterKeyFileTest, GroupOrOtherAccessIsRefused) {
  Sealer::open_or_create(dir_.path());
  for (auto exposed : {0640, 0604, 0620, 0602, 0660, 0644}) {
    ASSERT_EQ(::chmod(key_file().c_str(), exposed), 0);
    char mode_text[8];
    std::snprintf(mode_text, sizeof mode_text, "%04o", exposed);
    expect_refused({"chmod 600", mode_text});
  }
  ASSERT_EQ(::chmod(key_file().c_str(), 0600), 0);
  EXPECT_NO_THROW(Sealer::open_or_create(dir_.path()));
  ASSERT_EQ(::chmod(key_file().c_str(), 0400), 0);  // stricter than needed is fine
  EXPECT_NO_THROW(Sealer::open_or_create(dir_.path()));
}

TEST_F(MasterKeyFileTest, AFileOfTheWrongSizeIsRefusedUntouched) {
  for (size_t size : {0, 16, 33, 64}) {
    {
      std::ofstream out(key_file(), std::ios::binary | std::ios::trunc);
      out << std::string(size, 'k');
    }
    ::chmod(key_file().c_str(), 0600);
    expect_refused({std::to_string(size) + " bytes long", "exactly 32 bytes", "backup"});
    EXPECT_EQ(std::filesystem::file_size(key_file()), size);
  }
}

TEST_F(MasterKeyFileTest, ASymbolicLinkIsRefused) {
  TempDir elsewhere;
  Sealer::open_or_create(elsewhere.path());
  std::filesystem::create_symlink(elsewhere.path() / "master.key", key_file());
  expect_refused({"symbolic link"});
}

TEST_F(MasterKeyFileTest, ADirectoryInItsPlaceIsRefused) {
  std::filesystem::create_directory(key_file());
  ::chmod(key_file().c_str(), 0700);
  expect_refused({"not a regular file"});
}

TEST_F(MasterKeyFileTest, AMissingDataDirectoryIsRefused) {
  auto missing = dir_.path() / "missing";
  try {
    Sealer::open_or_create(missing);
    FAIL() << "a key was made in a directory that does not exist";
  } catch (const MasterKeyError& error) {
    EXPECT_NE(std::string(error.what()).find(missing.string()), std::string::npos) << error.what();
  }
  EXPECT_FALSE(std::filesystem::exists(missing));
}

TEST_F(MasterKeyFileTest, ConcurrentFirstUsesAgreeOnOneKey) {
  constexpr int kThreads = 6;
  std::vector<std::optional<Sealer>> sealers(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        sealers[t].emplace(Sealer::open_or_create(dir_.path()));
      } catch (const std::exception& error) {
        ADD_FAILURE() << error.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(sealers[t]);
    auto sealed = sealers[t]->seal(kPlace, "shared");
    for (int u = 0; u < kThreads; ++u) EXPECT_EQ(sealers[u]->open(kPlace, sealed), "shared");
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()),
                          std::filesystem::directory_iterator()),
            1);
}

}  // namespace
