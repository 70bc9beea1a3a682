// Governance from the policy, at publish and approve time (issue 5, "Capabilities" and
// "Signatures"): capabilities the manifest asks for and the policy does not grant, self-approval
// and approval_required per tenant, and signed versions. One corrald runs the whole suite under a
// policy (corrald --policy FILE) that gives each tenant the governance its tests need; every
// refusal must also be in the audit trail as a deny.
#include <gtest/gtest.h>
#include <sodium.h>

#include <array>
#include <filesystem>
#include <fstream>

#include "registry/api_client.h"

namespace {

namespace fs = std::filesystem;
using corral::testing::Answer;
using corral::testing::ApiClient;
using corral::testing::CorraldProcess;
using corral::testing::kDoubler;
using corral::testing::manifest;
using nlohmann::json;

struct KeyPair {
  std::array<unsigned char, crypto_sign_PUBLICKEYBYTES> public_key{};
  std::array<unsigned char, crypto_sign_SECRETKEYBYTES> secret_key{};

  KeyPair() { crypto_sign_keypair(public_key.data(), secret_key.data()); }

  std::string public_base64() const { return base64(public_key.data(), public_key.size()); }

  // What `corral publish --sign` sends: Ed25519 over the raw SHA-256 of the source.
  std::string sign(std::string_view source) const {
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(source.data()),
                       source.size());
    unsigned char signature[crypto_sign_BYTES];
    crypto_sign_detached(signature, nullptr, digest, sizeof digest, secret_key.data());
    return base64(signature, sizeof signature);
  }

  static std::string base64(const unsigned char* bytes, size_t size) {
    std::string text(sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(text.data(), text.size(), bytes, size, sodium_base64_VARIANT_ORIGINAL);
    text.resize(text.find('\0'));
    return text;
  }
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class Governance : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (sodium_init() < 0) FAIL() << "libsodium could not be initialised";
    first_ = new KeyPair;
    second_ = new KeyPair;
    stranger_ = new KeyPair;
    policy_dir_ = fs::temp_directory_path() / ("corral-governance-" + std::to_string(getpid()));
    fs::create_directories(policy_dir_);
    std::string policy = R"(
defaults:
  capabilities:
    log: {}
tenants:
  granted:
    capabilities:
      kv: {}
  selfish:
    governance: {self_approval_allowed: true}
  direct:
    governance: {approval_required: false}
  signed:
    # Its tests publish (or are refused) more than the built-in burst of 5 within a second.
    quotas: {publishes_per_minute: 600}
    governance:
      signature_required: true
      public_keys: [FIRST, SECOND]
  keyed:
    governance:
      public_keys: [FIRST]
)";
    for (auto [name, key] : {std::pair{"FIRST", first_}, std::pair{"SECOND", second_}}) {
      for (size_t at; (at = policy.find(name)) != std::string::npos;)
        policy.replace(at, std::string_view(name).size(), key->public_base64());
    }
    std::ofstream(policy_dir_ / "policy.yaml") << policy;
    corrald_ = new CorraldProcess({"--policy", (policy_dir_ / "policy.yaml").string()});
  }
  static void TearDownTestSuite() {
    delete corrald_;
    delete first_;
    delete second_;
    delete stranger_;
    fs::remove_all(policy_dir_);
  }

  void SetUp() override { api_ = std::make_unique<ApiClient>(*corrald_); }

  // A tenant and a token per role, made the first time a test asks: the suite shares one corrald.
  std::map<std::string, std::string> tokens(const std::string& tenant) {
    static std::map<std::string, std::map<std::string, std::string>> made;
    if (!made.contains(tenant)) made[tenant] = api_->tenant_with_tokens(tenant);
    return made[tenant];
  }

  static std::string versions(const std::string& tenant, const std::string& script) {
    return "/v1/tenants/" + tenant + "/scripts/" + script + "/versions";
  }

  Answer publish(const std::string& token, const std::string& tenant, const std::string& script,
                 const std::string& source, json extra = json::object(),
                 json capabilities = json::array()) {
    json body = {{"source", source}, {"manifest", manifest(capabilities)}};
    if (extra.is_object()) body.update(extra);
    return api_->post(token, versions(tenant, script), body);
  }

  // The newest audit entry of `action` for `tenant`.
  json last_audit(const std::string& tenant, const std::string& action) {
    json entries = json::array();
    std::string after;
    // Pages of 1000 until the last, so the newest entry is found however long the suite ran.
    for (;;) {
      Answer page = api_->get(api_->admin(), "/v1/audit?tenant=" + tenant + "&action=" + action +
                                                 "&limit=1000" + after);
      EXPECT_EQ(page.status, 200) << page;
      for (const auto& entry : page.body["entries"]) entries.push_back(entry);
      if (!page.body["next_after"].is_number_integer()) break;
      after = "&after=" + std::to_string(page.body["next_after"].get<int64_t>());
    }
    return entries.empty() ? json() : entries.back();
  }

  // A refusal (403 unless said) of this problem type, audited as a deny of version.publish
  // carrying its detail.
  void expect_refused_and_audited(const Answer& answer, const std::string& tenant,
                                  const std::string& type, int status = 403) {
    ASSERT_EQ(answer.status, status) << answer;
    EXPECT_EQ(answer.body["type"], "urn:corral:problem:" + type) << answer;
    EXPECT_FALSE(answer.body["hint"].get<std::string>().empty()) << answer;
    EXPECT_TRUE(answer.body.contains("policy_version")) << answer;
    json entry = last_audit(tenant, "version.publish");
    ASSERT_TRUE(entry.is_object()) << "no audit entry for the refusal";
    EXPECT_EQ(entry["decision"], "deny") << entry;
    EXPECT_EQ(entry["reason"], answer.body["detail"]) << entry;
  }

  static inline CorraldProcess* corrald_ = nullptr;
  static inline KeyPair* first_ = nullptr;
  static inline KeyPair* second_ = nullptr;
  static inline KeyPair* stranger_ = nullptr;
  static inline fs::path policy_dir_;
  std::unique_ptr<ApiClient> api_;
};

