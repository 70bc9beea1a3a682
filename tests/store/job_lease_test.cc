// Jobs leased by a node (store.h, "Leases"), through the abstract Store on a real database, with
// every time given as an argument: a node that stops renewing loses its job to the next claim
// after the lease lapsed, and its late writes (finish, requeue, renewal) are refused by the
// fencing token, so the new holder's result is the one kept; a renewed lease is not taken; a lapse
// counts as a crashed attempt, so max_attempts still bounds the runs.
#include <gtest/gtest.h>

#include "store/sqlite_fixture.h"
#include "store/store.h"
#include "support/store_under_test.h"

namespace {

using namespace corral::store;
using corral::testing::TempDir;

constexpr int64_t kLease = 100;

class JobLeaseTest : public ::testing::Test {
 protected:
  JobLeaseTest() : store_(corral::testing::open_store_under_test(dir_.path())) {
    tenant_ = store_->create_tenant("acme", 1);
  }

  Job submit(const std::string& key, int64_t max_attempts = 3, std::string callback = "",
             int64_t at = 10) {
    return store_
        ->submit_job({.tenant_id = tenant_.id,
                      .script = "s",
                      .version = 1,
                      .idempotency_key = key,
                      .request_sha256 = "hash",
                      .input = "{}",
                      .callback_url = std::move(callback),
                      .max_attempts = max_attempts,
                      .created_by = "tok",
                      .created_at = at},
                     100)
        .job;
  }

  JobFinish finish(const Job& claimed, const std::string& result, int64_t at) {
    return {.id = claimed.id,
            .lease_token = claimed.lease_token,
            .state = JobState::succeeded,
            .outcome = "ok",
            .status = 200,
            .result = result,
            .at = at};
  }

  Job job(const std::string& id) { return *store_->find_job(tenant_.id, id); }

  TempDir dir_;
  std::unique_ptr<Store> store_;
  Tenant tenant_;
};

TEST_F(JobLeaseTest, AClaimLeasesTheJobToItsNode) {
  std::string id = submit("k").id;
  auto claimed = store_->claim_job(1000, "node-a", kLease);
  ASSERT_TRUE(claimed);
  EXPECT_EQ(claimed->id, id);
  EXPECT_EQ(claimed->state, JobState::running);
  EXPECT_EQ(claimed->lease_holder, "node-a");
  EXPECT_EQ(claimed->lease_expires_at, 1000 + kLease);
  EXPECT_EQ(claimed->lease_token, 1);
  EXPECT_EQ(claimed->attempts, 1);
  EXPECT_THROW(store_->claim_job(1000, "", kLease), std::invalid_argument);
  EXPECT_THROW(store_->claim_job(1000, "node-a", 0), std::invalid_argument);
}

TEST_F(JobLeaseTest, ALapsedLeaseIsTakenByAnotherNodeAndOnlyItsResultIsKept) {
  std::string id = submit("k", 3, "https://receiver.example/hook").id;
  auto first = store_->claim_job(1000, "node-a", kLease);
  ASSERT_TRUE(first);
  // Until the lease lapses the job is node-a's, even if node-a says nothing.
  EXPECT_FALSE(store_->claim_job(1000 + kLease, "node-b", kLease));
  EXPECT_EQ(job(id).state, JobState::running);

  auto second = store_->claim_job(1000 + kLease + 1, "node-b", kLease);
  ASSERT_TRUE(second) << "node-a's lease lapsed at " << 1000 + kLease;
  EXPECT_EQ(second->id, id);
  EXPECT_EQ(second->lease_holder, "node-b");
  EXPECT_GT(second->lease_token, first->lease_token);
  EXPECT_EQ(second->attempts, 2) << "the lapsed attempt counts as a crashed one";
  EXPECT_NE(second->error.find("node node-a stopped renewing its lease on attempt 1"),
            std::string::npos)
      << second->error;

  // node-a wakes up late: nothing it writes is taken.
  EXPECT_FALSE(store_->renew_job_lease(id, first->lease_token, 5000));
  EXPECT_FALSE(store_->finish_job(finish(*first, R"({"by":"node-a"})", 1150)));
  EXPECT_FALSE(store_->requeue_job(id, first->lease_token, 1150, true, "late", 1150));
  EXPECT_EQ(job(id).lease_holder, "node-b");
  EXPECT_EQ(job(id).lease_expires_at, 1000 + kLease + 1 + kLease) << "not renewed by node-a";

  auto done = store_->finish_job(finish(*second, R"({"by":"node-b"})", 1160));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, JobState::succeeded);
  EXPECT_FALSE(store_->finish_job(finish(*first, R"({"by":"node-a"})", 1170)));
  Job final = job(id);
  EXPECT_EQ(final.result, R"({"by":"node-b"})");
  EXPECT_EQ(final.result_writes, 1);
  EXPECT_EQ(final.lease_holder, "node-b") << "the node whose attempt ended it";
  auto deliveries = store_->list_deliveries(tenant_.id, std::nullopt, std::nullopt, 10);
  ASSERT_EQ(deliveries.size(), 1u) << "one webhook, from the holder's finish";
  EXPECT_EQ(deliveries[0].job_id, id);
}

