// The kv service over a real store: values round-trip sealed, scopes stay apart, each limit is
// enforced with a message naming it, malformed keys are refused, a row moved behind the service's
// back does not open, and the database files never hold a value or a secret in the clear.
#include "broker/kv.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "broker/secrets.h"
#include "store/sqlite_fixture.h"

namespace {

using namespace corral::broker;
using corral::testing::RawDb;
using corral::testing::TempDir;

constexpr KvLimits kLimits{
    .max_key_bytes = 32, .max_value_bytes = 100, .max_keys = 5, .max_total_bytes = 300};

class KvTest : public ::testing::Test {
 protected:
  KvTest()
      : store_(corral::store::open_sqlite_store(data_dir())),
        sealer_(Sealer::open_or_create(data_dir())),
        kv_(*store_, sealer_),
        tenant_(store_->create_tenant("acme", 1).id),
        scope_{tenant_, ""} {}

  std::filesystem::path data_dir() const { return dir_.path() / "data"; }
  std::filesystem::path db_file() const { return data_dir() / "corral.db"; }

  // Calls put and returns the KvLimitExceeded it must throw.
  KvLimitExceeded expect_limit(std::string_view key, std::string_view value,
                               const KvLimits& limits = kLimits) {
    try {
      kv_.put(scope_, key, value, limits);
    } catch (const KvLimitExceeded& error) {
      return error;
    }
    ADD_FAILURE() << "put of " << key << " went through";
    return KvLimitExceeded("", "", 0, 0);
  }

