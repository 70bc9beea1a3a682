// The circuit_breaker section of the policy: defaults, overrides field by field with the rule that
// set each value, validation with path and position, and diff.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "policy/policy.h"
#include "policy/problems_of.h"

namespace {

using corral::policy::kBuiltIn;
using corral::policy::Policy;
using corral::policy::PolicyInvalid;
using corral::policy::Problem;
using corral::policy::TenantPolicy;

using corral::testing::problems_of;

TEST(CircuitBreakerPolicy, BuiltInDefaultsAreSpeltOutInTheSafeDefault) {
  TenantPolicy built_in = Policy::parse("defaults: {}").for_tenant("t");
  EXPECT_EQ(built_in.circuit_breaker.failures.value, 5);
  EXPECT_EQ(built_in.circuit_breaker.window_seconds.value, 60);
  EXPECT_EQ(built_in.circuit_breaker.cooldown_seconds.value, 30);
  EXPECT_EQ(built_in.circuit_breaker.probes.value, 1);
  EXPECT_EQ(built_in.circuit_breaker.failures.source, kBuiltIn);

  TenantPolicy spelt = Policy::safe_default().for_tenant("t");
  EXPECT_EQ(spelt.circuit_breaker.failures.value, 5);
  EXPECT_EQ(spelt.circuit_breaker.window_seconds.value, 60);
  EXPECT_EQ(spelt.circuit_breaker.cooldown_seconds.value, 30);
  EXPECT_EQ(spelt.circuit_breaker.probes.value, 1);
  EXPECT_EQ(spelt.circuit_breaker.failures.source, "defaults.circuit_breaker.failures");
}

TEST(CircuitBreakerPolicy, ATenantOverridesFieldByField) {
  Policy policy = Policy::parse(R"(defaults:
  circuit_breaker: {failures: 10, cooldown_seconds: 120}
tenants:
  acme:
    circuit_breaker:
      failures: 3
      probes: 2
  bob: {}
)");
  TenantPolicy acme = policy.for_tenant("acme");
  EXPECT_EQ(acme.circuit_breaker.failures.value, 3);
  EXPECT_EQ(acme.circuit_breaker.failures.source, "tenants.acme.circuit_breaker.failures");
  EXPECT_EQ(acme.circuit_breaker.cooldown_seconds.value, 120);
  EXPECT_EQ(acme.circuit_breaker.cooldown_seconds.source,
            "defaults.circuit_breaker.cooldown_seconds");
  EXPECT_EQ(acme.circuit_breaker.window_seconds.value, 60);
  EXPECT_EQ(acme.circuit_breaker.window_seconds.source, kBuiltIn);
  EXPECT_EQ(acme.circuit_breaker.probes.value, 2);
  EXPECT_EQ(policy.for_tenant("bob").circuit_breaker.failures.value, 10);
}

TEST(CircuitBreakerPolicy, ValuesOutOfRangeUnknownKeysAndWrongTypesAreRefusedWithTheirPlace) {
  struct Case {
    std::string yaml;
    std::string path;
    int line;
  };
  const std::vector<Case> refused = {
      {"defaults: {circuit_breaker: {failures: 0}}", "defaults.circuit_breaker.failures", 1},
      {"defaults: {circuit_breaker: {failures: 1001}}", "defaults.circuit_breaker.failures", 1},
      {"defaults: {circuit_breaker: {window_seconds: 0}}",
       "defaults.circuit_breaker.window_seconds", 1},
      {"defaults: {circuit_breaker: {cooldown_seconds: 86401}}",
       "defaults.circuit_breaker.cooldown_seconds", 1},
      {"defaults: {circuit_breaker: {probes: 101}}", "defaults.circuit_breaker.probes", 1},
      {"defaults: {circuit_breaker: {probes: \"2\"}}", "defaults.circuit_breaker.probes", 1},
      {"defaults: {circuit_breaker: 5}", "defaults.circuit_breaker", 1},
      {"tenants:\n  acme:\n    circuit_breaker:\n      failure: 3\n",
       "tenants.acme.circuit_breaker.failure", 4},
  };
  for (const auto& [yaml, path, line] : refused) {
    auto problems = problems_of(yaml);
    ASSERT_EQ(problems.size(), 1u) << yaml;
    EXPECT_EQ(problems[0].path, path) << yaml;
    EXPECT_EQ(problems[0].line, line) << yaml;
  }
  auto misspelt = problems_of("tenants:\n  acme:\n    circuit_breaker:\n      failure: 3\n");
  ASSERT_EQ(misspelt.size(), 1u);
  EXPECT_NE(misspelt[0].message.find("did you mean \"failures\"?"), std::string::npos)
      << misspelt[0].message;
  auto section = problems_of("defaults: {circuit_breakers: {}}");
  ASSERT_EQ(section.size(), 1u);
  EXPECT_NE(section[0].message.find("\"circuit_breaker\""), std::string::npos)
      << section[0].message;

  TenantPolicy edges = Policy::parse(
                           "defaults: {circuit_breaker: {failures: 1, window_seconds: 86400, "
                           "cooldown_seconds: 1, probes: 100}}")
                           .for_tenant("t");
  EXPECT_EQ(edges.circuit_breaker.failures.value, 1);
  EXPECT_EQ(edges.circuit_breaker.window_seconds.value, 86400);
  EXPECT_EQ(edges.circuit_breaker.cooldown_seconds.value, 1);
  EXPECT_EQ(edges.circuit_breaker.probes.value, 100);
}

TEST(CircuitBreakerPolicy, DiffNamesEachChange) {
  Policy before = Policy::parse("tenants:\n  acme: {}\n");
  Policy after = Policy::parse(R"(defaults:
  circuit_breaker: {cooldown_seconds: 10}
tenants:
  acme:
    circuit_breaker: {failures: 3, probes: 5}
)");
  std::vector<std::string> expected = {
      "defaults.circuit_breaker.cooldown_seconds: 30 → 10",
      "tenants.acme.circuit_breaker.failures: 5 → 3",
      "tenants.acme.circuit_breaker.probes: 1 → 5",
  };
  EXPECT_EQ(corral::policy::diff(before, after), expected);
  // Spelling out the built-in values changes nothing.
  EXPECT_TRUE(corral::policy::diff(Policy::parse("defaults: {}"),
                                   Policy::parse("defaults: {circuit_breaker: {failures: 5}}"))
                  .empty());
}

TEST(CircuitBreakerPolicy, TheExampleFileSetsTheBuiltInValues) {
  std::ifstream file(std::string(CORRAL_SOURCE_DIR) + "/examples/policy.yaml");
  ASSERT_TRUE(file) << "examples/policy.yaml is missing";
  std::stringstream text;
  text << file.rdbuf();
  TenantPolicy acme = Policy::parse(text.str()).for_tenant("acme");
  EXPECT_EQ(acme.circuit_breaker.failures.value, 5);
  EXPECT_EQ(acme.circuit_breaker.failures.source, "defaults.circuit_breaker.failures");
  EXPECT_EQ(acme.circuit_breaker.probes.value, 1);
}

}  // namespace