// ---- capabilities

TEST_F(Governance, CapabilitiesTheTenantIsNotGrantedAreRefusedEachByName) {
  auto token = tokens("plain");
  Answer refused =
      publish(token["publisher"], "plain", "s", kDoubler, {}, {"log", "kv", "http", "secrets"});
  expect_refused_and_audited(refused, "plain", "capability-not-granted");
  std::string detail = refused.body["detail"];
  for (const char* capability : {"kv", "http", "secrets"}) EXPECT_TRUE(has(detail, capability));
  EXPECT_TRUE(has(detail, "no rule grants kv to tenant \"plain\"")) << detail;
  json listed = refused.body["capabilities_not_granted"];
  ASSERT_EQ(listed.size(), 3u) << refused;
  EXPECT_EQ(listed[0]["capability"], "kv");
  EXPECT_EQ(listed[1]["capability"], "http");
  EXPECT_EQ(listed[2]["capability"], "secrets");
  for (const auto& entry : listed) EXPECT_FALSE(entry["rule"].get<std::string>().empty());
  // Nothing was stored.
  EXPECT_EQ(api_->get(token["publisher"], versions("plain", "s")).status, 404);
  // log alone is always granted.
  EXPECT_EQ(publish(token["publisher"], "plain", "s", kDoubler, {}, {"log"}).status, 201);
}

TEST_F(Governance, GrantedCapabilitiesMayBeAskedFor) {
  auto token = tokens("granted");
  Answer published = publish(token["publisher"], "granted", "s", kDoubler, {}, {"log", "kv"});
  EXPECT_EQ(published.status, 201) << published;
  // Another tenant's grant is not this one's: only http is missing here.
  Answer refused = publish(token["publisher"], "granted", "t", kDoubler, {}, {"kv", "http"});
  expect_refused_and_audited(refused, "granted", "capability-not-granted");
  ASSERT_EQ(refused.body["capabilities_not_granted"].size(), 1u) << refused;
  EXPECT_EQ(refused.body["capabilities_not_granted"][0]["capability"], "http");
}

// ---- approval