TEST_F(JobLeaseTest, ARenewedLeaseIsNotTaken) {
  std::string id = submit("k").id;
  auto claimed = store_->claim_job(1000, "node-a", kLease);
  ASSERT_TRUE(claimed);
  EXPECT_TRUE(store_->renew_job_lease(id, claimed->lease_token, 1090 + kLease));
  EXPECT_FALSE(store_->renew_job_lease(id, claimed->lease_token + 1, 9999)) << "not its token";
  EXPECT_EQ(job(id).lease_expires_at, 1090 + kLease);
  EXPECT_FALSE(store_->claim_job(1150, "node-b", kLease)) << "past the first expiry, not the new";
  EXPECT_TRUE(store_->finish_job(finish(*claimed, "{}", 1160)));
  EXPECT_EQ(job(id).result_writes, 1);
  EXPECT_FALSE(store_->renew_job_lease(id, claimed->lease_token, 9999)) << "the job has ended";
}

// Why the fence is a token and not the attempt number: a run turned away gives its attempt back,
// so the next claim runs attempt 1 again, and only the token tells the two claims apart.
TEST_F(JobLeaseTest, AnAttemptGivenBackDoesNotLetTheEarlierClaimWrite) {
  std::string id = submit("k").id;
  auto first = store_->claim_job(1000, "node-a", kLease);
  ASSERT_TRUE(first);
  ASSERT_TRUE(store_->requeue_job(id, first->lease_token, 1010, false, "turned away", 1005));
  auto second = store_->claim_job(1010, "node-b", kLease);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->attempts, first->attempts);
  EXPECT_FALSE(store_->finish_job(finish(*first, R"({"by":"node-a"})", 1020)));
  EXPECT_TRUE(store_->finish_job(finish(*second, R"({"by":"node-b"})", 1030)));
  EXPECT_EQ(job(id).result, R"({"by":"node-b"})");
}

// A node presumed dead may only be slow: while nobody took its job, its lease is still its own.
TEST_F(JobLeaseTest, AnExpiredLeaseNobodyTookIsStillTheHolders) {
  std::string id = submit("k").id;
  auto claimed = store_->claim_job(1000, "node-a", kLease);
  ASSERT_TRUE(claimed);
  EXPECT_TRUE(store_->renew_job_lease(id, claimed->lease_token, 1500));
  EXPECT_FALSE(store_->claim_job(1400, "node-b", kLease));
  EXPECT_TRUE(store_->finish_job(finish(*claimed, "{}", 1600)));
}

TEST_F(JobLeaseTest, LapsedLeasesUseAttemptsAndTheLastOneFailsTheJob) {
  std::string id = submit("k", 2, "https://receiver.example/hook").id;
  auto first = store_->claim_job(1000, "node-a", kLease);
  ASSERT_TRUE(first);
  auto second = store_->claim_job(1200, "node-b", kLease);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->attempts, 2);
  // node-b dies too, on the last allowed attempt: the job fails rather than running a third time.
  EXPECT_FALSE(store_->claim_job(1400, "node-c", kLease));
  Job failed = job(id);
  EXPECT_EQ(failed.state, JobState::failed);
  EXPECT_EQ(failed.outcome, "crashed");
  EXPECT_EQ(failed.attempts, 2);
  EXPECT_EQ(failed.result_writes, 1);
  EXPECT_EQ(failed.lease_holder, "node-b");
  EXPECT_NE(failed.error.find("node node-b stopped renewing its lease on the job's last allowed "
                              "attempt"),
            std::string::npos)
      << failed.error;
  EXPECT_FALSE(store_->finish_job(finish(*second, "{}", 1410)));
  EXPECT_EQ(store_->list_deliveries(tenant_.id, std::nullopt, std::nullopt, 10).size(), 1u);
}

