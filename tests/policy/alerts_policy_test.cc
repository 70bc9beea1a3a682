// The alerts section of the policy: built-in defaults spelt out in the safe default, overrides
// field by field with the rule that set each value, validation with path and position, and diff.
#include <gtest/gtest.h>

#include "policy/policy.h"
#include "policy/problems_of.h"

namespace {

using corral::policy::Containment;
using corral::policy::kBuiltIn;
using corral::policy::Policy;
using corral::policy::PolicyInvalid;
using corral::policy::Problem;
using corral::policy::TenantPolicy;

using corral::testing::problems_of;

TEST(AlertsPolicy, BuiltInDefaultsAreSpeltOutInTheSafeDefault) {
  for (const TenantPolicy& tenant :
       {Policy::parse("defaults: {}").for_tenant("t"), Policy::safe_default().for_tenant("t")}) {
    EXPECT_TRUE(tenant.alerts.enabled.value);
    EXPECT_EQ(tenant.alerts.window_seconds.value, 60);
    EXPECT_EQ(tenant.alerts.min_runs.value, 20);
    EXPECT_EQ(tenant.alerts.warmup_runs.value, 100);
    EXPECT_DOUBLE_EQ(tenant.alerts.error_rate_increase.value, 0.2);
    EXPECT_DOUBLE_EQ(tenant.alerts.latency_factor.value, 3);
    EXPECT_DOUBLE_EQ(tenant.alerts.fuel_factor.value, 3);
    EXPECT_DOUBLE_EQ(tenant.alerts.memory_factor.value, 3);
    EXPECT_EQ(tenant.alerts.contain.value, Containment::none);
  }
  EXPECT_EQ(Policy::parse("defaults: {}").for_tenant("t").alerts.min_runs.source, kBuiltIn);
  EXPECT_EQ(Policy::safe_default().for_tenant("t").alerts.contain.source,
            "defaults.alerts.contain");
}

TEST(AlertsPolicy, ATenantOverridesFieldByField) {
  Policy policy = Policy::parse(R"(defaults:
  alerts: {window_seconds: 30, latency_factor: 4}
tenants:
  acme:
    alerts:
      error_rate_increase: 0.05
      contain: auto
)");
  TenantPolicy acme = policy.for_tenant("acme");
  EXPECT_EQ(acme.alerts.window_seconds.value, 30);
  EXPECT_EQ(acme.alerts.window_seconds.source, "defaults.alerts.window_seconds");
  EXPECT_DOUBLE_EQ(acme.alerts.latency_factor.value, 4);
  EXPECT_DOUBLE_EQ(acme.alerts.error_rate_increase.value, 0.05);
  EXPECT_EQ(acme.alerts.error_rate_increase.source, "tenants.acme.alerts.error_rate_increase");
  EXPECT_EQ(acme.alerts.contain.value, Containment::quarantine);
  EXPECT_EQ(acme.alerts.min_runs.source, kBuiltIn);
  EXPECT_EQ(policy.for_tenant("bob").alerts.contain.value, Containment::none);
}

TEST(AlertsPolicy, ValuesOutOfRangeUnknownKeysAndWrongTypesAreRefusedWithTheirPlace) {
  struct Case {
    std::string yaml;
    std::string path;
    int line;
    std::string says;
  };
  const std::vector<Case> refused = {
      {"defaults: {alerts: {window_seconds: 0}}", "defaults.alerts.window_seconds", 1,
       "out of range"},
      {"defaults: {alerts: {min_runs: 0}}", "defaults.alerts.min_runs", 1, "out of range"},
      {"defaults: {alerts: {warmup_runs: 10000001}}", "defaults.alerts.warmup_runs", 1,
       "out of range"},
      {"defaults: {alerts: {error_rate_increase: 0}}", "defaults.alerts.error_rate_increase", 1,
       "greater than 0 and at most 1"},
      {"defaults: {alerts: {error_rate_increase: 1.5}}", "defaults.alerts.error_rate_increase", 1,
       "out of range"},
      {"defaults: {alerts: {latency_factor: 1}}", "defaults.alerts.latency_factor", 1,
       "greater than 1 and at most 1000"},
      {"defaults: {alerts: {fuel_factor: \"3\"}}", "defaults.alerts.fuel_factor", 1, "expected"},
      {"defaults: {alerts: {enabled: yes}}", "defaults.alerts.enabled", 1, "true or false"},
      {"tenants:\n  acme:\n    alerts:\n      contain: always\n", "tenants.acme.alerts.contain", 4,
       "contain must be none"},
      {"tenants:\n  acme:\n    alerts:\n      memory_factr: 3\n",
       "tenants.acme.alerts.memory_factr", 4, "did you mean \"memory_factor\"?"},
      {"defaults: {alerts: 5}", "defaults.alerts", 1, ""},
  };
  for (const auto& [yaml, path, line, says] : refused) {
    auto problems = problems_of(yaml);
    ASSERT_EQ(problems.size(), 1u) << yaml;
    EXPECT_EQ(problems[0].path, path) << yaml;
    EXPECT_EQ(problems[0].line, line) << yaml;
    EXPECT_NE(problems[0].message.find(says), std::string::npos) << problems[0].message;
  }
}

TEST(AlertsPolicy, DiffNamesEachChange) {
  Policy before = Policy::parse("tenants:\n  acme: {}\n");
  Policy after =
      Policy::parse("tenants:\n  acme:\n    alerts: {contain: auto, fuel_factor: 2.5}\n");
  std::vector<std::string> expected = {"tenants.acme.alerts.contain: none → auto",
                                       "tenants.acme.alerts.fuel_factor: 3 → 2.5"};
  EXPECT_EQ(corral::policy::diff(before, after), expected);
}

}  // namespace