TEST_F(Governance, SelfApprovalFollowsTheTenantsPolicy) {
  tokens("selfish");
  std::string publisher = api_->token("selfish", "publisher", "carol");
  std::string reviewer = api_->token("selfish", "reviewer", "carol");
  Answer published = publish(publisher, "selfish", "mine", kDoubler);
  ASSERT_EQ(published.status, 201) << published;
  Answer approved = api_->post(reviewer, versions("selfish", "mine") + "/1/approve");
  EXPECT_EQ(approved.status, 200) << approved;
  EXPECT_EQ(approved.body["state"], "approved");

  // A tenant the policy leaves at the default may not.
  tokens("strict");
  std::string strict_publisher = api_->token("strict", "publisher", "dave");
  std::string strict_reviewer = api_->token("strict", "reviewer", "dave");
  ASSERT_EQ(publish(strict_publisher, "strict", "mine", kDoubler).status, 201);
  Answer refused = api_->post(strict_reviewer, versions("strict", "mine") + "/1/approve");
  ASSERT_EQ(refused.status, 403) << refused;
  EXPECT_EQ(refused.body["type"], "urn:corral:problem:self-approval");
  EXPECT_TRUE(has(refused.body["detail"], "governance.self_approval_allowed")) << refused;
  json entry = last_audit("strict", "version.approve");
  EXPECT_EQ(entry["decision"], "deny") << entry;
}

TEST_F(Governance, WithoutApprovalRequiredAVersionIsApprovedAsItIsPublished) {
  auto token = tokens("direct");
  Answer published = publish(token["publisher"], "direct", "s", kDoubler);
  ASSERT_EQ(published.status, 201) << published;
  EXPECT_EQ(published.body["state"], "approved");
  EXPECT_EQ(published.body["approved_by"], "policy");
  EXPECT_TRUE(published.body["approved_at"].is_string());
  json approval = last_audit("direct", "version.approve");
  EXPECT_EQ(approval["principal"], "policy") << approval;
  EXPECT_EQ(approval["decision"], "allow") << approval;
  EXPECT_TRUE(has(approval["reason"], "tenants.direct.governance.approval_required is false"))
      << approval;
  // It serves at once: an alias may point at it, and an invoker may run it.
  api_->set_alias(token["reviewer"], "direct", "s", "live", 1);
  Answer invoked =
      api_->post(token["invoker"], "/v1/tenants/direct/scripts/s/invoke", {{"input", {{"n", 4}}}});
  EXPECT_EQ(invoked.status, 200) << invoked;
  // Approving it again is a conflict, as for any approved version.
  EXPECT_EQ(api_->post(token["reviewer"], versions("direct", "s") + "/1/approve").status, 409);
  // Other tenants' versions still wait for a reviewer.
  auto plain = tokens("waiting");
  EXPECT_EQ(publish(plain["publisher"], "waiting", "s", kDoubler).body["state"], "pending");
}

// ---- signatures

TEST_F(Governance, SignatureRequiredRefusesAMissingSignature) {
  auto token = tokens("signed");
  Answer refused = publish(token["publisher"], "signed", "unsigned", kDoubler);
  expect_refused_and_audited(refused, "signed", "signature-required");
  EXPECT_TRUE(has(refused.body["detail"], "tenants.signed.governance.signature_required"))
      << refused;
  EXPECT_TRUE(has(refused.body["hint"], "--sign")) << refused;
  EXPECT_EQ(api_->get(token["publisher"], versions("signed", "unsigned")).status, 404);
}

TEST_F(Governance, SignatureRequiredRefusesAnotherKeysSignature) {
  auto token = tokens("signed");
  Answer refused = publish(token["publisher"], "signed", "stranger", kDoubler,
                           {{"signature", stranger_->sign(kDoubler)}});
  expect_refused_and_audited(refused, "signed", "signature-invalid");
  EXPECT_TRUE(has(refused.body["detail"], "does not verify")) << refused;
  // Named by key_id, a key the policy does not list is refused by name.
  Answer named =
      publish(token["publisher"], "signed", "stranger", kDoubler,
              {{"signature", stranger_->sign(kDoubler)}, {"key_id", stranger_->public_base64()}});
  expect_refused_and_audited(named, "signed", "signature-invalid");
  EXPECT_TRUE(has(named.body["detail"], stranger_->public_base64() + ", which is not one of"))
      << named;
}