  TempDir dir_;
  std::unique_ptr<corral::store::Store> store_;
  Sealer sealer_;
  KvService kv_;
  std::string tenant_;
  KvScope scope_;
};

TEST_F(KvTest, PutsGetsReplacesAndRemoves) {
  EXPECT_FALSE(kv_.get(scope_, "k"));
  kv_.put(scope_, "k", R"({"total":12.5})", kLimits);
  EXPECT_EQ(kv_.get(scope_, "k"), R"({"total":12.5})");
  kv_.put(scope_, "k", "true", kLimits);
  EXPECT_EQ(kv_.get(scope_, "k"), "true");
  EXPECT_EQ(kv_.usage(scope_).keys, 1);
  EXPECT_EQ(kv_.usage(scope_).bytes, 1 + 4);
  EXPECT_TRUE(kv_.remove(scope_, "k"));
  EXPECT_FALSE(kv_.remove(scope_, "k"));
  EXPECT_FALSE(kv_.get(scope_, "k"));
  EXPECT_EQ(kv_.usage(scope_).keys, 0);
}

TEST_F(KvTest, ScopesDoNotSeeEachOther) {
  auto other_tenant = store_->create_tenant("globex", 1).id;
  KvScope script_a{tenant_, "script-a"}, script_b{tenant_, "script-b"}, other{other_tenant, ""};
  kv_.put(scope_, "k", "\"wide\"", kLimits);
  kv_.put(script_a, "k", "\"a\"", kLimits);
  kv_.put(other, "k", "\"other\"", kLimits);
  EXPECT_EQ(kv_.get(scope_, "k"), "\"wide\"");
  EXPECT_EQ(kv_.get(script_a, "k"), "\"a\"");
  EXPECT_FALSE(kv_.get(script_b, "k"));
  EXPECT_EQ(kv_.get(other, "k"), "\"other\"");
  EXPECT_TRUE(kv_.list(script_b, "", 10).empty());
}

TEST_F(KvTest, ListsByPrefixInOrderWithLimitAndCursor) {
  for (auto key : {"seen:3", "seen:1", "order:1", "seen:2", "seen"})
    kv_.put(scope_, key, "1", kLimits);
  using Keys = std::vector<std::string>;
  EXPECT_EQ(kv_.list(scope_, "seen:", 10), (Keys{"seen:1", "seen:2", "seen:3"}));
  EXPECT_EQ(kv_.list(scope_, "", 10), (Keys{"order:1", "seen", "seen:1", "seen:2", "seen:3"}));
  EXPECT_EQ(kv_.list(scope_, "seen", 2), (Keys{"seen", "seen:1"}));
  EXPECT_EQ(kv_.list(scope_, "seen", 2, "seen:1"), (Keys{"seen:2", "seen:3"}));
  EXPECT_TRUE(kv_.list(scope_, "nothing", 10).empty());
  EXPECT_THROW(kv_.list(scope_, "", 0), KvInvalid);
  EXPECT_THROW(kv_.list(scope_, std::string("a\0b", 3), 10), KvInvalid);
}

TEST_F(KvTest, AKeyOverMaxKeyBytesIsRefused) {
  std::string key(33, 'k');
  auto error = expect_limit(key, "1");
  EXPECT_EQ(error.limit, "max_key_bytes");
  EXPECT_EQ(error.used, 33);
  EXPECT_EQ(error.allowed, 32);
  std::string message = error.what();
  EXPECT_NE(message.find("max_key_bytes = 32"), std::string::npos) << message;
  EXPECT_NE(message.find("33 bytes"), std::string::npos) << message;
  EXPECT_FALSE(kv_.get(scope_, key));
  EXPECT_NO_THROW(kv_.put(scope_, std::string(32, 'k'), "1", kLimits));
}

TEST_F(KvTest, AValueOverMaxValueBytesIsRefused) {
  std::string value = "\"" + std::string(99, 'v') + "\"";  // 101 bytes
  auto error = expect_limit("k", value);
  EXPECT_EQ(error.limit, "max_value_bytes");
  EXPECT_EQ(error.used, 101);
  EXPECT_EQ(error.allowed, 100);
  std::string message = error.what();
  EXPECT_NE(message.find("101 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("max_value_bytes = 100"), std::string::npos) << message;
  EXPECT_NE(message.find("\"k\""), std::string::npos) << message;
  EXPECT_FALSE(kv_.get(scope_, "k"));
}

TEST_F(KvTest, OneKeyTooManyIsRefused) {
  for (int i = 0; i < 5; ++i) kv_.put(scope_, "k" + std::to_string(i), "1", kLimits);
  auto error = expect_limit("k5", "1");
  EXPECT_EQ(error.limit, "max_keys");
  EXPECT_EQ(error.used, 6);
  EXPECT_EQ(error.allowed, 5);
  std::string message = error.what();
  EXPECT_NE(message.find("6 keys"), std::string::npos) << message;
  EXPECT_NE(message.find("max_keys = 5"), std::string::npos) << message;
  EXPECT_FALSE(kv_.get(scope_, "k5"));
  // Replacing an existing key adds none.
  EXPECT_NO_THROW(kv_.put(scope_, "k0", "2", kLimits));
  // Other scopes have their own count.
  EXPECT_NO_THROW(kv_.put(KvScope{tenant_, "script"}, "k5", "1", kLimits));
}

TEST_F(KvTest, TooManyBytesInTheScopeIsRefused) {
  std::string value(95, '1');  // each entry: 2 + 95 = 97 bytes
  for (int i = 0; i < 3; ++i) kv_.put(scope_, "k" + std::to_string(i), value, kLimits);
  EXPECT_EQ(kv_.usage(scope_).bytes, 291);
  auto error = expect_limit("k3", "12345678");  // 291 + 2 + 8 = 301
  EXPECT_EQ(error.limit, "max_total_bytes");
  EXPECT_EQ(error.used, 301);
  EXPECT_EQ(error.allowed, 300);
  std::string message = error.what();
  EXPECT_NE(message.find("301 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("max_total_bytes = 300"), std::string::npos) << message;
  EXPECT_FALSE(kv_.get(scope_, "k3"));
  EXPECT_NO_THROW(kv_.put(scope_, "k3", "1234567", kLimits));  // exactly 300
}

TEST_F(KvTest, LimitsComeWithEachCall) {
  kv_.put(scope_, "a", "1", kLimits);
  kv_.put(scope_, "b", "1", kLimits);
  KvLimits lowered = kLimits;
  lowered.max_keys = 1;
  EXPECT_EQ(expect_limit("c", "1", lowered).limit, "max_keys");
  EXPECT_NO_THROW(kv_.put(scope_, "a", "2", lowered));  // no growth: still allowed
}

TEST_F(KvTest, MalformedKeysAndValuesAreRefused) {
  for (std::string key : {std::string(), std::string("a\0b", 3), std::string("\xff"),
                          std::string("\xc3"), std::string("\xed\xa0\x80"),  // a surrogate
                          std::string("\xc0\xaf")}) {                        // overlong '/'
    EXPECT_THROW(kv_.put(scope_, key, "1", kLimits), KvInvalid) << key;
    EXPECT_THROW(kv_.get(scope_, key), KvInvalid) << key;
    EXPECT_THROW(kv_.remove(scope_, key), KvInvalid) << key;
  }
  EXPECT_THROW(kv_.put(scope_, "k", "", kLimits), KvInvalid);
  EXPECT_NO_THROW(kv_.put(scope_, "caf\xc3\xa9 \xf0\x9f\x90\x84", "1", kLimits));
  try {
    kv_.put(scope_, std::string("ab\0c", 4), "1", kLimits);
  } catch (const KvInvalid& error) {
    EXPECT_NE(std::string(error.what()).find("NUL byte at byte 3"), std::string::npos)
        << error.what();
  }
}

TEST_F(KvTest, AnUnknownTenantIsNotFound) {
  EXPECT_THROW(kv_.put(KvScope{"no-such-tenant", ""}, "k", "1", kLimits), corral::store::NotFound);
}

TEST_F(KvTest, AValueMovedToAnotherKeyOrTenantDoesNotOpen) {
  auto other_tenant = store_->create_tenant("globex", 1).id;
  kv_.put(scope_, "a", "\"for a\"", kLimits);
  kv_.put(scope_, "b", "\"for b\"", kLimits);
  kv_.put(KvScope{other_tenant, ""}, "a", "\"globex a\"", kLimits);
  {
    RawDb raw(db_file());
    raw.exec(
        "UPDATE kv_entries SET sealed = (SELECT sealed FROM kv_entries WHERE key = 'a' AND "
        "tenant_id = '" +
        tenant_ + "') WHERE key = 'b'");
    raw.exec(
        "UPDATE kv_entries SET sealed = (SELECT sealed FROM kv_entries WHERE key = 'a' AND "
        "tenant_id = '" +
        tenant_ + "') WHERE tenant_id = '" + other_tenant + "'");
  }
  EXPECT_EQ(kv_.get(scope_, "a"), "\"for a\"");
  EXPECT_THROW(kv_.get(scope_, "b"), UnsealError);
  try {
    kv_.get(KvScope{other_tenant, ""}, "a");
    FAIL() << "another tenant's value opened";
  } catch (const UnsealError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("altered"), std::string::npos) << message;
    EXPECT_NE(message.find("master key"), std::string::npos) << message;
    EXPECT_NE(message.find(other_tenant), std::string::npos) << message;
  }
}

// ---- at rest

std::string file_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// What an attacker with a copy of the data directory (minus master.key) would see.
std::string database_bytes(const std::filesystem::path& db_file) {
  std::string bytes = file_bytes(db_file);
  for (const char* suffix : {"-wal", "-journal", "-shm"}) {
    auto side = db_file.string() + suffix;
    if (std::filesystem::exists(side)) bytes += file_bytes(side);
  }
  return bytes;
}

TEST_F(KvTest, ValuesAndSecretsAreNotInTheDatabaseFilesInTheClear) {
  const std::string kv_plaintext = "ZEBRA-CRANBERRY-KV-7f3a91";
  const std::string secret_plaintext = "ORCHID-MARMALADE-SECRET-c4e2d8";
  const std::string key = "visible-key-name-5b1c";
  for (int i = 0; i < kLimits.max_keys; ++i) {
    kv_.put(scope_, key + std::to_string(i), "\"" + kv_plaintext + "\"", kLimits);
  }
  kv_.put(KvScope{tenant_, "script-a"}, key, "{\"v\":\"" + kv_plaintext + "\"}", kLimits);
  SecretsService secrets(*store_, sealer_);
  secrets.put(tenant_, "api-token", secret_plaintext, 1);
  ASSERT_EQ(kv_.get(scope_, key + "0"), "\"" + kv_plaintext + "\"");
  ASSERT_EQ(secrets.get(tenant_, "api-token"), secret_plaintext);

  auto expect_no_plaintext = [&](const std::string& when) {
    std::string bytes = database_bytes(db_file());
    ASSERT_GT(bytes.size(), 0u);
    // The control: the scan does see what is stored in the clear (keys are).
    EXPECT_NE(bytes.find(key), std::string::npos) << when;
    EXPECT_NE(bytes.find("api-token"), std::string::npos) << when;
    for (const std::string& secret : {kv_plaintext, secret_plaintext}) {
      EXPECT_EQ(bytes.find(secret), std::string::npos) << secret << " " << when;
      // Not even a fragment.
      EXPECT_EQ(bytes.find(secret.substr(0, 10)), std::string::npos) << secret << " " << when;
    }
  };
  // While the store is open the new pages sit in the WAL.
  ASSERT_TRUE(std::filesystem::exists(db_file().string() + "-wal"));
  expect_no_plaintext("with the store open");
  // Closing checkpoints them into the main file.
  store_.reset();
  expect_no_plaintext("after closing the store");
  // And no other file in the data directory holds them either.
  for (const auto& entry : std::filesystem::directory_iterator(data_dir())) {
    std::string bytes = file_bytes(entry.path());
    EXPECT_EQ(bytes.find(kv_plaintext), std::string::npos) << entry.path();
    EXPECT_EQ(bytes.find(secret_plaintext), std::string::npos) << entry.path();
  }
}

}  // namespace
