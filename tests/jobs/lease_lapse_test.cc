// The job service's side of leases (jobs.h, "Leases") against a real SQLite store: the runner's
// claim leases the job to its node, its heartbeat renews the lease, and a runner whose job was
// taken over by another node after its lease lapsed (another node's claim, made here with a later
// time) writes nothing, so the other node's result is the one kept. The service's clock is a
// variable the test moves: no timing is waited for, except that the heartbeat thread renews.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "jobs/jobs.h"
#include "store/sqlite_fixture.h"
#include "store/sqlite_store.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using store::JobState;

constexpr int64_t kLeaseMs = 30'000;

class LeaseLapseTest : public ::testing::Test {
 protected:
  LeaseLapseTest()
      : store_(dir_.path() / "corral.db"),
        sealer_(broker::Sealer::from_key(std::string(32, 'k'), "test key")) {
    tenant_ = store_.create_tenant("acme", store::now_ms());
  }

  // A service on node-a whose runs call during_run_ and then answer ok.
  std::unique_ptr<jobs::JobService> node_a(unsigned threads = 0,
                                           std::chrono::milliseconds lease = {}) {
    return std::make_unique<jobs::JobService>(
        store_, sealer_, nullptr, metrics_,
        [this](const std::string&, const std::string&, int64_t, const json&, const std::string&) {
          if (during_run_) during_run_();
          return jobs::RunAnswer{200, "ok", {{"outcome", "ok"}, {"by", "node-a"}}};
        },
        jobs::Options{.threads = threads,
                      .delivery_threads = 0,
                      .node = "node-a",
                      .lease = lease.count() > 0 ? lease : std::chrono::milliseconds(kLeaseMs),
                      .clock = [this] { return clock_.load(); }});
  }

