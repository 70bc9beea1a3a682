// The invoker without HTTP, against real components: a SQLite store in a temporary directory,
// the registry, breakers, result cache, run recorder and usage ledger corrald uses, and scripts
// run by jailed corral-workers in a TenantPool. An executor in front of the pool counts the runs
// that reach it, so that "without running" is observed rather than assumed.
#include "invoke/invoker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "api/run_answers.h"
#include "audit/audit.h"
#include "cache/result_cache.h"
#include "metrics/metrics.h"
#include "pool/jail_setup.h"
#include "pool/tenant_pool.h"
#include "registry/registry.h"
#include "runs/run_recorder.h"
#include "sched/circuit_breaker.h"
#include "store/sqlite_fixture.h"
#include "usage/usage_ledger.h"

namespace corral::invoke {
namespace {

using corral::testing::TempDir;
using nlohmann::json;

constexpr const char* kDoubler = "function handle(input, ctx) return input.n * 2 end";

// The pool, and how many runs reached it.
class CountingExecutor : public Executor {
 public:
  explicit CountingExecutor(Executor& inner) : inner_(inner) {}
  InvocationResult run(const InvocationRequest& request) override {
    ++runs;
    return inner_.run(request);
  }
  std::atomic<int> runs = 0;

 private:
  Executor& inner_;
};

class InvokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::open_sqlite_store(dir_.path());
    audit_ = std::make_unique<audit::AuditTrail>(*store_);
    static JailSetup jail(JailSetup::accept_any_missing());
    pool_ = std::make_unique<TenantPool>(TenantPool::Options{}, [](const std::string& tenant) {
      return std::make_unique<WorkerProcess>(jail.spec_for(CORRAL_WORKER_PATH, tenant));
    });
    executor_ = std::make_unique<CountingExecutor>(*pool_);
    registry_ =
        std::make_unique<registry::Registry>(*store_, *executor_, registry::RegistryOptions{});
    runs_ = std::make_unique<runs::RunRecorder>(*store_);
    usage_ = std::make_unique<usage::UsageLedger>(*store_, usage::UsageLedger::Options{});
    tenant_ = store_->create_tenant("acme", store::now_ms());
    invoker_ = std::make_unique<Invoker>(Context{.store = *store_,
                                                 .audit = *audit_,
                                                 .registry = *registry_,
                                                 .metrics = metrics_,
                                                 .limits = LimitsPolicy{},
                                                 .breakers = &breakers_,
                                                 .cache = &cache_,
                                                 .runs = runs_.get(),
                                                 .usage = usage_.get(),
                                                 .document = api::run_document});
  }

  // Version 1 of script "double", stored as a publish leaves it (pending review).
  store::ScriptVersion publish(bool deterministic = false) {
    json manifest = {
        {"runtime", "lua5.4"}, {"capabilities", json::array()}, {"deterministic", deterministic}};
    store_->insert_version(tenant_.id, "double", "sha-of-the-doubler", kDoubler, manifest.dump(),
                           "test", store::now_ms());
    return registry_->version(tenant_, "double", 1);
  }

  // POST …/invoke's way: prepared for a token's request, run on the pool unless cached, finished.
  std::variant<Finished, Refusal> invoke(const store::ScriptVersion& version, json input) {
    Prepared prepared =
        invoker_->prepare(Call{.tenant = tenant_,
                               .version = version,
                               .input = std::move(input),
                               .labels = {{"script", version.script}, {"version", version.version}},
                               .caller = {.principal = "token-1",
                                          .audit_target = "/v1/tenants/acme/scripts/double/invoke",
                                          .may_run_pending = true,
                                          .by_quota = true}});
    if (auto* refusal = std::get_if<Refusal>(&prepared)) return std::move(*refusal);
    invoke::Run& run = std::get<invoke::Run>(prepared);
    InvocationResult result = run.cached ? *run.cached : executor_->run(run.request);
    return invoker_->finish(run, std::move(result));
  }

  static const Finished& finished(const std::variant<Finished, Refusal>& outcome) {
    if (auto* refusal = std::get_if<Refusal>(&outcome)) {
      ADD_FAILURE() << "refused: " << refusal->detail;
      static const Finished none;
      return none;
    }
    return std::get<Finished>(outcome);
  }

  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<audit::AuditTrail> audit_;
  metrics::Registry metrics_;
  std::unique_ptr<TenantPool> pool_;
  std::unique_ptr<CountingExecutor> executor_;
  std::unique_ptr<registry::Registry> registry_;
  sched::CircuitBreakers breakers_;
  cache::ResultCache cache_;
  std::unique_ptr<runs::RunRecorder> runs_;
  std::unique_ptr<usage::UsageLedger> usage_;
  store::Tenant tenant_;
  std::unique_ptr<Invoker> invoker_;
};

TEST_F(InvokerTest, AnOkRunRecordsUsageAndAStoredRun) {
  auto version = publish();
  auto outcome = invoke(version, {{"n", 21}});
  const Finished& done = finished(outcome);
  ASSERT_EQ(done.result.outcome, Outcome::ok) << to_json(done.result).dump();
  EXPECT_EQ(done.result.output, 42);
  EXPECT_EQ(executor_->runs, 1);
  EXPECT_EQ(done.cache, Finished::Cache::not_cacheable);
  EXPECT_TRUE(done.limits_from_policy);
  EXPECT_EQ(done.labels["policy_version"], 0);  // the built-in policy, without a policy service

  ASSERT_TRUE(usage_->flush());
  auto rows = store_->read_usage(tenant_.id, 0, store::now_ms() + usage::kHourMs);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].script, "double");
  EXPECT_EQ(rows[0].counts.invocations, 1);
  EXPECT_EQ(rows[0].counts.failures, 0);

  runs_->flush();
  auto stored = store_->find_run(tenant_.id, "double", done.result.invocation_id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->outcome, "ok");
  EXPECT_EQ(stored->version, 1);
  EXPECT_FALSE(stored->input.has_value());  // runs.inputs is false by default
  // The stored run reads as the answer did.
  EXPECT_EQ(json::parse(stored->result), api::to_response(done).body);
}

