// The sections issue 6 adds to the policy: limits.batch_inputs, cache, jobs and runs. Defaults
// spelt out in the safe default, overrides field by field, validation with place, and diff.
#include <gtest/gtest.h>

#include "policy/policy.h"
#include "policy/problems_of.h"

namespace {

using corral::policy::kBuiltIn;
using corral::policy::Policy;
using corral::policy::PolicyInvalid;
using corral::policy::Problem;
using corral::policy::TenantPolicy;

using corral::testing::problems_of;

TEST(ExecutionPolicy, BuiltInDefaultsAreSpeltOutInTheSafeDefault) {
  for (const TenantPolicy& policy :
       {Policy::parse("defaults: {}").for_tenant("t"), Policy::safe_default().for_tenant("t")}) {
    EXPECT_EQ(policy.limits.batch_inputs.value, 100);
    EXPECT_TRUE(policy.cache.enabled.value);
    EXPECT_EQ(policy.jobs.max_attempts.value, 3);
    EXPECT_EQ(policy.jobs.webhook_attempts.value, 5);
    EXPECT_EQ(policy.jobs.webhook_backoff_ms.value, 1000);
    EXPECT_EQ(policy.runs.keep.value, 20);
    EXPECT_FALSE(policy.runs.inputs.value);
    EXPECT_FALSE(policy.jobs.inputs.value);  // a job's input goes when it ends
  }
  EXPECT_EQ(Policy::parse("defaults: {}").for_tenant("t").runs.keep.source, kBuiltIn);
  EXPECT_EQ(Policy::safe_default().for_tenant("t").runs.keep.source, "defaults.runs.keep");
  EXPECT_EQ(Policy::safe_default().for_tenant("t").cache.enabled.source, "defaults.cache.enabled");
}

TEST(ExecutionPolicy, ATenantOverridesFieldByField) {
  Policy policy = Policy::parse(R"(defaults:
  jobs: {max_attempts: 5}
  runs: {keep: 50}
tenants:
  acme:
    limits: {batch_inputs: 10}
    cache: {enabled: false}
    jobs: {webhook_attempts: 2, inputs: true}
    runs: {inputs: true}
)");
  TenantPolicy acme = policy.for_tenant("acme");
  EXPECT_EQ(acme.limits.batch_inputs.value, 10);
  EXPECT_EQ(acme.limits.batch_inputs.source, "tenants.acme.limits.batch_inputs");
  EXPECT_FALSE(acme.cache.enabled.value);
  EXPECT_EQ(acme.cache.enabled.source, "tenants.acme.cache.enabled");
  EXPECT_EQ(acme.jobs.max_attempts.value, 5);
  EXPECT_EQ(acme.jobs.max_attempts.source, "defaults.jobs.max_attempts");
  EXPECT_EQ(acme.jobs.webhook_attempts.value, 2);
  EXPECT_EQ(acme.runs.keep.value, 50);
  EXPECT_TRUE(acme.runs.inputs.value);
  EXPECT_TRUE(acme.jobs.inputs.value);
  EXPECT_EQ(acme.jobs.inputs.source, "tenants.acme.jobs.inputs");
  TenantPolicy other = policy.for_tenant("other");
  EXPECT_FALSE(other.jobs.inputs.value);
  EXPECT_TRUE(other.cache.enabled.value);
  EXPECT_FALSE(other.runs.inputs.value);
}

TEST(ExecutionPolicy, ValuesOutOfRangeUnknownKeysAndWrongTypesAreRefusedWithTheirPlace) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"defaults: {limits: {batch_inputs: 0}}", "defaults.limits.batch_inputs"},
      {"defaults: {limits: {batch_inputs: 10001}}", "defaults.limits.batch_inputs"},
      {"defaults: {cache: {enabled: 3}}", "defaults.cache.enabled"},
      {"defaults: {cache: {size: 3}}", "defaults.cache.size"},
      {"defaults: {jobs: {max_attempts: 0}}", "defaults.jobs.max_attempts"},
      {"defaults: {jobs: {webhook_attempts: 21}}", "defaults.jobs.webhook_attempts"},
      {"defaults: {jobs: {webhook_backoff_ms: 5}}", "defaults.jobs.webhook_backoff_ms"},
      {"defaults: {runs: {keep: 1001}}", "defaults.runs.keep"},
      {"defaults: {runs: {keep: -1}}", "defaults.runs.keep"},
      {"defaults: {runs: {inputs: \"yes please\"}}", "defaults.runs.inputs"},
      {"defaults: {jobs: {inputs: 1}}", "defaults.jobs.inputs"},
      {"defaults: {runs: 5}", "defaults.runs"},
  };
  for (const auto& [yaml, path] : refused) {
    auto problems = problems_of(yaml);
    ASSERT_EQ(problems.size(), 1u) << yaml;
    EXPECT_EQ(problems[0].path, path) << yaml;
    EXPECT_EQ(problems[0].line, 1) << yaml;
  }
  TenantPolicy edges =
      Policy::parse("defaults: {runs: {keep: 0}, limits: {batch_inputs: 10000}}").for_tenant("t");
  EXPECT_EQ(edges.runs.keep.value, 0);
  EXPECT_EQ(edges.limits.batch_inputs.value, 10000);
}

TEST(ExecutionPolicy, DiffNamesEachChange) {
  Policy before = Policy::parse("tenants:\n  acme: {}\n");
  Policy after = Policy::parse(R"(tenants:
  acme:
    cache: {enabled: false}
    runs: {keep: 3, inputs: true}
)");
  std::vector<std::string> expected = {
      "tenants.acme.cache.enabled: true → false",
      "tenants.acme.runs.inputs: false → true",
      "tenants.acme.runs.keep: 20 → 3",
  };
  EXPECT_EQ(corral::policy::diff(before, after), expected);
}

}  // namespace