TEST_F(JobLeaseTest, ACancelledJobWhoseLeaseLapsedEndsCancelled) {
  std::string id = submit("k").id;
  ASSERT_TRUE(store_->claim_job(1000, "node-a", kLease));
  EXPECT_EQ(store_->cancel_job(tenant_.id, id, 1010, nullptr), CancelOutcome::marked);
  EXPECT_FALSE(store_->claim_job(1200, "node-b", kLease));
  EXPECT_EQ(job(id).state, JobState::cancelled);
  EXPECT_EQ(job(id).result_writes, 1);
}

// A lapsed job is due from when its lease lapsed: it goes before the jobs queued after that.
TEST_F(JobLeaseTest, AHandedBackJobKeepsItsPlaceInTheQueue) {
  std::string lapsed = submit("a").id;
  ASSERT_TRUE(store_->claim_job(1000, "node-a", kLease));
  std::string later = submit("b", 3, "", 1150).id;
  auto next = store_->claim_job(1200, "node-b", kLease);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->id, lapsed);
  EXPECT_EQ(job(later).state, JobState::queued);
}

// The recovery at start-up (one node on the store) hands back every running job, leased or not.
TEST_F(JobLeaseTest, RecoveryAtStartHandsBackEvenCurrentLeases) {
  SKIP_UNLESS_SQLITE("a store no other node uses");
  std::string id = submit("k").id;
  auto before = store_->claim_job(1000, "node-a", kLease);
  ASSERT_TRUE(before);
  auto [requeued, failed] = store_->recover_jobs(1010);
  EXPECT_EQ(requeued, 1);
  EXPECT_EQ(failed, 0);
  Job again = job(id);
  EXPECT_EQ(again.state, JobState::queued);
  EXPECT_TRUE(again.lease_holder.empty());
  EXPECT_NE(again.error.find("corrald stopped"), std::string::npos) << again.error;
  EXPECT_FALSE(store_->finish_job(finish(*before, "{}", 1020)));
  auto after = store_->claim_job(1020, "node-a", kLease);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->lease_token, before->lease_token + 1);
}

// A store other nodes share (PostgreSQL): a node starting must not take the jobs and deliveries
// that live nodes hold, only what a dead node left behind.
TEST_F(JobLeaseTest, RecoveryOnASharedStoreLeavesLiveNodesWorkAlone) {
  if (!store_->shared()) GTEST_SKIP() << "the store under test is not shared by nodes";
  std::string live = submit("live").id, dead = submit("dead").id;
  auto held = store_->claim_job(1000, "node-a", kLease);
  auto lapsed = store_->claim_job(1000, "node-b", kLease / 2);
  ASSERT_TRUE(held && lapsed);
  // node-b's lease lapsed at 1050; node-a's runs to 1100.
  auto [requeued, failed] = store_->recover_jobs(1060);
  EXPECT_EQ(requeued, 1);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(job(held->id).state, JobState::running);
  EXPECT_EQ(job(lapsed->id).state, JobState::queued);
  EXPECT_TRUE(store_->finish_job(finish(*held, "{}", 1070))) << "node-a's result is kept";
}

TEST_F(JobLeaseTest, ADeliveryInFlightIsHandedBackOnASharedStoreOnlyOnceAbandoned) {
  if (!store_->shared()) GTEST_SKIP() << "the store under test is not shared by nodes";
  submit("k", 3, "https://hooks.example/done");
  auto claimed = store_->claim_job(1000, "node-a", kLease);
  ASSERT_TRUE(claimed);
  ASSERT_TRUE(store_->finish_job(finish(*claimed, "{}", 1010)));
  auto sending = store_->claim_delivery(2000);
  ASSERT_TRUE(sending);
  EXPECT_EQ(store_->recover_deliveries(2000 + Store::kAbandonedDeliveryMs / 2), 0)
      << "a node may still be sending it";
  EXPECT_FALSE(store_->claim_delivery(2000 + Store::kAbandonedDeliveryMs / 2));
  int64_t abandoned = 2000 + Store::kAbandonedDeliveryMs + 1;
  EXPECT_EQ(store_->recover_deliveries(abandoned), 1);
  auto again = store_->claim_delivery(abandoned);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->id, sending->id) << "the same delivery id on every try";
}

}  // namespace