TEST_F(InvokerTest, AnOpenBreakerRefusesWithoutRunning) {
  auto version = publish();
  auto settings = policy::Policy::safe_default().for_tenant("acme").circuit_breaker;
  breakers_.quarantine({tenant_.id, "double", 1}, settings, "the test opened it",
                       sched::BreakerClock::now());

  auto outcome = invoke(version, {{"n", 1}});
  ASSERT_TRUE(std::holds_alternative<Refusal>(outcome));
  const Refusal& refusal = std::get<Refusal>(outcome);
  EXPECT_EQ(refusal.reason, Refusal::Reason::circuit_open);
  ASSERT_TRUE(refusal.breaker.has_value());
  EXPECT_EQ(refusal.breaker->state, "open");
  EXPECT_GE(refusal.retry_after_seconds, 1);
  EXPECT_FALSE(refusal.invocation_id.empty());
  EXPECT_EQ(executor_->runs, 0);

  // Nothing ran, so nothing was counted or stored.
  ASSERT_TRUE(usage_->flush());
  EXPECT_TRUE(store_->read_usage(tenant_.id, 0, store::now_ms() + usage::kHourMs).empty());
  runs_->flush();
  EXPECT_TRUE(store_->list_runs(tenant_.id, "double", 10).empty());
}

TEST_F(InvokerTest, ACachedResultIsServedWithoutRunning) {
  auto version = publish(/*deterministic=*/true);
  auto first = invoke(version, {{"n", 5}});
  ASSERT_EQ(finished(first).cache, Finished::Cache::miss);
  ASSERT_EQ(executor_->runs, 1);

  auto second = invoke(version, {{"n", 5}});
  const Finished& served = finished(second);
  EXPECT_EQ(served.cache, Finished::Cache::hit);
  EXPECT_EQ(served.result.outcome, Outcome::ok);
  EXPECT_EQ(served.result.output, 10);
  EXPECT_NE(served.result.invocation_id, finished(first).result.invocation_id);
  EXPECT_EQ(executor_->runs, 1) << "the cached result was run again";

  // Another input is another key: it runs.
  EXPECT_EQ(finished(invoke(version, {{"n", 6}})).result.output, 12);
  EXPECT_EQ(executor_->runs, 2);
}

TEST_F(InvokerTest, AJobStyleRunGivesTheSameResultAsTheApiPath) {
  auto version = publish();
  auto through_api = invoke(version, {{"n", 4}});
  auto as_job = invoker_->run_stored(tenant_, "double", 1, {{"n", 4}}, "job-7-1",
                                     {.principal = "job:job-7-1",
                                      .audit_target = "/v1/tenants/acme/scripts/double/jobs",
                                      .may_run_pending = true,
                                      .by_quota = false},
                                     *executor_);
  const Finished& api_done = finished(through_api);
  const Finished& job_done = finished(as_job);
  EXPECT_EQ(executor_->runs, 2);
  EXPECT_EQ(job_done.result.invocation_id, "job-7-1");
  EXPECT_EQ(job_done.result.outcome, api_done.result.outcome);
  EXPECT_EQ(job_done.result.output, api_done.result.output);
  EXPECT_EQ(job_done.result.policy_version, api_done.result.policy_version);
  EXPECT_EQ(job_done.labels, api_done.labels);
  EXPECT_EQ(job_done.cache, api_done.cache);
  EXPECT_EQ(job_done.limits.defaults, api_done.limits.defaults);
  EXPECT_EQ(job_done.limits_from_policy, api_done.limits_from_policy);

  // Written out, the two read alike but for what differs by nature: the id and the stats.
  auto comparable = [](const Finished& done) {
    json body = api::to_response(done).body;
    body.erase("invocation_id");
    body.erase("stats");
    return body;
  };
  EXPECT_EQ(comparable(job_done), comparable(api_done));

  // What a job records: the route's status and body, with no request made.
  jobs::RunAnswer answer =
      api::run_job(*invoker_, *executor_, *store_, "acme", "double", 1, {{"n", 4}}, "job-7-2");
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.outcome, "ok");
  EXPECT_EQ(answer.body["output"], 8);
  EXPECT_EQ(answer.body["invocation_id"], "job-7-2");
}

TEST_F(InvokerTest, AJobNamesWhatRefusedIt) {
  auto version = publish();
  jobs::RunAnswer missing =
      api::run_job(*invoker_, *executor_, *store_, "acme", "double", 9, json(), "job-8-1");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.outcome, "not-found");

  auto settings = policy::Policy::safe_default().for_tenant("acme").circuit_breaker;
  breakers_.quarantine({tenant_.id, "double", 1}, settings, "the test opened it",
                       sched::BreakerClock::now());
  jobs::RunAnswer quarantined =
      api::run_job(*invoker_, *executor_, *store_, "acme", "double", 1, json(), "job-8-2");
  EXPECT_EQ(quarantined.status, 503);
  EXPECT_EQ(quarantined.outcome, "rejected");
  EXPECT_EQ(quarantined.body["type"], "urn:corral:problem:circuit-open");
  EXPECT_GE(quarantined.body["retry_after"].get<int64_t>(), 1);
  EXPECT_EQ(executor_->runs, 0);
}

}  // namespace
}  // namespace corral::invoke
