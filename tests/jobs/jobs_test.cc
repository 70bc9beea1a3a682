// The job service against a real SQLite store in a temporary directory, with the run of a version
// replaced by a function the test controls: submission and idempotency, the outcome → state
// mapping, retries of crashed runs, cancellation, the write-once guard, recovery after a dead
// corrald, and webhook deliveries to a loopback receiver (signature, backoff, dead letters).
#include "jobs/jobs.h"

#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <functional>
#include <thread>

#include "audit/audit.h"
#include "jobs/webhook_receiver.h"
#include "policy/policy_service.h"
#include "store/sqlite_fixture.h"
#include "store/sqlite_store.h"
#include "support/hmac.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using store::JobState;

class JobsTest : public ::testing::Test {
 protected:
  JobsTest()
      : store_(dir_.path() / "corral.db"),
        audit_(store_),
        policy_(store_, audit_),
        sealer_(broker::Sealer::from_key(std::string(32, 'k'), "test key")) {
    tenant_ = store_.create_tenant("acme", store::now_ms());
  }

  // A service whose runs answer with `runs` in turn (the last repeats).
  std::unique_ptr<jobs::JobService> service(std::deque<jobs::RunAnswer> runs) {
    answers_ = std::move(runs);
    return std::make_unique<jobs::JobService>(
        store_, sealer_, &policy_, metrics_,
        [this](const std::string& tenant, const std::string& script, int64_t version,
               const json& input, const std::string& invocation_id) {
          std::lock_guard lock(mutex_);
          calls_.push_back({tenant, script, version, input, invocation_id});
          if (during_run_) during_run_();
          jobs::RunAnswer answer = answers_.front();
          if (answers_.size() > 1) answers_.pop_front();
          return answer;
        },
        jobs::Options{
            .threads = 0, .delivery_threads = 0, .retry_delay = std::chrono::milliseconds(0)});
  }

  store::JobSubmission submit(const std::string& key, json input = {{"n", 1}},
                              const std::string& callback = "", int64_t max_attempts = 3,
                              int64_t limit = 100) {
    return store_.submit_job(
        {.tenant_id = tenant_.id,
         .script = "double",
         .version = 1,
         .alias = "live",
         .idempotency_key = key,
         .request_sha256 = jobs::request_hash("double", "alias:live", input, callback),
         .input = input.dump(),
         .callback_url = callback,
         .max_attempts = max_attempts,
         .webhook_attempts = 3,
         .webhook_backoff_ms = 50,
         .created_by = "token-1",
         .created_at = store::now_ms()},
        limit);
  }

  store::Job job(const std::string& id) { return *store_.find_job(tenant_.id, id); }

  static jobs::RunAnswer ok() { return {200, "ok", {{"outcome", "ok"}, {"output", {{"d", 2}}}}}; }
  static jobs::RunAnswer crashed() {
    return {
        500, "crashed", {{"outcome", "crashed"}, {"detail", "the worker exited with status 3"}}};
  }
  static jobs::RunAnswer script_error() {
    return {422, "script_error", {{"outcome", "script_error"}, {"detail", "boom"}}};
  }

  struct Call {
    std::string tenant, script;
    int64_t version;
    json input;
    std::string invocation_id;
  };

  TempDir dir_;
  store::SqliteStore store_;
  audit::AuditTrail audit_;
  policy::PolicyService policy_;
  broker::Sealer sealer_;
  metrics::Registry metrics_;
  store::Tenant tenant_;
  std::mutex mutex_;
  std::deque<jobs::RunAnswer> answers_;
  std::vector<Call> calls_;
  std::function<void()> during_run_;
};

