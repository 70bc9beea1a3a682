// Secrets: names and sizes are checked, values round-trip sealed and per tenant, listing never
// shows a value, and a secret moved to another tenant does not open.
#include "broker/secrets.h"

#include <gtest/gtest.h>

#include "store/sqlite_fixture.h"

namespace {

using namespace corral::broker;
using corral::testing::RawDb;
using corral::testing::TempDir;

class SecretsTest : public ::testing::Test {
 protected:
  SecretsTest()
      : store_(corral::store::open_sqlite_store(data_dir())),
        sealer_(Sealer::open_or_create(data_dir())),
        secrets_(*store_, sealer_),
        acme_(store_->create_tenant("acme", 1).id),
        globex_(store_->create_tenant("globex", 1).id) {}

  std::filesystem::path data_dir() const { return dir_.path() / "data"; }

  TempDir dir_;
  std::unique_ptr<corral::store::Store> store_;
  Sealer sealer_;
  SecretsService secrets_;
  std::string acme_, globex_;
};

TEST_F(SecretsTest, PutsGetsReplacesAndRemoves) {
  EXPECT_FALSE(secrets_.get(acme_, "api-key"));
  secrets_.put(acme_, "api-key", "s3cr3t", 10);
  EXPECT_EQ(secrets_.get(acme_, "api-key"), "s3cr3t");
  secrets_.put(acme_, "api-key", "rotated", 20);
  EXPECT_EQ(secrets_.get(acme_, "api-key"), "rotated");
  EXPECT_TRUE(secrets_.remove(acme_, "api-key"));
  EXPECT_FALSE(secrets_.remove(acme_, "api-key"));
  EXPECT_FALSE(secrets_.get(acme_, "api-key"));
}

TEST_F(SecretsTest, EachTenantHasItsOwn) {
  secrets_.put(acme_, "token", "acme's", 1);
  EXPECT_FALSE(secrets_.get(globex_, "token"));
  secrets_.put(globex_, "token", "globex's", 1);
  EXPECT_EQ(secrets_.get(acme_, "token"), "acme's");
  EXPECT_EQ(secrets_.get(globex_, "token"), "globex's");
  EXPECT_THROW(secrets_.put("no-such-tenant", "token", "v", 1), corral::store::NotFound);
}

TEST_F(SecretsTest, NamesListsNamesOnly) {
  secrets_.put(acme_, "b.two", "value-two", 2);
  secrets_.put(acme_, "a_one", "value-one", 1);
  auto names = secrets_.names(acme_);
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].name, "a_one");
  EXPECT_EQ(names[0].updated_at, 1);
  EXPECT_EQ(names[1].name, "b.two");
  EXPECT_TRUE(secrets_.names(globex_).empty());

  auto values = secrets_.values(acme_);
  ASSERT_EQ(values.size(), 2u);
  EXPECT_EQ(values[0], (std::pair<std::string, std::string>{"a_one", "value-one"}));
  EXPECT_EQ(values[1], (std::pair<std::string, std::string>{"b.two", "value-two"}));
}

TEST_F(SecretsTest, NamesFollowTheRule) {
  for (std::string good :
       std::vector<std::string>{"a", "API_KEY", "db.password-2", std::string(64, 'x'), "-.-"}) {
    EXPECT_TRUE(SecretsService::valid_name(good)) << good;
    EXPECT_NO_THROW(secrets_.put(acme_, good, "v", 1)) << good;
  }
  for (std::string bad :
       std::vector<std::string>{"", std::string(65, 'x'), "with space", "slash/no", "caf\xc3\xa9",
                                "semi;colon", std::string("nul\0", 4), "[redacted]"}) {
    EXPECT_FALSE(SecretsService::valid_name(bad)) << bad;
    EXPECT_THROW(secrets_.put(acme_, bad, "v", 1), SecretInvalid) << bad;
    EXPECT_THROW(secrets_.get(acme_, bad), SecretInvalid) << bad;
  }
  try {
    secrets_.put(acme_, "has space", "v", 1);
  } catch (const SecretInvalid& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("\"has space\""), std::string::npos) << message;
    EXPECT_NE(message.find("A-Z"), std::string::npos) << message;
  }
}

TEST_F(SecretsTest, ValuesAreOneByteTo64KiB) {
  EXPECT_THROW(secrets_.put(acme_, "empty", "", 1), SecretInvalid);
  EXPECT_THROW(secrets_.put(acme_, "huge", std::string(64 * 1024 + 1, 'v'), 1), SecretInvalid);
  EXPECT_NO_THROW(secrets_.put(acme_, "one", "v", 1));
  std::string largest(64 * 1024, '\0');  // any bytes, NUL included
  for (size_t i = 0; i < largest.size(); ++i) largest[i] = static_cast<char>(i * 7);
  secrets_.put(acme_, "largest", largest, 1);
  EXPECT_EQ(secrets_.get(acme_, "largest"), largest);
  try {
    secrets_.put(acme_, "huge", std::string(70000, 'v'), 1);
  } catch (const SecretInvalid& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("70000 bytes"), std::string::npos) << message;
    EXPECT_NE(message.find("\"huge\""), std::string::npos) << message;
    EXPECT_EQ(message.find("vvvv"), std::string::npos) << "the value is not echoed";
  }
}

TEST_F(SecretsTest, ASecretMovedToAnotherTenantOrNameDoesNotOpen) {
  secrets_.put(acme_, "token", "acme's", 1);
  secrets_.put(acme_, "other", "acme's other", 1);
  secrets_.put(globex_, "token", "globex's", 1);
  {
    RawDb raw(data_dir() / "corral.db");
    raw.exec("UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE tenant_id = '" + acme_ +
             "' AND name = 'token') WHERE tenant_id = '" + globex_ + "' OR name = 'other'");
  }
  EXPECT_EQ(secrets_.get(acme_, "token"), "acme's");
  EXPECT_THROW(secrets_.get(globex_, "token"), UnsealError);
  EXPECT_THROW(secrets_.get(acme_, "other"), UnsealError);
  // Redaction needs every value; one that does not open is an error, not a silent gap.
  EXPECT_THROW(secrets_.values(acme_), UnsealError);
}

}  // namespace