  std::string submit(const std::string& key) {
    return store_
        .submit_job({.tenant_id = tenant_.id,
                     .script = "double",
                     .version = 1,
                     .idempotency_key = key,
                     .request_sha256 = "hash",
                     .input = "{}",
                     .max_attempts = 3,
                     .created_by = "token-1",
                     .created_at = 1'000},
                    100)
        .job.id;
  }

  // node-b takes the job once node-a's lease has lapsed, and records its own result.
  std::optional<store::Job> node_b_takes_over(int64_t at) {
    return store_.claim_job(at, "node-b", kLeaseMs);
  }
  void node_b_finishes(const store::Job& claimed) {
    ASSERT_TRUE(store_.finish_job({.id = claimed.id,
                                   .lease_token = claimed.lease_token,
                                   .state = JobState::succeeded,
                                   .outcome = "ok",
                                   .status = 200,
                                   .result = R"({"by":"node-b"})",
                                   .at = clock_.load()}));
  }

  store::Job job(const std::string& id) { return *store_.find_job(tenant_.id, id); }

  TempDir dir_;
  store::SqliteStore store_;
  broker::Sealer sealer_;
  metrics::Registry metrics_;
  store::Tenant tenant_;
  std::atomic<int64_t> clock_{10'000};
  std::function<void()> during_run_;
};

TEST_F(LeaseLapseTest, TheRunnerLeasesWhatItRunsToItsNode) {
  auto runner = node_a();
  std::string id = submit("k");
  store::Job seen;
  during_run_ = [&] { seen = job(id); };
  ASSERT_TRUE(runner->run_one());
  EXPECT_EQ(seen.state, JobState::running);
  EXPECT_EQ(seen.lease_holder, "node-a");
  EXPECT_EQ(seen.lease_expires_at, 10'000 + kLeaseMs);
  EXPECT_EQ(jobs::job_json(seen, "acme")["node"], "node-a");
  store::Job done = job(id);
  EXPECT_EQ(done.state, JobState::succeeded);
  EXPECT_EQ(json::parse(done.result)["by"], "node-a");
  EXPECT_TRUE(jobs::job_json(done, "acme")["node"].is_null()) << "shown only while it runs";
  EXPECT_NE(metrics_.render().find("corral_job_runs_total{result=\"succeeded\"} 1"),
            std::string::npos);
}

// node-a stalls past its lease; node-b takes the job and finishes it; node-a's heartbeat then
// finds its renewal refused, and its run's result, when it comes, is not written.
TEST_F(LeaseLapseTest, ARunnerWhoseLeaseWasTakenOverDropsItsResult) {
  auto runner = node_a();
  std::string id = submit("k");
  int lost = -1;
  during_run_ = [&] {
    clock_ += kLeaseMs + 1;
    auto claimed = node_b_takes_over(clock_.load());
    ASSERT_TRUE(claimed) << "node-a's lease lapsed";
    EXPECT_EQ(claimed->lease_token, 2);
    node_b_finishes(*claimed);
    lost = runner->renew_leases();
  };
  ASSERT_TRUE(runner->run_one());
  EXPECT_EQ(lost, 1);
  store::Job done = job(id);
  EXPECT_EQ(done.state, JobState::succeeded);
  EXPECT_EQ(done.result, R"({"by":"node-b"})");
  EXPECT_EQ(done.result_writes, 1);
  EXPECT_EQ(done.lease_holder, "node-b");
  EXPECT_EQ(metrics_.render().find("corral_job_runs_total{result=\"succeeded\"} 1"),
            std::string::npos)
      << "node-a counted a run it did not record";
}

// Without a heartbeat in between, the store's fence alone refuses node-a's late result.
TEST_F(LeaseLapseTest, ALateResultIsRefusedByTheFenceEvenUnnoticed) {
  auto runner = node_a();
  std::string id = submit("k");
  std::optional<store::Job> taken;
  during_run_ = [&] {
    clock_ += kLeaseMs + 1;
    taken = node_b_takes_over(clock_.load());
  };
  ASSERT_TRUE(runner->run_one());
  ASSERT_TRUE(taken);
  EXPECT_EQ(job(id).state, JobState::running) << "node-a's result was not written";
  node_b_finishes(*taken);
  EXPECT_EQ(job(id).result, R"({"by":"node-b"})");
  EXPECT_EQ(job(id).result_writes, 1);
}

// A heartbeat inside the lease moves it on: node-b, arriving after the first expiry, finds
// nothing to take, and node-a's result is written.
TEST_F(LeaseLapseTest, ARenewedLeaseKeepsTheJob) {
  auto runner = node_a();
  std::string id = submit("k");
  std::optional<store::Job> taken;
  during_run_ = [&] {
    clock_ += kLeaseMs / 3;
    EXPECT_EQ(runner->renew_leases(), 0);
    EXPECT_EQ(job(id).lease_expires_at, clock_.load() + kLeaseMs);
    clock_ += kLeaseMs * 2 / 3 + 1;  // past the first expiry
    taken = node_b_takes_over(clock_.load());
  };
  ASSERT_TRUE(runner->run_one());
  EXPECT_FALSE(taken);
  store::Job done = job(id);
  EXPECT_EQ(done.state, JobState::succeeded);
  EXPECT_EQ(json::parse(done.result)["by"], "node-a");
}

// The heartbeat thread renews on its own: with a lease of 3 s it beats every second, and the
// run waits (up to 60 s, so that a slow machine is not a failure) until the lease has moved.
TEST_F(LeaseLapseTest, TheHeartbeatThreadRenewsTheLeaseOfARunningJob) {
  clock_ = store::now_ms();
  auto runner = node_a(1, std::chrono::seconds(3));
  std::string id = submit("k");
  std::atomic<bool> renewed{false};
  during_run_ = [&] {
    int64_t first = job(id).lease_expires_at;
    clock_ += 1'000;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (job(id).lease_expires_at == first && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    renewed = job(id).lease_expires_at > first;
  };
  runner->start();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (job(id).state != JobState::succeeded && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  runner->stop();
  EXPECT_TRUE(renewed);
  EXPECT_EQ(job(id).state, JobState::succeeded);
}

TEST(NodeName, TheDefaultIsValidAndUnique) {
  std::string a = jobs::make_node_name();
  EXPECT_TRUE(jobs::valid_node_name(a)) << a;
  EXPECT_NE(a, jobs::make_node_name());
  EXPECT_NE(a.find("-" + std::to_string(getpid()) + "-"), std::string::npos) << a;
  EXPECT_FALSE(jobs::valid_node_name(""));
  EXPECT_FALSE(jobs::valid_node_name("has space"));
  EXPECT_FALSE(jobs::valid_node_name(std::string(101, 'n')));
  EXPECT_TRUE(jobs::valid_node_name("eu-1.corrald_2"));
}

}  // namespace
}  // namespace corral::testing