TEST_F(JobsTest, TheSameKeyFindsTheSameJobAndTheHashTellsBodiesApart) {
  auto first = submit("key-1", {{"n", 1}});
  ASSERT_EQ(first.kind, store::JobSubmission::Kind::created);
  EXPECT_EQ(first.job.state, JobState::queued);
  auto again = submit("key-1", {{"n", 1}});
  ASSERT_EQ(again.kind, store::JobSubmission::Kind::existing);
  EXPECT_EQ(again.job.id, first.job.id);
  EXPECT_EQ(again.job.request_sha256, first.job.request_sha256);
  auto other = submit("key-1", {{"n", 2}});
  ASSERT_EQ(other.kind, store::JobSubmission::Kind::existing);
  EXPECT_NE(other.job.request_sha256, jobs::request_hash("double", "alias:live", {{"n", 2}}, ""));
  EXPECT_EQ(store_.list_jobs(tenant_.id, {}).size(), 1u);
  // Member order and spacing are not part of the request.
  EXPECT_EQ(jobs::request_hash("s", "alias:live", json::parse(R"({"a":1,"b":2})"), ""),
            jobs::request_hash("s", "alias:live", json::parse(R"({ "b": 2, "a": 1 })"), ""));
  EXPECT_NE(jobs::request_hash("s", "alias:live", 1, ""),
            jobs::request_hash("s", "version:1", 1, ""));
}

TEST_F(JobsTest, IdempotencyKeysAreBounded) {
  EXPECT_TRUE(jobs::valid_idempotency_key("order-42"));
  EXPECT_FALSE(jobs::valid_idempotency_key(""));
  EXPECT_FALSE(jobs::valid_idempotency_key("has space"));
  EXPECT_FALSE(jobs::valid_idempotency_key(std::string(201, 'k')));
  EXPECT_TRUE(jobs::valid_idempotency_key(std::string(200, 'k')));
}

TEST_F(JobsTest, UnfinishedJobsAreCountedAgainstTheQuota) {
  ASSERT_EQ(submit("a", 1, "", 3, 2).kind, store::JobSubmission::Kind::created);
  ASSERT_EQ(submit("b", 2, "", 3, 2).kind, store::JobSubmission::Kind::created);
  auto refused = submit("c", 3, "", 3, 2);
  EXPECT_EQ(refused.kind, store::JobSubmission::Kind::over_quota);
  EXPECT_EQ(refused.unfinished, 2);
  // A retried submission of an accepted job is still answered, over the quota or not.
  EXPECT_EQ(submit("a", 1, "", 3, 2).kind, store::JobSubmission::Kind::existing);
  // Once one is final there is room again.
  auto runner = service({ok()});
  ASSERT_TRUE(runner->run_one());
  EXPECT_EQ(submit("c", 3, "", 3, 2).kind, store::JobSubmission::Kind::created);
}

TEST_F(JobsTest, AnOkRunSucceedsWithTheInvokeAnswerAsResult) {
  auto runner = service({ok()});
  std::string id = submit("k", {{"n", 21}}).job.id;
  ASSERT_TRUE(runner->run_one());
  EXPECT_FALSE(runner->run_one()) << "nothing else is queued";
  store::Job done = job(id);
  EXPECT_EQ(done.state, JobState::succeeded);
  EXPECT_EQ(done.attempts, 1);
  EXPECT_EQ(done.outcome, "ok");
  EXPECT_EQ(done.status, 200);
  EXPECT_EQ(json::parse(done.result)["output"]["d"], 2);
  EXPECT_EQ(done.result_writes, 1);
  ASSERT_TRUE(done.finished_at.has_value());
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].tenant, "acme");
  EXPECT_EQ(calls_[0].script, "double");
  EXPECT_EQ(calls_[0].version, 1);
  EXPECT_EQ(calls_[0].input["n"], 21);
  json shown = jobs::job_json(done, "acme");
  EXPECT_EQ(shown["state"], "succeeded");
  EXPECT_EQ(shown["result"]["output"]["d"], 2);
  EXPECT_EQ(shown["input"]["n"], 21);
}