TEST_F(Governance, SignatureRequiredRefusesASignatureOfAnotherSource) {
  auto token = tokens("signed");
  std::string other = "function handle(input) return 'other' end";
  Answer refused = publish(token["publisher"], "signed", "tampered", kDoubler,
                           {{"signature", first_->sign(other)}});
  expect_refused_and_audited(refused, "signed", "signature-invalid");
  Answer malformed = publish(token["publisher"], "signed", "tampered", kDoubler,
                             {{"signature", "bm90IGEgc2lnbmF0dXJl"}});
  expect_refused_and_audited(malformed, "signed", "signature-invalid");
  EXPECT_TRUE(has(malformed.body["detail"], "not 64")) << malformed;
  EXPECT_EQ(publish(token["publisher"], "signed", "tampered", kDoubler, {{"signature", 7}}).status,
            400);
}

TEST_F(Governance, SignatureRequiredAcceptsAValidSignatureByAnyListedKey) {
  auto token = tokens("signed");
  Answer published = publish(token["publisher"], "signed", "valid", kDoubler,
                             {{"signature", second_->sign(kDoubler)}});
  ASSERT_EQ(published.status, 201) << published;
  EXPECT_EQ(published.body["state"], "pending");
  // The version names the key that verified it, now and whenever it is read.
  EXPECT_EQ(published.body["signed_by"], second_->public_base64()) << published;
  Answer read =
      api_->get(token["reviewer"], versions("signed", "valid") + "/" +
                                       std::to_string(published.body["version"].get<int64_t>()));
  ASSERT_EQ(read.status, 200) << read;
  EXPECT_EQ(read.body["signed_by"], second_->public_base64()) << read;
  json entry = last_audit("signed", "version.publish");
  EXPECT_EQ(entry["decision"], "allow") << entry;
  EXPECT_TRUE(has(entry["reason"], "signed by key " + second_->public_base64())) << entry;
  std::string source = "function handle(input) return input end";
  Answer with_key_id =
      publish(token["publisher"], "signed", "valid", source,
              {{"signature", first_->sign(source)}, {"key_id", first_->public_base64()}});
  EXPECT_EQ(with_key_id.status, 201) << with_key_id;
  // Republishing a signed source still needs its signature.
  expect_refused_and_audited(publish(token["publisher"], "signed", "valid", kDoubler), "signed",
                             "signature-required");
}

TEST_F(Governance, WithoutSignatureRequiredASignatureIsCheckedWhenTheTenantHasKeys) {
  auto keyed = tokens("keyed");
  Answer unsigned_version = publish(keyed["publisher"], "keyed", "s", kDoubler);
  EXPECT_EQ(unsigned_version.status, 201) << unsigned_version;
  EXPECT_TRUE(unsigned_version.body["signed_by"].is_null()) << unsigned_version;
  std::string source = "function handle(input) return 1 end";
  expect_refused_and_audited(
      publish(keyed["publisher"], "keyed", "s", source, {{"signature", stranger_->sign(source)}}),
      "keyed", "signature-invalid");
  Answer signed_version =
      publish(keyed["publisher"], "keyed", "s", source, {{"signature", first_->sign(source)}});
  EXPECT_EQ(signed_version.status, 201) << signed_version;
  EXPECT_EQ(signed_version.body["signed_by"], first_->public_base64()) << signed_version;
}

// Issue 26: a tenant without keys has nothing to check a signature against. Accepting the version
// would let `corral publish --sign` claim a check that never happened: it is refused, naming the
// reason and how to register a key, and nothing is stored.
TEST_F(Governance, ASignatureForATenantWithoutKeysIsRefusedNotIgnored) {
  auto plain = tokens("keyless");
  Answer refused = publish(plain["publisher"], "keyless", "s", kDoubler,
                           {{"signature", first_->sign(kDoubler)}});
  expect_refused_and_audited(refused, "keyless", "signature-unverifiable", 422);
  EXPECT_TRUE(has(refused.body["detail"], "no signing keys")) << refused;
  EXPECT_TRUE(has(refused.body["hint"], "tenants.keyless.governance.public_keys")) << refused;
  EXPECT_EQ(api_->get(plain["publisher"], versions("keyless", "s")).status, 404);
  // Without the signature the same source is published, unsigned.
  Answer published = publish(plain["publisher"], "keyless", "s", kDoubler);
  EXPECT_EQ(published.status, 201) << published;
  EXPECT_TRUE(published.body["signed_by"].is_null()) << published;
}

}  // namespace
