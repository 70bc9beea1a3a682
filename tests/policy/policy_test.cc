// The policy document: what a valid one resolves to (merging, revoking, the rule behind each
// value), every way a document can be wrong and how precisely that is reported, the matching rules
// the broker shares (origins, addresses, topics), explain() for every action, and diff().
#include "policy/policy.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "policy/problems_of.h"

namespace {

using corral::policy::AddressRange;
using corral::policy::Decision;
using corral::policy::kBuiltIn;
using corral::policy::KvScope;
using corral::policy::OriginPattern;
using corral::policy::parse_origin_pattern;
using corral::policy::Policy;
using corral::policy::PolicyInvalid;
using corral::policy::Problem;
using corral::policy::PublicKey;
using corral::policy::TenantPolicy;

constexpr const char* kKeyA = "/vtODVfDDvFrORAEE0M+/XY+RdN95aporvgexl5VkWk=";
constexpr const char* kKeyB = "GV56i+o+H/XdP9ldZxDqV2L9mJ5z4c9F/bN9VuUrRAo=";

// The problems a document is refused for; fails the test when it is accepted.
using corral::testing::problems_of;

// The single problem a document is refused for.
Problem only_problem(const std::string& yaml) {
  auto problems = problems_of(yaml);
  EXPECT_EQ(problems.size(), 1u) << ::testing::PrintToString(problems.size());
  for (const auto& problem : problems) {
    if (problems.size() != 1) ADD_FAILURE() << problem.path << ": " << problem.message;
  }
  return problems.empty() ? Problem{} : problems[0];
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---- valid documents -----------------------------------------------------------------------

TEST(SafeDefault, GrantsOnlyLogWithSmallLimitsAndDocumentsItself) {
  Policy policy = Policy::safe_default();
  EXPECT_EQ(policy.text(), Policy::safe_default_text());
  TenantPolicy tenant = policy.for_tenant("anyone");
  EXPECT_EQ(tenant.tenant, "anyone");
  EXPECT_TRUE(tenant.grants("log"));
  for (const char* capability : {"kv", "http", "emit", "secrets"})
    EXPECT_FALSE(tenant.grants(capability)) << capability;
  EXPECT_EQ(tenant.limits.fuel.value, 10'000'000);
  EXPECT_EQ(tenant.limits.fuel.source, "defaults.limits.fuel");
  EXPECT_EQ(tenant.limits.memory_bytes.value, 32 << 20);
  EXPECT_EQ(tenant.limits.timeout_ms.value, 1000);
  EXPECT_EQ(tenant.limits.subrequests.value, 16);
  EXPECT_TRUE(tenant.governance.approval_required.value);
  EXPECT_FALSE(tenant.governance.self_approval_allowed.value);
  EXPECT_FALSE(tenant.governance.signature_required.value);
  EXPECT_FALSE(tenant.audit_allowed_capability_calls.value);
}

TEST(SafeDefault, SpellsOutExactlyTheBuiltInValues) {
  TenantPolicy spelt = Policy::safe_default().for_tenant("t");
  TenantPolicy built_in = Policy::parse("defaults: {}").for_tenant("t");
  EXPECT_EQ(built_in.limits.fuel.source, kBuiltIn);
  EXPECT_EQ(spelt.limits.fuel.value, built_in.limits.fuel.value);
  EXPECT_EQ(spelt.limits.memory_bytes.value, built_in.limits.memory_bytes.value);
  EXPECT_EQ(spelt.limits.timeout_ms.value, built_in.limits.timeout_ms.value);
  EXPECT_EQ(spelt.limits.output_bytes.value, built_in.limits.output_bytes.value);
  EXPECT_EQ(spelt.limits.log_bytes.value, built_in.limits.log_bytes.value);
  EXPECT_EQ(spelt.limits.subrequests.value, built_in.limits.subrequests.value);
  EXPECT_EQ(spelt.limits.input_bytes.value, built_in.limits.input_bytes.value);
  EXPECT_EQ(spelt.quotas.rate_per_second.value, built_in.quotas.rate_per_second.value);
  EXPECT_EQ(spelt.quotas.burst.value, built_in.quotas.burst.value);
  EXPECT_EQ(spelt.quotas.concurrency.value, built_in.quotas.concurrency.value);
  EXPECT_EQ(spelt.quotas.cpu_ms_per_minute.value, built_in.quotas.cpu_ms_per_minute.value);
  EXPECT_EQ(spelt.quotas.queued_jobs.value, built_in.quotas.queued_jobs.value);
  EXPECT_EQ(spelt.log.max_entry_bytes, built_in.log.max_entry_bytes);
  EXPECT_EQ(spelt.governance.approval_required.value, built_in.governance.approval_required.value);
  EXPECT_TRUE(diff(Policy::safe_default(), Policy::parse("defaults: {}")).empty());
}

TEST(Resolve, TenantOverridesDefaultsFieldByFieldAndNamesTheRule) {
  Policy policy = Policy::parse(R"(defaults:
  limits: {fuel: 1_000_000, memory_bytes: 1048576}
  quotas: {rate_per_second: 2.5}
  governance: {approval_required: false}
tenants:
  acme:
    limits: {fuel: 2000000}
    quotas: {burst: 7}
    audit: {allowed_capability_calls: true}
  bob: {}
  carol:
)");
  EXPECT_EQ(policy.tenant_names(), (std::vector<std::string>{"acme", "bob", "carol"}));
  TenantPolicy acme = policy.for_tenant("acme");
  EXPECT_EQ(acme.limits.fuel.value, 2'000'000);
  EXPECT_EQ(acme.limits.fuel.source, "tenants.acme.limits.fuel");
  EXPECT_EQ(acme.limits.memory_bytes.value, 1 << 20);
  EXPECT_EQ(acme.limits.memory_bytes.source, "defaults.limits.memory_bytes");
  EXPECT_EQ(acme.limits.timeout_ms.value, 1000);
  EXPECT_EQ(acme.limits.timeout_ms.source, kBuiltIn);
  EXPECT_DOUBLE_EQ(acme.quotas.rate_per_second.value, 2.5);
  EXPECT_EQ(acme.quotas.rate_per_second.source, "defaults.quotas.rate_per_second");
  EXPECT_EQ(acme.quotas.burst.value, 7);
  EXPECT_FALSE(acme.governance.approval_required.value);
  EXPECT_EQ(acme.governance.approval_required.source, "defaults.governance.approval_required");
  EXPECT_TRUE(acme.audit_allowed_capability_calls.value);
  EXPECT_EQ(acme.audit_allowed_capability_calls.source,
            "tenants.acme.audit.allowed_capability_calls");

  for (const char* name : {"bob", "carol", "unnamed"}) {
    TenantPolicy other = policy.for_tenant(name);
    EXPECT_EQ(other.limits.fuel.value, 1'000'000) << name;
    EXPECT_EQ(other.limits.fuel.source, "defaults.limits.fuel") << name;
    EXPECT_FALSE(other.audit_allowed_capability_calls.value) << name;
  }
}

TEST(Resolve, CapabilitiesMergeGrantByGrantWithTheirOwnParameterDefaults) {
  Policy policy = Policy::parse(R"(defaults:
  capabilities:
    kv: {scope: script, max_keys: 5}
    emit: {topics: ["orders.*"]}
tenants:
  acme:
    capabilities:
      kv: {max_value_bytes: 100}
      secrets: {}
  bob: {}
)");
  TenantPolicy acme = policy.for_tenant("acme");
  ASSERT_TRUE(acme.kv);
  // The tenant's grant replaces the default one whole: max_keys and scope are the built-in ones.
  EXPECT_EQ(acme.kv->max_value_bytes, 100);
  EXPECT_EQ(acme.kv->max_keys, 10'000);
  EXPECT_EQ(acme.kv->scope, KvScope::tenant);
  EXPECT_EQ(acme.kv->source, "tenants.acme.capabilities.kv");
  ASSERT_TRUE(acme.emit);  // not named by acme: the default grant applies
  EXPECT_EQ(acme.emit->source, "defaults.capabilities.emit");
  ASSERT_TRUE(acme.secrets);
  EXPECT_FALSE(acme.secrets->names);
  EXPECT_FALSE(acme.http);
  EXPECT_EQ(acme.log.source, kBuiltIn);

  TenantPolicy bob = policy.for_tenant("bob");
  ASSERT_TRUE(bob.kv);
  EXPECT_EQ(bob.kv->scope, KvScope::script);
  EXPECT_EQ(bob.kv->max_keys, 5);
  EXPECT_EQ(bob.kv->source, "defaults.capabilities.kv");
  EXPECT_FALSE(bob.secrets);
}

TEST(Resolve, EmptyGrantsTakeEveryParameterDefault) {
  TenantPolicy tenant = Policy::parse(R"(defaults:
  capabilities: {kv: {}, http: {}, emit: {}, secrets: {}, log: {}}
)")
                            .for_tenant("t");
  ASSERT_TRUE(tenant.kv && tenant.http && tenant.emit && tenant.secrets);
  EXPECT_EQ(tenant.kv->max_key_bytes, 256);
  EXPECT_EQ(tenant.kv->max_total_bytes, 16ll << 20);
  EXPECT_TRUE(tenant.http->allow.empty());
  EXPECT_EQ(tenant.http->max_redirects, 3);
  EXPECT_EQ(tenant.http->timeout_ms, 5000);
  EXPECT_TRUE(tenant.emit->topics.empty());
  EXPECT_EQ(tenant.emit->max_payload_bytes, 64 << 10);
  EXPECT_EQ(tenant.log.max_entry_bytes, 4096);
  EXPECT_EQ(tenant.log.source, "defaults.capabilities.log");
}

TEST(Resolve, FalseRevokesADefaultGrantForOneTenant) {
  Policy policy = Policy::parse(R"(defaults:
  capabilities:
    http: {allow: [https://api.example.com]}
    kv: {}
tenants:
  acme:
    capabilities:
      http: false
  bob: {}
)");
  TenantPolicy acme = policy.for_tenant("acme");
  EXPECT_FALSE(acme.http);
  EXPECT_TRUE(acme.kv);
  EXPECT_EQ(acme.revoked.at("http"), "tenants.acme.capabilities.http");
  EXPECT_TRUE(policy.for_tenant("bob").http);

  Decision denied = policy.explain("acme", "http.fetch https://api.example.com/x");
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.rule, "tenants.acme.capabilities.http");
  EXPECT_TRUE(contains(denied.reason, "revokes http")) << denied.reason;
  EXPECT_TRUE(policy.explain("bob", "http.fetch https://api.example.com/x").allowed);
}

TEST(Resolve, ParsesGrantParameters) {
  TenantPolicy tenant = Policy::parse(std::string(R"(defaults:
  capabilities:
    http:
      allow: ["https://*.example.com", "http://127.0.0.1:*", "http://[::1]:8080"]
      allow_private: [127.0.0.1, "10.0.0.0/8", "fd00::/8"]
      max_response_bytes: 2048
      timeout_ms: 250
      max_redirects: 0
      max_request_bytes: 0
    emit: {topics: [orders.created, "billing.*"], max_payload_bytes: 10}
    secrets: {names: [stripe_key, db.password]}
  governance:
    signature_required: true
    public_keys: [)") + kKeyA + ", " + kKeyB +
                                      R"(]
)")
                            .for_tenant("t");
  ASSERT_TRUE(tenant.http);
  ASSERT_EQ(tenant.http->allow.size(), 3u);
  EXPECT_TRUE(tenant.http->allow[0].any_subdomain);
  EXPECT_EQ(tenant.http->allow[0].host, "example.com");
  EXPECT_EQ(tenant.http->allow[0].port, 443);
  EXPECT_FALSE(tenant.http->allow[1].port);
  EXPECT_EQ(tenant.http->allow[2].host, "::1");
  EXPECT_EQ(tenant.http->allow_private.size(), 3u);
  EXPECT_EQ(tenant.http->max_response_bytes, 2048);
  EXPECT_EQ(tenant.http->timeout_ms, 250);
  EXPECT_EQ(tenant.http->max_redirects, 0);
  EXPECT_EQ(tenant.http->max_request_bytes, 0);
  ASSERT_TRUE(tenant.emit);
  EXPECT_EQ(tenant.emit->topics, (std::vector<std::string>{"orders.created", "billing.*"}));
  ASSERT_TRUE(tenant.secrets && tenant.secrets->names);
  EXPECT_EQ(*tenant.secrets->names, (std::vector<std::string>{"stripe_key", "db.password"}));
  ASSERT_EQ(tenant.governance.public_keys.value.size(), 2u);
  EXPECT_EQ(tenant.governance.public_keys.value[0].base64, kKeyA);
  EXPECT_EQ(tenant.governance.public_keys.value[0].bytes[0], 0xfe);  // '/vt' decodes to fe fb ..
}

TEST(Resolve, TheExampleFileGrantsAcmeKvAndNothingElse) {
  std::ifstream file(std::string(CORRAL_SOURCE_DIR) + "/examples/policy.yaml");
  ASSERT_TRUE(file) << "examples/policy.yaml is missing";
  std::stringstream text;
  text << file.rdbuf();
  Policy policy = Policy::parse(text.str());
  TenantPolicy acme = policy.for_tenant("acme");
  EXPECT_TRUE(acme.grants("log"));
  EXPECT_TRUE(acme.grants("kv"));
  EXPECT_FALSE(acme.grants("http"));
  EXPECT_FALSE(acme.grants("emit"));
  EXPECT_FALSE(acme.grants("secrets"));
  EXPECT_DOUBLE_EQ(acme.quotas.rate_per_second.value, 5);
  EXPECT_EQ(acme.quotas.burst.value, 5);
  EXPECT_EQ(acme.quotas.rate_per_second.source, "tenants.acme.quotas.rate_per_second");
  EXPECT_EQ(policy.tenant_names(), std::vector<std::string>{"acme"});
  EXPECT_TRUE(policy.explain("acme", "kv.put order:1").allowed);
  EXPECT_FALSE(policy.explain("acme", "http.fetch https://example.com").allowed);
  EXPECT_FALSE(policy.for_tenant("someone-else").grants("kv"));
}

// ---- invalid documents ---------------------------------------------------------------------

TEST(Validation, ReportsEveryProblemWithItsPathLineAndColumn) {
  auto problems = problems_of(R"(defaults:
  limits:
    fuel: 10
    memory_bytes: lots
tenants:
  acme:
    limits:
      timeout_ms: 0
    capabilities:
      http:
        allow: [https://example.com/path]
)");
  ASSERT_EQ(problems.size(), 4u);
  EXPECT_EQ(problems[0].path, "defaults.limits.fuel");
  EXPECT_EQ(problems[0].line, 3);
  EXPECT_EQ(problems[0].column, 11);
  EXPECT_TRUE(contains(problems[0].message, "out of range")) << problems[0].message;
  EXPECT_TRUE(contains(problems[0].message, "from 1000 to")) << problems[0].message;
  EXPECT_EQ(problems[1].path, "defaults.limits.memory_bytes");
  EXPECT_EQ(problems[1].line, 4);
  EXPECT_TRUE(contains(problems[1].message, "\"lots\"")) << problems[1].message;
  EXPECT_TRUE(contains(problems[1].message, "65536 (64 KiB) to 1073741824 (1 GiB)"))
      << problems[1].message;
  EXPECT_EQ(problems[2].path, "tenants.acme.limits.timeout_ms");
  EXPECT_EQ(problems[2].line, 8);
  EXPECT_EQ(problems[2].column, 19);
  EXPECT_EQ(problems[3].path, "tenants.acme.capabilities.http.allow[0]");
  EXPECT_EQ(problems[3].line, 11);
  EXPECT_EQ(problems[3].column, 17);
  EXPECT_TRUE(contains(problems[3].message, "remove \"/path\"")) << problems[3].message;
}

TEST(Validation, WhatListsEveryProblem) {
  try {
    Policy::parse("defaults:\n  limits: {fuel: 1, subrequests: -1}\n");
    FAIL() << "accepted";
  } catch (const PolicyInvalid& invalid) {
    std::string what = invalid.what();
    EXPECT_TRUE(contains(what, "2 problems")) << what;
    EXPECT_TRUE(contains(what, "defaults.limits.fuel (line 2, column 18)")) << what;
    EXPECT_TRUE(contains(what, "defaults.limits.subrequests (line 2, column 34)")) << what;
    EXPECT_TRUE(dynamic_cast<const std::runtime_error*>(&invalid));
  }
}

TEST(Validation, UnknownKeysAreRefusedWithTheNearestKnownOne) {
  auto problems = problems_of(R"(defaults:
  limits:
    fule: 1000
    memory: 1048576
  capabilitys: {}
tenant: {}
)");
  ASSERT_EQ(problems.size(), 4u);
  EXPECT_EQ(problems[0].path, "defaults.limits.fule");
  EXPECT_EQ(problems[0].line, 3);
  EXPECT_EQ(problems[0].column, 5);
  EXPECT_TRUE(contains(problems[0].message, "did you mean \"fuel\"?")) << problems[0].message;
  EXPECT_TRUE(contains(problems[0].message, "fuel, memory_bytes, timeout_ms"));
  EXPECT_TRUE(contains(problems[1].message, "did you mean \"memory_bytes\"?"));
  EXPECT_EQ(problems[2].path, "defaults.capabilitys");
  EXPECT_TRUE(contains(problems[2].message, "did you mean \"capabilities\"?"));
  EXPECT_EQ(problems[3].path, "tenant");
  EXPECT_TRUE(contains(problems[3].message, "did you mean \"tenants\"?"));

  Problem far = only_problem("defaults:\n  capabilities:\n    kv: {colour: blue}\n");
  EXPECT_EQ(far.path, "defaults.capabilities.kv.colour");
  EXPECT_FALSE(contains(far.message, "did you mean")) << far.message;
  EXPECT_TRUE(contains(far.message, "scope, max_key_bytes")) << far.message;
}

TEST(Validation, ValuesOutsideTheirRangeAreRefused) {
  struct Case {
    std::string yaml;
    std::string path;
  };
  const std::vector<Case> refused = {
      {"defaults: {limits: {memory_bytes: 65535}}", "defaults.limits.memory_bytes"},
      {"defaults: {limits: {memory_bytes: 1073741825}}", "defaults.limits.memory_bytes"},
      {"defaults: {limits: {timeout_ms: 300001}}", "defaults.limits.timeout_ms"},
      {"defaults: {limits: {subrequests: 1001}}", "defaults.limits.subrequests"},
      {"defaults: {limits: {fuel: 99999999999999999999999}}", "defaults.limits.fuel"},
      {"defaults: {limits: {output_bytes: 0}}", "defaults.limits.output_bytes"},
      {"defaults: {quotas: {rate_per_second: 0}}", "defaults.quotas.rate_per_second"},
      {"defaults: {quotas: {rate_per_second: -1.5}}", "defaults.quotas.rate_per_second"},
      {"defaults: {quotas: {rate_per_second: .nan}}", "defaults.quotas.rate_per_second"},
      {"defaults: {quotas: {burst: 0}}", "defaults.quotas.burst"},
      {"defaults: {capabilities: {kv: {max_key_bytes: 4097}}}",
       "defaults.capabilities.kv.max_key_bytes"},
      {"defaults: {capabilities: {http: {max_redirects: 11}}}",
       "defaults.capabilities.http.max_redirects"},
      {"defaults: {capabilities: {log: {max_entry_bytes: 0}}}",
       "defaults.capabilities.log.max_entry_bytes"},
  };
  for (const auto& [yaml, path] : refused) {
    Problem problem = only_problem(yaml);
    EXPECT_EQ(problem.path, path) << yaml;
    EXPECT_EQ(problem.line, 1) << yaml;
    EXPECT_TRUE(contains(problem.message, "allowed is") || contains(problem.message, "expected"))
        << problem.message;
  }
  // The ends of each range are accepted.
  TenantPolicy edges = Policy::parse(
                           "defaults: {limits: {memory_bytes: 65536, timeout_ms: 300000, "
                           "subrequests: 0}, quotas: {rate_per_second: 0.001, queued_jobs: 0}}")
                           .for_tenant("t");
  EXPECT_EQ(edges.limits.memory_bytes.value, 65536);
  EXPECT_EQ(edges.limits.subrequests.value, 0);
  EXPECT_DOUBLE_EQ(edges.quotas.rate_per_second.value, 0.001);
}

TEST(Validation, WrongTypesAreRefusedSayingWhatIsExpected) {
  Problem quoted = only_problem("defaults:\n  limits:\n    fuel: \"100000\"\n");
  EXPECT_EQ(quoted.path, "defaults.limits.fuel");
  EXPECT_TRUE(contains(quoted.message, "without quotes")) << quoted.message;

  Problem fraction = only_problem("defaults: {limits: {fuel: 1.5e6}}");
  EXPECT_TRUE(contains(fraction.message, "a whole number")) << fraction.message;

  Problem list = only_problem("defaults:\n  limits: [1, 2]\n");
  EXPECT_EQ(list.path, "defaults.limits");
  EXPECT_EQ(list.line, 2);
  EXPECT_TRUE(contains(list.message, "expected a mapping of fuel, memory_bytes")) << list.message;

  Problem yes = only_problem("defaults:\n  governance:\n    approval_required: yes\n");
  EXPECT_EQ(yes.path, "defaults.governance.approval_required");
  EXPECT_TRUE(contains(yes.message, "expected true or false")) << yes.message;

  Problem top = only_problem("- defaults\n");
  EXPECT_TRUE(contains(top.message, "the document is a list")) << top.message;

  Problem topics = only_problem("defaults: {capabilities: {emit: {topics: orders}}}");
  EXPECT_EQ(topics.path, "defaults.capabilities.emit.topics");
  EXPECT_TRUE(contains(topics.message, "expected a list of topic patterns")) << topics.message;

  Problem nested = only_problem("defaults: {capabilities: {emit: {topics: [[a]]}}}");
  EXPECT_EQ(nested.path, "defaults.capabilities.emit.topics[0]");
}

TEST(Validation, AGrantIsAMappingAndOnlyFalseRevokesIt) {
  Problem granted_true = only_problem("defaults:\n  capabilities:\n    kv: true\n");
  EXPECT_EQ(granted_true.path, "defaults.capabilities.kv");
  EXPECT_TRUE(contains(granted_true.message, "write kv: {} to grant it")) << granted_true.message;

  Problem empty = only_problem("defaults:\n  capabilities:\n    http:\n");
  EXPECT_EQ(empty.path, "defaults.capabilities.http");
  EXPECT_EQ(empty.line, 3);  // where the key stands: an empty value has no place of its own
  EXPECT_TRUE(contains(empty.message, "http has no value")) << empty.message;
  EXPECT_TRUE(contains(empty.message, "http: false to revoke it")) << empty.message;

  Problem log = only_problem("tenants:\n  acme:\n    capabilities: {log: false}\n");
  EXPECT_EQ(log.path, "tenants.acme.capabilities.log");
  EXPECT_TRUE(contains(log.message, "log cannot be revoked")) << log.message;
}

TEST(Validation, MalformedPatternsAddressesNamesAndKeysAreRefused) {
  struct Case {
    std::string yaml;
    std::string path;
    std::string says;
  };
  const std::vector<Case> refused = {
      {"defaults: {capabilities: {http: {allow: [ftp://example.com]}}}",
       "defaults.capabilities.http.allow[0]", "scheme must be http or https"},
      {"defaults: {capabilities: {http: {allow: [example.com]}}}",
       "defaults.capabilities.http.allow[0]", "no scheme"},
      {"defaults: {capabilities: {http: {allow: [\"https://*.com\"]}}}",
       "defaults.capabilities.http.allow[0]", "at least two labels"},
      {"defaults: {capabilities: {http: {allow: [\"https://exa*mple.com\"]}}}",
       "defaults.capabilities.http.allow[0]", "may only start with \"*.\""},
      {"defaults: {capabilities: {http: {allow: [\"https://*\"]}}}",
       "defaults.capabilities.http.allow[0]", "may only start with \"*.\""},
      {"defaults: {capabilities: {http: {allow: [\"https://example.com:70000\"]}}}",
       "defaults.capabilities.http.allow[0]", "port must be a number from 1 to 65535"},
      {"defaults: {capabilities: {http: {allow: [\"https://user@example.com\"]}}}",
       "defaults.capabilities.http.allow[0]", "user names and passwords"},
      {"defaults: {capabilities: {http: {allow: [\"https://exa_mple.com\"]}}}",
       "defaults.capabilities.http.allow[0]", "contains '_'"},
      {"defaults: {capabilities: {http: {allow: [\"http://[::1\"]}}}",
       "defaults.capabilities.http.allow[0]", "no closing ']'"},
      {"defaults: {capabilities: {http: {allow: [\"http://300.1.1.1\"]}}}",
       "defaults.capabilities.http.allow[0]", "not a valid IPv4 address"},
      {"defaults: {capabilities: {http: {allow: [https://a.com, https://a.com]}}}",
       "defaults.capabilities.http.allow[1]", "listed twice"},
      {"defaults: {capabilities: {http: {allow_private: [\"10.0.0.1/8\"]}}}",
       "defaults.capabilities.http.allow_private[0]", "did you mean 10.0.0.0/8?"},
      {"defaults: {capabilities: {http: {allow_private: [\"fd00::/129\"]}}}",
       "defaults.capabilities.http.allow_private[0]", "an IPv6 prefix is 0 to 128"},
      {"defaults: {capabilities: {http: {allow_private: [localhost]}}}",
       "defaults.capabilities.http.allow_private[0]", "not an IP address"},
      {"defaults: {capabilities: {emit: {topics: [\"a*b\"]}}}",
       "defaults.capabilities.emit.topics[0]", "only at the end"},
      {"defaults: {capabilities: {emit: {topics: [\"a b\"]}}}",
       "defaults.capabilities.emit.topics[0]", "not a valid topic pattern"},
      {"defaults: {capabilities: {secrets: {names: [\"bad name\"]}}}",
       "defaults.capabilities.secrets.names[0]", "contains ' ' at position 4"},
      {"defaults: {capabilities: {kv: {scope: global}}}", "defaults.capabilities.kv.scope",
       "tenant (one store shared"},
      {"defaults: {governance: {public_keys: [\"not base64!\"]}}",
       "defaults.governance.public_keys[0]", "character 4 is ' '"},
      {"defaults: {governance: {public_keys: [AAAA]}}", "defaults.governance.public_keys[0]",
       "decodes to 3 bytes; an Ed25519 public key is 32"},
      {"defaults: {governance: {signature_required: true}}",
       "defaults.governance.signature_required", "no public key is given"},
      {"tenants: {\"-acme\": {}}", "tenants.-acme", "must start with a letter or digit"},
      {"tenants: {\"ac me\": {}}", "tenants.ac me", "contains ' ' at position 3"},
  };
  for (const auto& [yaml, path, says] : refused) {
    Problem problem = only_problem(yaml);
    EXPECT_EQ(problem.path, path) << yaml;
    EXPECT_EQ(problem.line, 1) << yaml;
    EXPECT_GT(problem.column, 1) << yaml;
    EXPECT_TRUE(contains(problem.message, says)) << yaml << "\n  says: " << problem.message;
  }
}

TEST(Validation, SignaturesNeedKeysWhereverTheyAreResolved) {
  // Keys in the defaults serve a tenant that requires signatures.
  std::string with_default_keys = std::string("defaults: {governance: {public_keys: [") + kKeyA +
                                  "]}}\ntenants: {acme: {governance: {signature_required: true}}}";
  EXPECT_TRUE(
      Policy::parse(with_default_keys).for_tenant("acme").governance.signature_required.value);

  // A tenant emptying the keys the defaults require signatures by is refused at its own line.
  Problem emptied =
      only_problem(std::string("defaults:\n  governance: {signature_required: true, "
                               "public_keys: [") +
                   kKeyA + "]}\ntenants:\n  acme:\n    governance:\n      public_keys: []\n");
  EXPECT_EQ(emptied.path, "tenants.acme.governance.public_keys");
  EXPECT_EQ(emptied.line, 6);
  EXPECT_TRUE(contains(emptied.message, "defaults.governance.signature_required"))
      << emptied.message;
}

TEST(Validation, SyntaxErrorsDuplicatesAndDocumentShape) {
  Problem syntax = only_problem("defaults:\n  limits: {fuel: 1000\n");
  EXPECT_EQ(syntax.path, "");
  EXPECT_GT(syntax.line, 1);
  EXPECT_GT(syntax.column, 0);
  EXPECT_TRUE(contains(syntax.message, "YAML syntax error")) << syntax.message;

  Problem duplicate = only_problem("defaults:\n  limits:\n    fuel: 1000\n    fuel: 2000\n");
  EXPECT_EQ(duplicate.path, "defaults.limits.fuel");
  EXPECT_EQ(duplicate.line, 4);
  EXPECT_TRUE(contains(duplicate.message, "given twice (first on line 3)")) << duplicate.message;

  Problem tenant_twice = only_problem("tenants:\n  acme: {}\n  acme: {}\n");
  EXPECT_EQ(tenant_twice.path, "tenants.acme");
  EXPECT_EQ(tenant_twice.line, 3);

  EXPECT_TRUE(contains(only_problem("").message, "the document is empty"));
  try {
    Policy::parse("");
  } catch (const PolicyInvalid& invalid) {
    EXPECT_TRUE(contains(invalid.what(), "(1 problem):\n  the document is empty"))
        << invalid.what();
  }
  EXPECT_TRUE(contains(only_problem("# only a comment\n").message, "the document is empty"));
  Problem two = only_problem("defaults: {}\n---\ntenants: {}\n");
  EXPECT_TRUE(contains(two.message, "2 YAML documents")) << two.message;

  Problem huge =
      only_problem("defaults: {}\n#" + std::string(corral::policy::kMaxDocumentBytes, 'x'));
  EXPECT_TRUE(contains(huge.message, "at most 1048576")) << huge.message;
}

TEST(Validation, EmptySectionsAreValid) {
  TenantPolicy tenant = Policy::parse(R"(defaults:
  limits:
    # fuel: 1000
  capabilities:
tenants:
  acme:
)")
                            .for_tenant("acme");
  EXPECT_EQ(tenant.limits.fuel.source, kBuiltIn);
  EXPECT_FALSE(tenant.kv);
}

TEST(Validation, ProblemsAreCappedSoAHugeBadDocumentStaysReadable) {
  std::string yaml = "tenants:\n";
  for (int i = 0; i < 150; ++i) yaml += "  t" + std::to_string(i) + ": {limits: {fuel: 1}}\n";
  auto problems = problems_of(yaml);
  ASSERT_EQ(problems.size(), corral::policy::kMaxProblems + 1);
  EXPECT_EQ(problems[0].path, "tenants.t0.limits.fuel");
  EXPECT_TRUE(contains(problems.back().message, "reading stopped after 100 problems"))
      << problems.back().message;
}

TEST(Validation, AliasesCannotMakeASmallDocumentExpensive) {
  // 1000 entries, referred to by 2000 tenants: two million values from a few kilobytes.
  std::string yaml = "defaults:\n  capabilities:\n    emit:\n      topics: &topics [";
  for (int i = 0; i < 1000; ++i) yaml += (i ? ", t" : "t") + std::to_string(i);
  yaml += "]\ntenants:\n";
  for (int i = 0; i < 2000; ++i)
    yaml += "  t" + std::to_string(i) + ": {capabilities: {emit: {topics: *topics}}}\n";
  auto problems = problems_of(yaml);
  ASSERT_FALSE(problems.empty());
  EXPECT_TRUE(contains(problems.back().message, "more than 1000000 values"))
      << problems.back().message;
}

TEST(Validation, DeepNestingIsRefusedNotACrash) {
  Problem deep = only_problem("defaults: " + std::string(100'000, '[') + std::string(100'000, ']'));
  EXPECT_TRUE(contains(deep.message, "nests deeper than 32 levels")) << deep.message;
}

// ---- matching rules the broker shares ------------------------------------------------------

TEST(OriginPatterns, WildcardHostsMatchNamesBelowAndNothingElse) {
  OriginPattern pattern = parse_origin_pattern("https://*.example.com");
  EXPECT_TRUE(pattern.matches("https", "api.example.com", 443));
  EXPECT_TRUE(pattern.matches("https", "a.b.example.com", 443));
  EXPECT_TRUE(pattern.matches("HTTPS", "API.Example.COM", 443));
  EXPECT_TRUE(pattern.matches("https", "api.example.com.", 443));  // the same DNS name
  EXPECT_FALSE(pattern.matches("https", "example.com", 443));
  EXPECT_FALSE(pattern.matches("https", "example.com.evil.org", 443));
  EXPECT_FALSE(pattern.matches("https", "evil-example.com", 443));
  EXPECT_FALSE(pattern.matches("https", "evilexample.com", 443));
  EXPECT_FALSE(pattern.matches("https", ".example.com", 443));
  EXPECT_FALSE(pattern.matches("https", "api.example.com", 8443));  // default port only
  EXPECT_FALSE(pattern.matches("http", "api.example.com", 443));    // scheme mismatch
  EXPECT_FALSE(pattern.matches("https", "a@b.example.com", 443));
  EXPECT_FALSE(pattern.matches("https", "a/b.example.com", 443));
  EXPECT_FALSE(pattern.matches("https", std::string("x\0.example.com", 14), 443));
}

TEST(OriginPatterns, ExactHostsPortsAndAddresses) {
  OriginPattern exact = parse_origin_pattern("http://api.example.com:8080");
  EXPECT_TRUE(exact.matches("http", "api.example.com", 8080));
  EXPECT_FALSE(exact.matches("http", "api.example.com", 80));
  EXPECT_FALSE(exact.matches("http", "x.api.example.com", 8080));
  EXPECT_FALSE(exact.matches("https", "api.example.com", 8080));

  OriginPattern any_port = parse_origin_pattern("http://127.0.0.1:*");
  EXPECT_FALSE(any_port.port);
  EXPECT_TRUE(any_port.matches("http", "127.0.0.1", 1));
  EXPECT_TRUE(any_port.matches("http", "127.0.0.1", 65535));
  EXPECT_FALSE(any_port.matches("http", "127.0.0.2", 80));
  EXPECT_FALSE(any_port.matches("http", "127.1", 80));  // no lenient address forms

  OriginPattern plain_http = parse_origin_pattern("HTTP://Example.com");
  EXPECT_EQ(plain_http.scheme, "http");
  EXPECT_EQ(plain_http.port, 80);
  EXPECT_TRUE(plain_http.matches("http", "example.com", 80));

  OriginPattern v6 = parse_origin_pattern("http://[0:0::1]:8080");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_TRUE(v6.matches("http", "[::1]", 8080));
  EXPECT_TRUE(v6.matches("http", "::1", 8080));
  EXPECT_FALSE(v6.matches("http", "[::2]", 8080));

  corral::policy::HttpGrant grant;
  grant.allow = {parse_origin_pattern("https://a.example"),
                 parse_origin_pattern("https://*.b.example")};
  EXPECT_EQ(grant.matching_pattern("https", "x.b.example", 443), 1u);
  EXPECT_TRUE(grant.allows_url("https", "a.example", 443));
  EXPECT_FALSE(grant.allows_url("https", "b.example", 443));
}

TEST(AddressRanges, KeepTheTextAsWrittenAndTheRangeItNames) {
  AddressRange ten = AddressRange::parse("10.0.0.0/8");
  EXPECT_EQ(ten.text, "10.0.0.0/8");
  EXPECT_EQ(ten.range.to_string(), "10.0.0.0/8");
  EXPECT_EQ(AddressRange::parse("127.0.0.1").range.to_string(), "127.0.0.1/32");
  EXPECT_EQ(AddressRange::parse("FD00::/8").range.to_string(), "fd00::/8");
  EXPECT_THROW(AddressRange::parse("192.168.1.0/23"), std::invalid_argument);
}

TEST(Topics, ExactTopicsAndPrefixes) {
  using corral::policy::topic_matches;
  EXPECT_TRUE(topic_matches("orders.created", "orders.created"));
  EXPECT_FALSE(topic_matches("orders.created", "orders.created.v2"));
  EXPECT_TRUE(topic_matches("orders.*", "orders.created"));
  EXPECT_TRUE(topic_matches("orders.*", "orders."));
  EXPECT_FALSE(topic_matches("orders.*", "orders"));
  EXPECT_FALSE(topic_matches("orders.*", "billing.orders.x"));
  EXPECT_TRUE(topic_matches("*", "anything/at:all"));
  EXPECT_FALSE(topic_matches("*", "has space"));
  EXPECT_FALSE(topic_matches("*", ""));
  EXPECT_FALSE(topic_matches("*", std::string(129, 'a')));

  corral::policy::EmitGrant grant;
  grant.topics = {"orders.created", "billing.*"};
  EXPECT_TRUE(grant.allows_topic("billing.paid"));
  EXPECT_EQ(grant.matching_topic("billing.paid"), 1u);
  EXPECT_FALSE(grant.allows_topic("orders.deleted"));
  EXPECT_THROW(corral::policy::check_topic_pattern("*.x"), std::invalid_argument);
  EXPECT_NO_THROW(corral::policy::check_topic_pattern("*"));
}

TEST(Secrets, NamesRestrictWhichSecretsAreReadable) {
  corral::policy::SecretsGrant all;
  EXPECT_TRUE(all.allows("anything"));
  EXPECT_FALSE(all.allows("../other-tenant"));
  corral::policy::SecretsGrant some;
  some.names = std::vector<std::string>{"stripe_key"};
  EXPECT_TRUE(some.allows("stripe_key"));
  EXPECT_FALSE(some.allows("db_password"));
}

TEST(PublicKeys, AcceptThirtyTwoBytesOfStandardBase64) {
  PublicKey key = PublicKey::parse(kKeyB);
  EXPECT_EQ(key.base64, kKeyB);
  EXPECT_EQ(key.bytes[0], 0x19);                                       // "GV5" → 19 5e ..
  EXPECT_EQ(PublicKey::parse(std::string(kKeyB).substr(0, 43)), key);  // padding optional
  EXPECT_THROW(PublicKey::parse(std::string(kKeyB) + "AAAA"), std::invalid_argument);
  EXPECT_THROW(PublicKey::parse("GV56i-o-H_XdP9ldZxDqV2L9mJ5z4c9F_bN9VuUrRAo="),
               std::invalid_argument);  // URL-safe alphabet
  EXPECT_THROW(PublicKey::parse(""), std::invalid_argument);
}

// ---- explain -------------------------------------------------------------------------------

class Explain : public ::testing::Test {
 protected:
  Policy policy = Policy::parse(std::string(R"(defaults:
  capabilities:
    log: {max_entry_bytes: 100}
tenants:
  acme:
    capabilities:
      kv: {max_key_bytes: 8}
      http:
        allow: [https://api.example.com, "http://*.internal.example:*"]
      emit: {topics: [orders.created, "billing.*"]}
      secrets: {names: [stripe_key]}
    governance:
      approval_required: false
      self_approval_allowed: true
      signature_required: true
      public_keys: [)") + kKeyA +
                                ", " + kKeyB + R"(]
  bob:
    capabilities:
      http: {}
      emit: {}
      secrets: {}
)");
};

TEST_F(Explain, LogIsAlwaysAllowed) {
  for (const char* action : {"log.debug", "log.info", "log.warn", "log.error"}) {
    Decision decision = policy.explain("nobody", action);
    EXPECT_TRUE(decision.allowed) << action;
    EXPECT_EQ(decision.rule, "defaults.capabilities.log");
    EXPECT_TRUE(contains(decision.reason, "capped at 100 bytes")) << decision.reason;
  }
  EXPECT_EQ(Policy::parse("defaults: {}").explain("t", "log.info").rule,
            "built-in: ctx.log is always granted");
}

TEST_F(Explain, KvCallsNameTheGrantOrSayNothingGrantsIt) {
  for (const char* action : {"kv.get", "kv.put", "kv.delete", "kv.list"}) {
    Decision allowed = policy.explain("acme", action);
    EXPECT_TRUE(allowed.allowed) << action;
    EXPECT_EQ(allowed.rule, "tenants.acme.capabilities.kv");
    Decision denied = policy.explain("bob", action);
    EXPECT_FALSE(denied.allowed) << action;
    EXPECT_EQ(denied.rule, "no rule grants kv to tenant \"bob\"");
    EXPECT_TRUE(contains(denied.reason, "add kv: {…}")) << denied.reason;
  }
  Decision long_key = policy.explain("acme", "kv.put 123456789");
  EXPECT_FALSE(long_key.allowed);
  EXPECT_TRUE(contains(long_key.reason, "max_key_bytes")) << long_key.reason;
  EXPECT_TRUE(policy.explain("acme", "kv.put:12345678").allowed);
}

TEST_F(Explain, HttpFetchChecksTheUrlAgainstTheAllowPatterns) {
  Decision exact = policy.explain("acme", "http.fetch https://api.example.com/v1/x?y=1");
  EXPECT_TRUE(exact.allowed);
  EXPECT_EQ(exact.rule, "tenants.acme.capabilities.http.allow[0]");
  Decision wildcard = policy.explain("acme", "http.fetch:http://db.internal.example:5984/");
  EXPECT_TRUE(wildcard.allowed);
  EXPECT_EQ(wildcard.rule, "tenants.acme.capabilities.http.allow[1]");

  for (const char* url : {"https://api.example.com:8443/", "http://api.example.com/",
                          "https://evil.example.org/", "https://api.example.com.evil.org/"}) {
    Decision denied = policy.explain("acme", std::string("http.fetch ") + url);
    EXPECT_FALSE(denied.allowed) << url;
    EXPECT_EQ(denied.rule, "tenants.acme.capabilities.http.allow");
    EXPECT_TRUE(contains(denied.reason, "matches none of https://api.example.com"))
        << denied.reason;
  }
  Decision any = policy.explain("acme", "http.fetch");
  EXPECT_TRUE(any.allowed);
  EXPECT_TRUE(contains(any.reason, "2 patterns")) << any.reason;

  Decision empty_allow = policy.explain("bob", "http.fetch https://api.example.com");
  EXPECT_FALSE(empty_allow.allowed);
  EXPECT_TRUE(contains(empty_allow.reason, "allow list is empty")) << empty_allow.reason;
  EXPECT_FALSE(policy.explain("nobody", "http.fetch https://api.example.com").allowed);
  EXPECT_THROW(policy.explain("acme", "http.fetch https://user@api.example.com/"),
               std::invalid_argument);
  EXPECT_THROW(policy.explain("acme", "http.fetch api.example.com"), std::invalid_argument);
}

TEST_F(Explain, EmitChecksTheTopic) {
  Decision exact = policy.explain("acme", "emit orders.created");
  EXPECT_TRUE(exact.allowed);
  EXPECT_EQ(exact.rule, "tenants.acme.capabilities.emit.topics[0]");
  Decision prefix = policy.explain("acme", "emit:billing.refunded");
  EXPECT_TRUE(prefix.allowed);
  EXPECT_EQ(prefix.rule, "tenants.acme.capabilities.emit.topics[1]");
  Decision other = policy.explain("acme", "emit orders.deleted");
  EXPECT_FALSE(other.allowed);
  EXPECT_EQ(other.rule, "tenants.acme.capabilities.emit.topics");
  EXPECT_FALSE(policy.explain("bob", "emit orders.created").allowed);
  EXPECT_FALSE(policy.explain("nobody", "emit").allowed);
  EXPECT_THROW(policy.explain("acme", "emit bad topic!"), std::invalid_argument);
}

TEST_F(Explain, SecretsGetChecksTheName) {
  Decision named = policy.explain("acme", "secrets.get stripe_key");
  EXPECT_TRUE(named.allowed);
  EXPECT_EQ(named.rule, "tenants.acme.capabilities.secrets.names[0]");
  Decision other = policy.explain("acme", "secrets.get db_password");
  EXPECT_FALSE(other.allowed);
  EXPECT_EQ(other.rule, "tenants.acme.capabilities.secrets.names");
  Decision any = policy.explain("bob", "secrets.get db_password");
  EXPECT_TRUE(any.allowed);
  EXPECT_EQ(any.rule, "tenants.bob.capabilities.secrets");
  EXPECT_FALSE(policy.explain("nobody", "secrets.get stripe_key").allowed);
}

TEST_F(Explain, GovernanceActions) {
  Decision publish = policy.explain("acme", "publish");
  EXPECT_TRUE(publish.allowed);
  EXPECT_EQ(publish.rule, "tenants.acme.governance.signature_required");
  EXPECT_TRUE(contains(publish.reason, "by one of the tenant's 2 public keys")) << publish.reason;
  Decision unsigned_publish = policy.explain("acme", "publish_unsigned");
  EXPECT_FALSE(unsigned_publish.allowed);
  EXPECT_EQ(unsigned_publish.rule, "tenants.acme.governance.signature_required");
  Decision unapproved = policy.explain("acme", "invoke_unapproved");
  EXPECT_TRUE(unapproved.allowed);
  EXPECT_EQ(unapproved.rule, "tenants.acme.governance.approval_required");
  EXPECT_TRUE(policy.explain("acme", "self_approve").allowed);

  // bob has the built-in governance.
  EXPECT_TRUE(policy.explain("bob", "publish_unsigned").allowed);
  Decision bob_unapproved = policy.explain("bob", "invoke_unapproved");
  EXPECT_FALSE(bob_unapproved.allowed);
  EXPECT_EQ(bob_unapproved.rule, "built-in default of governance.approval_required");
  Decision bob_self = policy.explain("bob", "self_approve");
  EXPECT_FALSE(bob_self.allowed);
  EXPECT_TRUE(contains(bob_self.reason, "another reviewer")) << bob_self.reason;
}

TEST_F(Explain, UnknownActionsAndStrayTargetsAreRefused) {
  try {
    policy.explain("acme", "kv.drop");
    FAIL() << "accepted";
  } catch (const std::invalid_argument& error) {
    EXPECT_TRUE(contains(error.what(), "unknown action \"kv.drop\"")) << error.what();
    EXPECT_TRUE(contains(error.what(), "kv.get, kv.put")) << error.what();
    EXPECT_TRUE(contains(error.what(), "self_approve")) << error.what();
  }
  EXPECT_THROW(policy.explain("acme", "publish now"), std::invalid_argument);
  EXPECT_THROW(policy.explain("acme", "log.info hello"), std::invalid_argument);
  EXPECT_THROW(policy.explain("acme", ""), std::invalid_argument);
  EXPECT_THROW(policy.explain("no tenant", "publish"), std::invalid_argument);
}

// ---- diff ----------------------------------------------------------------------------------

TEST(Diff, NamesEachResolvedChangeOnce) {
  Policy before = Policy::parse(R"(defaults:
  limits: {fuel: 1000000}
tenants:
  acme:
    limits: {fuel: 1000000}
    capabilities: {kv: {}}
  bob: {}
)");
  Policy after = Policy::parse(R"(defaults:
  limits: {fuel: 2000000, timeout_ms: 1000}
  quotas: {rate_per_second: 2.5}
tenants:
  acme:
    limits: {fuel: 2000000}
    capabilities:
      kv: {max_keys: 10}
      http: {allow: [https://api.example.com]}
  carol: {}
)");
  std::vector<std::string> expected = {
      "defaults.limits.fuel: 1000000 → 2000000",
      "defaults.quotas.rate_per_second: 10 → 2.5",
      "tenants.bob: removed",
      "tenants.acme.capabilities.http: added",
      "tenants.acme.capabilities.kv.max_keys: 10000 → 10",
      "tenants.acme.limits.fuel: 1000000 → 2000000",
      "tenants.carol: added",
  };
  EXPECT_EQ(diff(before, after), expected);
  // timeout_ms: 1000 is the built-in value spelt out: no change in effect, no line.
}

TEST(Diff, RevokingAndRestoringAGrantAndChangingGovernance) {
  Policy before = Policy::parse(R"(defaults:
  capabilities: {kv: {}}
tenants:
  acme: {}
)");
  Policy after = Policy::parse(std::string(R"(defaults:
  capabilities: {kv: {}}
tenants:
  acme:
    capabilities: {kv: false}
    governance: {signature_required: true, public_keys: [)") +
                               kKeyA + R"(]}
)");
  std::vector<std::string> expected = {
      "tenants.acme.capabilities.kv: removed",
      "tenants.acme.governance.public_keys: [] → [" + std::string(kKeyA) + "]",
      "tenants.acme.governance.signature_required: false → true",
  };
  EXPECT_EQ(diff(before, after), expected);
  EXPECT_EQ(diff(after, before),
            (std::vector<std::string>{
                "tenants.acme.capabilities.kv: added",
                "tenants.acme.governance.public_keys: [" + std::string(kKeyA) + "] → []",
                "tenants.acme.governance.signature_required: true → false"}));
  EXPECT_TRUE(diff(before, before).empty());
}

TEST(Diff, ADefaultChangeIsReportedUnderDefaultsOnly) {
  Policy before = Policy::parse("defaults: {}\ntenants: {acme: {}, bob: {}}\n");
  Policy after = Policy::parse(
      "defaults: {capabilities: {emit: {topics: [a]}}}\ntenants: {acme: {}, bob: {}}\n");
  EXPECT_EQ(diff(before, after), std::vector<std::string>{"defaults.capabilities.emit: added"});
}

// ---- secret references: secrets.bind and secrets.reference_only ---------------------------

TEST(SecretReferences, BindAndReferenceOnlyAreReadAndExplained) {
  Policy policy = Policy::parse(R"(tenants:
  acme:
    capabilities:
      secrets:
        names: [stripe, hook]
        bind:
          stripe: ["https://api.stripe.com", "https://*.stripe.com:8443"]
          hook: ["http://127.0.0.1:9000"]
        reference_only: [stripe]
)");
  TenantPolicy acme = policy.for_tenant("acme");
  ASSERT_TRUE(acme.secrets);
  const auto* stripe = acme.secrets->binding("stripe");
  ASSERT_NE(stripe, nullptr);
  ASSERT_EQ(stripe->origins.size(), 2u);
  EXPECT_TRUE(stripe->origins[0].matches("https", "api.stripe.com", 443));
  EXPECT_FALSE(stripe->origins[0].matches("https", "api.stripe.com.evil.org", 443));
  EXPECT_TRUE(stripe->origins[1].matches("https", "files.stripe.com", 8443));
  EXPECT_EQ(acme.secrets->binding("other"), nullptr);
  EXPECT_TRUE(acme.secrets->is_reference_only("stripe"));
  EXPECT_FALSE(acme.secrets->is_reference_only("hook"));

  Decision get = policy.explain("acme", "secrets.get stripe");
  EXPECT_FALSE(get.allowed);
  EXPECT_EQ(get.rule, "tenants.acme.capabilities.secrets.reference_only");
  EXPECT_TRUE(contains(get.reason, "ctx.secrets.ref(\"stripe\")")) << get.reason;
  EXPECT_TRUE(policy.explain("acme", "secrets.get hook").allowed);

  // secrets.ref NAME [URL] answers what the broker does with a reference in a fetch.
  Decision bound = policy.explain("acme", "secrets.ref stripe https://api.stripe.com/v1/charges");
  EXPECT_TRUE(bound.allowed) << bound.reason;
  EXPECT_EQ(bound.rule, "tenants.acme.capabilities.secrets.bind.stripe[0]");
  Decision elsewhere = policy.explain("acme", "secrets.ref stripe https://evil.example/x");
  EXPECT_FALSE(elsewhere.allowed);
  EXPECT_EQ(elsewhere.rule, "tenants.acme.capabilities.secrets.bind.stripe");
  EXPECT_TRUE(contains(elsewhere.reason, "https://evil.example:443")) << elsewhere.reason;
  Decision where = policy.explain("acme", "secrets.ref hook");
  EXPECT_TRUE(where.allowed);
  EXPECT_TRUE(contains(where.reason, "http://127.0.0.1:9000")) << where.reason;
  EXPECT_FALSE(policy.explain("acme", "secrets.ref other https://api.stripe.com").allowed);
  EXPECT_THROW(policy.explain("acme", "secrets.ref"), std::invalid_argument);

  // With every name granted (no names), reference_only still holds.
  Decision all = Policy::parse(
                     "tenants: {acme: {capabilities: {secrets: {bind: {k: "
                     "[\"https://a.example\"]}, reference_only: [k]}}}}")
                     .explain("acme", "secrets.get k");
  EXPECT_FALSE(all.allowed);
  EXPECT_EQ(all.rule, "tenants.acme.capabilities.secrets.reference_only");

  // diff names a change of binding or of reference_only.
  Policy loosened = Policy::parse(R"(tenants:
  acme:
    capabilities:
      secrets:
        names: [stripe, hook]
        bind:
          stripe: ["https://api.stripe.com", "https://evil.example"]
          hook: ["http://127.0.0.1:9000"]
)");
  auto changes = diff(policy, loosened);
  std::string all_changes;
  for (const auto& change : changes) all_changes += change + "\n";
  EXPECT_TRUE(contains(all_changes, "tenants.acme.capabilities.secrets.bind")) << all_changes;
  EXPECT_TRUE(contains(all_changes, "https://evil.example")) << all_changes;
  EXPECT_TRUE(contains(all_changes, "tenants.acme.capabilities.secrets.reference_only"))
      << all_changes;
}

TEST(SecretReferences, MistakesAreRefusedWithThePathAndWhatToWrite) {
  struct Case {
    std::string yaml, path, says;
  };
  const std::string head = "defaults:\n  capabilities:\n    secrets:\n";
  const std::vector<Case> refused = {
      {head + "      bind: {stripe: [\"https://api.stripe.com/v1\"]}\n",
       "defaults.capabilities.secrets.bind.stripe[0]", "remove \"/v1\""},
      {head + "      bind: {stripe: [\"ftp://api.stripe.com\"]}\n",
       "defaults.capabilities.secrets.bind.stripe[0]", "http or https"},
      {head + "      bind: {stripe: \"https://api.stripe.com\"}\n",
       "defaults.capabilities.secrets.bind.stripe", "expected a list of origin patterns"},
      {head + "      bind: [stripe]\n", "defaults.capabilities.secrets.bind",
       "expected a mapping from secret names to lists of origin patterns"},
      {head + "      bind: {\"bad name\": [\"https://a.example\"]}\n",
       "defaults.capabilities.secrets.bind.bad name", "contains ' '"},
      {head + "      names: [hook]\n      bind: {stripe: [\"https://api.stripe.com\"]}\n",
       "defaults.capabilities.secrets.bind.stripe",
       "is not among defaults.capabilities.secrets.names; add it there"},
      {head + "      names: [stripe, hook]\n      bind: {stripe: [\"https://api.stripe.com\"]}\n"
              "      reference_only: [hook]\n",
       "defaults.capabilities.secrets.reference_only[0]",
       "add defaults.capabilities.secrets.bind.hook: [\"https://...\"]"},
      {head + "      names: [hook]\n      bind: {hook: [\"https://a.example\"]}\n"
              "      reference_only: [hook, stripe]\n",
       "defaults.capabilities.secrets.reference_only[1]", "is not among"},
      {head + "      bind: {hook: []}\n      reference_only: [hook]\n",
       "defaults.capabilities.secrets.reference_only[0]", "bound to no origin"},
      {head + "      bnid: {}\n", "defaults.capabilities.secrets.bnid", "did you mean \"bind\"?"},
  };
  for (const auto& [yaml, path, says] : refused) {
    auto problems = problems_of(yaml);
    bool found = false;
    std::string seen;
    for (const auto& problem : problems) {
      seen += problem.path + ": " + problem.message + "\n";
      if (problem.path == path && contains(problem.message, says)) found = true;
    }
    EXPECT_TRUE(found) << yaml << "\n  problems:\n" << seen;
  }
}

}  // namespace