TEST_F(JobsTest, AScriptErrorFailsAtOnceAndIsNeverRetried) {
  auto runner = service({script_error(), ok()});
  std::string id = submit("k").job.id;
  ASSERT_TRUE(runner->run_one());
  EXPECT_FALSE(runner->run_one());
  store::Job done = job(id);
  EXPECT_EQ(done.state, JobState::failed);
  EXPECT_EQ(done.attempts, 1);
  EXPECT_EQ(done.outcome, "script_error");
  EXPECT_EQ(done.status, 422);
  EXPECT_EQ(calls_.size(), 1u);
}

TEST_F(JobsTest, CrashedRunsAreRetriedUpToMaxAttemptsThenFail) {
  auto runner = service({crashed()});
  std::string id = submit("k", 1, "", 3).job.id;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_TRUE(runner->run_one()) << "attempt " << attempt;
    store::Job now = job(id);
    EXPECT_EQ(now.attempts, attempt);
    EXPECT_EQ(now.state, attempt < 3 ? JobState::queued : JobState::failed);
  }
  EXPECT_FALSE(runner->run_one());
  store::Job done = job(id);
  EXPECT_EQ(done.outcome, "crashed");
  EXPECT_NE(done.error.find("all 3 attempts crashed"), std::string::npos) << done.error;
  EXPECT_EQ(done.result_writes, 1);
  EXPECT_EQ(calls_.size(), 3u);
  // Each attempt is its own invocation.
  EXPECT_NE(calls_[0].invocation_id, calls_[1].invocation_id);
  EXPECT_NE(metrics_.render().find("corral_job_retries_total 2"), std::string::npos);
}

TEST_F(JobsTest, ACrashThenASuccessSucceedsOnTheSecondAttempt) {
  auto runner = service({crashed(), ok()});
  std::string id = submit("k").job.id;
  ASSERT_TRUE(runner->run_one());
  ASSERT_TRUE(runner->run_one());
  store::Job done = job(id);
  EXPECT_EQ(done.state, JobState::succeeded);
  EXPECT_EQ(done.attempts, 2);
}

TEST_F(JobsTest, ACircuitOpenAnswerLeavesTheJobQueuedWithoutCountingTheAttempt) {
  auto runner = service({{503,
                          "rejected",
                          {{"outcome", "rejected"},
                           {"type", "urn:corral:problem:circuit-open"},
                           {"retry_after", 7}}}});
  std::string id = submit("k").job.id;
  int64_t before = store::now_ms();
  ASSERT_TRUE(runner->run_one());
  store::Job waiting = job(id);
  EXPECT_EQ(waiting.state, JobState::queued);
  EXPECT_EQ(waiting.attempts, 0);
  EXPECT_GE(waiting.run_after, before + 7000);
  EXPECT_NE(waiting.error.find("quarantined by its circuit breaker"), std::string::npos)
      << waiting.error;
  EXPECT_FALSE(runner->run_one()) << "not before its Retry-After";
}

TEST_F(JobsTest, ARunTurnedAwayForWantOfRoomIsQueuedAgainWithoutCountingTheAttempt) {
  const std::string detail = "corrald has no file descriptor left to start a worker";
  auto runner = service({{429, "rejected", {{"outcome", "rejected"}, {"detail", detail}}}});
  std::string id = submit("k").job.id;
  ASSERT_TRUE(runner->run_one());
  store::Job waiting = job(id);
  EXPECT_EQ(waiting.state, JobState::queued);
  EXPECT_EQ(waiting.attempts, 0);
  EXPECT_NE(waiting.error.find(detail), std::string::npos) << waiting.error;
  EXPECT_EQ(waiting.error.find("quarantined"), std::string::npos)
      << "its version was not quarantined: " << waiting.error;
}

TEST_F(JobsTest, CancellingAQueuedJobIsImmediateAndAFinalOneCannotBe) {
  auto runner = service({ok()});
  std::string id = submit("k").job.id;
  std::optional<store::Job> after;
  EXPECT_EQ(store_.cancel_job(tenant_.id, id, store::now_ms(), &after),
            store::CancelOutcome::cancelled);
  EXPECT_EQ(after->state, JobState::cancelled);
  EXPECT_FALSE(runner->run_one()) << "a cancelled job never runs";
  EXPECT_EQ(store_.cancel_job(tenant_.id, id, store::now_ms(), &after),
            store::CancelOutcome::already_final);
  EXPECT_EQ(store_.cancel_job("another-tenant", id, store::now_ms(), &after),
            store::CancelOutcome::not_found);
  EXPECT_TRUE(calls_.empty());
}

TEST_F(JobsTest, ARunningJobCancelledMidRunEndsCancelledWithItsResultDiscarded) {
  auto runner = service({ok()});
  std::string id = submit("k").job.id;
  store::CancelOutcome seen{};
  during_run_ = [&] {
    std::optional<store::Job> after;
    seen = store_.cancel_job(tenant_.id, id, store::now_ms(), &after);
  };
  ASSERT_TRUE(runner->run_one());
  EXPECT_EQ(seen, store::CancelOutcome::marked);
  store::Job done = job(id);
  EXPECT_EQ(done.state, JobState::cancelled);
  EXPECT_TRUE(done.result.empty());
  EXPECT_EQ(done.result_writes, 1);
}

TEST_F(JobsTest, AResultIsWrittenOnceWhateverWritesItAgain) {
  submit("k");
  auto claimed = store_.claim_job(store::now_ms(), "node-a", 30'000);
  ASSERT_TRUE(claimed);
  store::JobFinish finish{.id = claimed->id,
                          .lease_token = claimed->lease_token,
                          .state = JobState::succeeded,
                          .outcome = "ok",
                          .status = 200,
                          .result = R"({"first":true})",
                          .at = store::now_ms()};
  ASSERT_TRUE(store_.finish_job(finish));
  finish.result = R"({"second":true})";
  EXPECT_FALSE(store_.finish_job(finish)) << "a duplicate write must change nothing";
  finish.lease_token += 1;
  EXPECT_FALSE(store_.finish_job(finish));
  EXPECT_FALSE(store_.requeue_job(claimed->id, claimed->lease_token, 0, true, "late", 0));
  store::Job done = job(claimed->id);
  EXPECT_EQ(done.result, R"({"first":true})");
  EXPECT_EQ(done.result_writes, 1);
}

TEST_F(JobsTest, RecoveryRequeuesInterruptedJobsAndFailsThoseOnTheirLastAttempt) {
  std::string interrupted = submit("a", 1, "", 3).job.id;
  std::string last = submit("b", 2, "", 1).job.id;
  std::string waiting = submit("c", 3).job.id;
  ASSERT_TRUE(store_.claim_job(store::now_ms(), "node-a", 30'000));
  ASSERT_TRUE(store_.claim_job(store::now_ms(), "node-a", 30'000));
  // The corrald that claimed them dies here; a new one starts on the same file.
  store::SqliteStore reopened(dir_.path() / "corral.db");
  auto [requeued, failed] = reopened.recover_jobs(store::now_ms());
  EXPECT_EQ(requeued, 1);
  EXPECT_EQ(failed, 1);
  store::Job again = *reopened.find_job(tenant_.id, interrupted);
  EXPECT_EQ(again.state, JobState::queued);
  EXPECT_EQ(again.attempts, 1) << "the interrupted attempt counts";
  EXPECT_NE(again.error.find("corrald stopped"), std::string::npos);
  store::Job gave_up = *reopened.find_job(tenant_.id, last);
  EXPECT_EQ(gave_up.state, JobState::failed);
  EXPECT_EQ(gave_up.outcome, "crashed");
  EXPECT_EQ(reopened.find_job(tenant_.id, waiting)->state, JobState::queued);
  EXPECT_EQ(reopened.find_job(tenant_.id, waiting)->attempts, 0);
}

TEST_F(JobsTest, TheServiceThreadsRunEverySubmittedJobOnce) {
  answers_ = {ok()};
  std::atomic<int> runs{0};
  jobs::JobService threaded(
      store_, sealer_, &policy_, metrics_,
      [&](const std::string&, const std::string&, int64_t, const json&, const std::string&) {
        ++runs;
        return ok();
      },
      {.threads = 4, .delivery_threads = 1, .poll = std::chrono::milliseconds(20)});
  threaded.start();
  std::vector<std::string> ids;
  for (int i = 0; i < 60; ++i) {
    ids.push_back(submit("k" + std::to_string(i), i).job.id);
    threaded.notify();
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (store_.list_jobs(tenant_.id, {.state = JobState::succeeded, .limit = 100}).size() < 60 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  threaded.stop();
  EXPECT_EQ(runs.load(), 60);
  for (const auto& id : ids) {
    store::Job done = job(id);
    EXPECT_EQ(done.state, JobState::succeeded) << id;
    EXPECT_EQ(done.attempts, 1);
    EXPECT_EQ(done.result_writes, 1);
  }
}

// ---- webhooks

class WebhookTest : public JobsTest {
 protected:
  void SetUp() override {
    policy_.update("tenants:\n  acme:\n    capabilities:\n      http:\n        allow: [\"" +
                       receiver_.origin() + "\"]\n        allow_private: [127.0.0.1]\n",
                   "test");
  }

  // A job with a callback to `path` that ran and succeeded, so that it has a delivery.
  std::string finished_job(const std::string& path, const std::string& key = "k") {
    std::string id = submit(key, {{"n", 1}}, receiver_.url(path)).job.id;
    EXPECT_TRUE(runner_->run_one());
    return id;
  }

  WebhookReceiver receiver_;
  std::unique_ptr<jobs::JobService> runner_ = service({ok()});
};

TEST_F(WebhookTest, AFinishedJobIsPostedSignedWithTheTenantsSecret) {
  std::string secret = runner_->rotate_webhook_secret(tenant_.id);
  EXPECT_TRUE(secret.starts_with("whsec_"));
  std::string id = finished_job("/hook");
  ASSERT_TRUE(runner_->deliver_one());
  EXPECT_FALSE(runner_->deliver_one()) << "delivered once";
  auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& request = requests[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/hook");
  EXPECT_EQ(request.headers.at("corral-job-id"), id);
  json body = json::parse(request.body);
  EXPECT_EQ(body["id"], id);
  EXPECT_EQ(body["state"], "succeeded");
  EXPECT_EQ(body["result"]["output"]["d"], 2);
  // Verified the way docs/api.md tells a receiver to.
  std::string signature = request.headers.at("corral-signature");
  ASSERT_TRUE(signature.starts_with("t=")) << signature;
  std::string t = signature.substr(2, signature.find(',') - 2);
  EXPECT_NEAR(std::stoll(t), store::now_ms() / 1000, 5);
  EXPECT_EQ(signature.substr(signature.find(",v1=") + 4), hmac_hex(secret, t + "." + request.body));
  EXPECT_NE(signature.substr(signature.find(",v1=") + 4),
            hmac_hex("whsec_other", t + "." + request.body));
  auto delivered = store_.list_deliveries(tenant_.id, store::DeliveryState::delivered, {}, 10);
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0].job_id, id);
  EXPECT_EQ(delivered[0].attempts, 1);
  EXPECT_EQ(delivered[0].last_status, 200);
}

TEST_F(WebhookTest, ServerErrorsAreRetriedWithDoublingBackoffUntilDelivered) {
  runner_->rotate_webhook_secret(tenant_.id);
  receiver_.answer("/flaky", {500, 503, 200});
  finished_job("/flaky");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (receiver_.requests().size() < 3 && std::chrono::steady_clock::now() < deadline) {
    if (!runner_->deliver_one()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 3u);
  // backoff_ms 50, doubling: at least 50 ms, then at least 100 ms between tries. The store keeps
  // times in whole milliseconds of the system clock (now_ms() truncates), so a try falls due up
  // to 1 ms before its backoff has passed on the receiver's steady clock, and this loop, polling
  // every 5 ms, may catch it in that millisecond: the bounds allow 2 ms for it.
  constexpr auto kStoreRounding = std::chrono::milliseconds(2);
  EXPECT_GE(requests[1].at - requests[0].at, std::chrono::milliseconds(50) - kStoreRounding);
  EXPECT_GE(requests[2].at - requests[1].at, std::chrono::milliseconds(100) - kStoreRounding);
  EXPECT_EQ(requests[2].headers.at("corral-delivery-attempt"), "3");
  auto delivered = store_.list_deliveries(tenant_.id, store::DeliveryState::delivered, {}, 10);
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0].attempts, 3);
  EXPECT_NE(metrics_.render().find("corral_webhook_deliveries_total{result=\"retry\"} 2"),
            std::string::npos);
}

// Corral-Delivery-Id is the receiver's key for dropping repeats: the delivery's own id, the same
// on every try, whether the try follows a 5xx or a corrald that died while sending.
TEST_F(WebhookTest, TheDeliveryIdIsTheSameOnEveryTry) {
  runner_->rotate_webhook_secret(tenant_.id);
  receiver_.answer("/flaky", {503, 200});
  finished_job("/flaky");
  ASSERT_TRUE(runner_->deliver_one());  // 503: tried again after backoff_ms
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (receiver_.requests().size() < 2 && std::chrono::steady_clock::now() < deadline) {
    if (!runner_->deliver_one()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Then a third try of another kind: claimed, corrald dies before recording it, sent again.
  auto deliveries = store_.list_deliveries(tenant_.id, std::nullopt, std::nullopt, 10);
  ASSERT_EQ(deliveries.size(), 1u);
  const std::string id = deliveries[0].id;
  std::string again = finished_job("/hook", "k2");
  ASSERT_TRUE(store_.claim_delivery(store::now_ms()));
  EXPECT_EQ(store_.recover_deliveries(store::now_ms()), 1);
  ASSERT_TRUE(runner_->deliver_one());
  auto requests = receiver_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].headers.at("corral-delivery-id"), id);
  EXPECT_EQ(requests[1].headers.at("corral-delivery-id"), id);
  EXPECT_EQ(requests[1].headers.at("corral-delivery-attempt"), "2");
  auto resent = store_.list_deliveries(tenant_.id, store::DeliveryState::delivered, {}, 10);
  ASSERT_EQ(resent.size(), 2u);
  for (const auto& delivery : resent) {
    if (delivery.job_id != again) continue;
    EXPECT_EQ(requests[2].headers.at("corral-delivery-id"), delivery.id);
    EXPECT_EQ(requests[2].headers.at("corral-delivery-attempt"), "2");
    EXPECT_NE(delivery.id, id) << "each job has its own delivery";
  }
}

TEST_F(WebhookTest, TheLastFailedTryMakesTheDeliveryDeadAndListable) {
  runner_->rotate_webhook_secret(tenant_.id);
  receiver_.answer("/down", {500});
  std::string id = finished_job("/down");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store_.count_deliveries(store::DeliveryState::dead) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    if (!runner_->deliver_one()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(receiver_.requests().size(), 3u) << "webhook_attempts is 3";
  auto dead = store_.list_deliveries(tenant_.id, store::DeliveryState::dead, {}, 10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].job_id, id);
  EXPECT_EQ(dead[0].attempts, 3);
  EXPECT_EQ(dead[0].last_status, 500);
  EXPECT_NE(dead[0].last_error.find("gave up after 3 tries"), std::string::npos)
      << dead[0].last_error;
  runner_->refresh_gauges();
  EXPECT_NE(metrics_.render().find("corral_webhook_deliveries_dead 1"), std::string::npos);
}

// Final jobs are forgotten once both they and their delivery are older than the cutoff; the
// unfinished, the recent and those whose webhook is still pending stay. Times are explicit.
TEST_F(WebhookTest, PruningForgetsOldFinalJobsWithTheirSettledDeliveries) {
  runner_->rotate_webhook_secret(tenant_.id);
  const int64_t now = store::now_ms();
  const int64_t long_ago = now - 3'600'000;
  auto finish_at = [&](const std::string& key, const std::string& callback, int64_t at) {
    std::string id = submit(key, {{"n", 1}}, callback).job.id;
    auto claimed = store_.claim_job(store::now_ms(), "node-a", 30'000);
    EXPECT_TRUE(claimed && claimed->id == id);
    EXPECT_TRUE(store_.finish_job({.id = id,
                                   .lease_token = claimed->lease_token,
                                   .state = JobState::succeeded,
                                   .outcome = "ok",
                                   .status = 200,
                                   .result = "{}",
                                   .at = at}));
    return id;
  };
  std::string plain = finish_at("plain", "", long_ago);  // old, no webhook
  std::string delivered = finish_at("delivered", receiver_.url("/hook"), long_ago);
  ASSERT_TRUE(runner_->deliver_one());  // settled just now
  receiver_.answer("/down", {500});
  std::string pending = finish_at("pending", receiver_.url("/down"), long_ago);
  std::string recent = finish_at("recent", "", now + 3'600'000);  // ended after any cutoff below
  std::string queued = submit("queued").job.id;                   // never ran

  EXPECT_EQ(store_.prune_jobs(now - 60'000, 1000), 1);
  EXPECT_FALSE(store_.find_job(tenant_.id, plain));
  EXPECT_TRUE(store_.find_job(tenant_.id, delivered)) << "its delivery settled after the cutoff";

  EXPECT_EQ(store_.prune_jobs(now + 60'000, 1000), 1);
  EXPECT_FALSE(store_.find_job(tenant_.id, delivered));
  EXPECT_TRUE(store_.list_deliveries(tenant_.id, store::DeliveryState::delivered, {}, 10).empty());
  EXPECT_TRUE(store_.find_job(tenant_.id, pending)) << "its webhook is still to be sent";
  EXPECT_EQ(store_.list_deliveries(tenant_.id, store::DeliveryState::pending, {}, 10).size(), 1u);
  EXPECT_TRUE(store_.find_job(tenant_.id, recent));
  EXPECT_TRUE(store_.find_job(tenant_.id, queued));

  // A forgotten job's key is free: the same key makes a new job.
  auto again = submit("plain");
  EXPECT_EQ(again.kind, store::JobSubmission::Kind::created);
  EXPECT_NE(again.job.id, plain);
  EXPECT_THROW(store_.prune_jobs(now, 0), std::invalid_argument);
}

TEST_F(JobsTest, TheServiceForgetsJobsPastItsRetentionInBatches) {
  auto make = [&](int64_t retention_ms) {
    return std::make_unique<jobs::JobService>(
        store_, sealer_, &policy_, metrics_,
        [](const std::string&, const std::string&, int64_t, const json&, const std::string&) {
          return ok();
        },
        jobs::Options{.threads = 0,
                      .delivery_threads = 0,
                      .retention = std::chrono::milliseconds(retention_ms)});
  };
  const int64_t now = store::now_ms();
  for (int i = 0; i < 1005; ++i) {  // more than one batch of 1,000
    std::string id = submit("k" + std::to_string(i)).job.id;
    auto claimed = store_.claim_job(store::now_ms(), "node-a", 30'000);
    ASSERT_TRUE(claimed);
    ASSERT_TRUE(store_.finish_job({.id = id,
                                   .lease_token = claimed->lease_token,
                                   .state = JobState::failed,
                                   .outcome = "script_error",
                                   .status = 422,
                                   .result = "{}",
                                   .at = now - 7'200'000}));
  }
  std::string kept = submit("fresh").job.id;
  EXPECT_EQ(make(0)->prune(now), 0) << "retention 0 keeps every job";
  EXPECT_EQ(make(3'600'000)->prune(now), 1005);
  EXPECT_TRUE(store_.list_jobs(tenant_.id, {.state = JobState::failed, .limit = 10}).empty());
  EXPECT_TRUE(store_.find_job(tenant_.id, kept));
  EXPECT_NE(metrics_.render().find("corral_jobs_pruned_total 1005"), std::string::npos);
}

TEST_F(WebhookTest, AClientErrorIsDeadAtOnceSayingWhy) {
  runner_->rotate_webhook_secret(tenant_.id);
  receiver_.answer("/gone", {410});
  finished_job("/gone");
  ASSERT_TRUE(runner_->deliver_one());
  EXPECT_FALSE(runner_->deliver_one());
  auto dead = store_.list_deliveries(tenant_.id, store::DeliveryState::dead, {}, 10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 1);
  EXPECT_NE(dead[0].last_error.find("410, which is not retried"), std::string::npos)
      << dead[0].last_error;
}

TEST_F(WebhookTest, WithoutASecretTheDeliveryIsDeadNamingTheFix) {
  finished_job("/hook");
  ASSERT_TRUE(runner_->deliver_one());
  EXPECT_TRUE(receiver_.requests().empty()) << "nothing unsigned is sent";
  auto dead = store_.list_deliveries(tenant_.id, store::DeliveryState::dead, {}, 10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_NE(dead[0].last_error.find("/webhook-secret"), std::string::npos) << dead[0].last_error;
}

TEST_F(WebhookTest, ADeliveryInFlightWhenCorraldDiedIsSentAgain) {
  runner_->rotate_webhook_secret(tenant_.id);
  finished_job("/hook");
  auto claimed = store_.claim_delivery(store::now_ms());
  ASSERT_TRUE(claimed);
  EXPECT_FALSE(store_.claim_delivery(store::now_ms())) << "in flight: not claimed twice";
  EXPECT_EQ(store_.recover_deliveries(store::now_ms()), 1);
  ASSERT_TRUE(runner_->deliver_one());
  EXPECT_EQ(receiver_.requests().size(), 1u);
  auto delivered = store_.list_deliveries(tenant_.id, store::DeliveryState::delivered, {}, 10);
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0].attempts, 2);
}

TEST_F(WebhookTest, CallbacksMustPassTheHttpGrant) {
  auto acme = policy_.current()->policy.for_tenant("acme");
  EXPECT_FALSE(jobs::check_callback(acme, receiver_.url("/hook")));
  auto elsewhere = jobs::check_callback(acme, "https://example.com/hook");
  ASSERT_TRUE(elsewhere);
  EXPECT_EQ(elsewhere->rule, "tenants.acme.capabilities.http.allow");
  auto other_port = jobs::check_callback(acme, "http://127.0.0.1:1/hook");
  ASSERT_TRUE(other_port);
  auto nobody = policy_.current()->policy.for_tenant("globex");
  auto no_grant = jobs::check_callback(nobody, receiver_.url("/hook"));
  ASSERT_TRUE(no_grant);
  EXPECT_NE(no_grant->detail.find("no http grant"), std::string::npos) << no_grant->detail;
}

TEST_F(WebhookTest, APrivateAddressOutsideAllowPrivateIsRefusedAtSubmission) {
  policy_.update(
      "tenants:\n  acme:\n    capabilities:\n      http:\n        allow: "
      "[\"http://127.0.0.1:*\"]\n",
      "test");
  auto acme = policy_.current()->policy.for_tenant("acme");
  auto loopback = jobs::check_callback(acme, receiver_.url("/hook"));
  ASSERT_TRUE(loopback);
  EXPECT_EQ(loopback->rule, "tenants.acme.capabilities.http.allow_private");
}

}  // namespace
}  // namespace corral::testing
