// Admission by quota with a fake clock: every time is given, so every figure is exact.
#include "sched/admission.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <optional>
#include <thread>

namespace corral::sched {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A start far from zero, so that "a minute ago" is a real time too.
const TimePoint kStart = TimePoint{} + std::chrono::hours(1000);

policy::Quotas quotas(double rate, int64_t burst, int64_t concurrency = 100,
                      int64_t cpu_ms_per_minute = 1'000'000) {
  policy::Quotas q;
  q.rate_per_second = {rate, "tenants.acme.quotas.rate_per_second"};
  q.burst = {burst, "tenants.acme.quotas.burst"};
  q.concurrency = {concurrency, "defaults.quotas.concurrency"};
  q.cpu_ms_per_minute = {cpu_ms_per_minute, "tenants.acme.quotas.cpu_ms_per_minute"};
  return q;
}

std::optional<Ticket> ticket_of(Decision decision) {
  if (auto* ticket = std::get_if<Ticket>(&decision)) return std::move(*ticket);
  return std::nullopt;
}

Rejection rejection_of(Decision decision) {
  auto* rejection = std::get_if<Rejection>(&decision);
  if (!rejection) {
    ADD_FAILURE() << "admitted where a rejection was expected";
    return {};
  }
  return *rejection;
}

TEST(TokenBucket, AdmitsTheBurstAtOnceThenTheSteadyRate) {
  Admission admission;
  auto q = quotas(5, 5);
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(ticket_of(admission.admit("acme", q, kStart))) << "request " << i;
  Rejection refused = rejection_of(admission.admit("acme", q, kStart));
  EXPECT_EQ(refused.quota, "rate");
  EXPECT_EQ(refused.rule, "tenants.acme.quotas.rate_per_second");
  EXPECT_EQ(refused.retry_after_seconds, 1);  // 0.2 s to the next token, rounded up
  EXPECT_NE(refused.detail.find("burst of 5"), std::string::npos) << refused.detail;

  // One token every 200 ms: one admission per step, never two.
  for (int step = 1; step <= 10; ++step) {
    TimePoint now = kStart + milliseconds(200 * step);
    EXPECT_TRUE(ticket_of(admission.admit("acme", q, now))) << "step " << step;
    EXPECT_FALSE(ticket_of(admission.admit("acme", q, now))) << "step " << step;
  }
}

TEST(TokenBucket, RetryAfterIsWhenTheNextTokenArrives) {
  Admission admission;
  auto q = quotas(0.1, 1);  // one every ten seconds
  ASSERT_TRUE(ticket_of(admission.admit("acme", q, kStart)));
  EXPECT_EQ(rejection_of(admission.admit("acme", q, kStart)).retry_after_seconds, 10);
  EXPECT_EQ(
      rejection_of(admission.admit("acme", q, kStart + milliseconds(2500))).retry_after_seconds,
      8);  // 7.5 s, rounded up
  EXPECT_TRUE(ticket_of(admission.admit("acme", q, kStart + seconds(10))));
}

TEST(TokenBucket, ARefusedRequestTakesNoToken) {
  Admission admission;
  auto q = quotas(1, 1);
  ASSERT_TRUE(ticket_of(admission.admit("acme", q, kStart)));
  for (int i = 0; i < 100; ++i) rejection_of(admission.admit("acme", q, kStart + milliseconds(i)));
  EXPECT_TRUE(ticket_of(admission.admit("acme", q, kStart + seconds(1))));
}

TEST(TokenBucket, TenantsHaveTheirOwnBuckets) {
  Admission admission;
  auto q = quotas(1, 2);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(ticket_of(admission.admit("acme", q, kStart)));
  EXPECT_FALSE(ticket_of(admission.admit("acme", q, kStart)));
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(ticket_of(admission.admit("globex", q, kStart)));
}

TEST(TokenBucket, ASmallerBurstFromANewPolicyAppliesAtOnce) {
  Admission admission;
  ASSERT_TRUE(ticket_of(admission.admit("acme", quotas(1, 100), kStart)));
  auto smaller = quotas(1, 2);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(ticket_of(admission.admit("acme", smaller, kStart)));
  EXPECT_EQ(rejection_of(admission.admit("acme", smaller, kStart)).quota, "rate");
}

TEST(Concurrency, TheSlotIsFreedWhenTheTicketDies) {
  Admission admission;
  auto q = quotas(1000, 1000, 2);
  auto first = ticket_of(admission.admit("acme", q, kStart));
  auto second = ticket_of(admission.admit("acme", q, kStart));
  ASSERT_TRUE(first && second);
  Rejection refused = rejection_of(admission.admit("acme", q, kStart));
  EXPECT_EQ(refused.quota, "concurrency");
  EXPECT_EQ(refused.rule, "defaults.quotas.concurrency");
  EXPECT_EQ(refused.retry_after_seconds, 1);
  first.reset();
  auto third = ticket_of(admission.admit("acme", q, kStart));
  EXPECT_TRUE(third);
  EXPECT_FALSE(ticket_of(admission.admit("acme", q, kStart)));
}

TEST(Concurrency, AMovedTicketReleasesOnce) {
  Admission admission;
  auto q = quotas(1000, 1000, 1);
  {
    auto ticket = ticket_of(admission.admit("acme", q, kStart));
    ASSERT_TRUE(ticket);
    Ticket moved = std::move(*ticket);
    ticket.reset();  // the moved-from ticket holds nothing
    EXPECT_FALSE(ticket_of(admission.admit("acme", q, kStart)));
  }
  EXPECT_TRUE(ticket_of(admission.admit("acme", q, kStart)));
  EXPECT_TRUE(ticket_of(admission.admit("acme", q, kStart)));  // the last one died too
}

TEST(CpuWindow, RefusesOnceTheMinuteIsSpentAndSaysWhenItFrees) {
  Admission admission;
  auto q = quotas(1000, 1000, 100, 1000);
  // 600 ms reported at t=0, 500 ms at t=10 s: 1100 of 1000 used.
  ticket_of(admission.admit("acme", q, kStart))->report_cpu(600, kStart);
  ticket_of(admission.admit("acme", q, kStart))->report_cpu(500, kStart + seconds(10));
  Rejection refused = rejection_of(admission.admit("acme", q, kStart + seconds(20)));
  EXPECT_EQ(refused.quota, "cpu_ms_per_minute");
  EXPECT_EQ(refused.rule, "tenants.acme.quotas.cpu_ms_per_minute");
  // The 600 ms leave the window at t=60 s, leaving 500 < 1000.
  EXPECT_EQ(refused.retry_after_seconds, 40);
  EXPECT_NE(refused.detail.find("1100 ms"), std::string::npos) << refused.detail;
  EXPECT_FALSE(ticket_of(admission.admit("acme", q, kStart + milliseconds(59'900))));
  EXPECT_TRUE(ticket_of(admission.admit("acme", q, kStart + seconds(60))));
}

TEST(CpuWindow, TheWindowSlides) {
  Admission admission;
  auto q = quotas(1000, 1000, 100, 1000);
  for (int second = 0; second < 10; ++second) {
    TimePoint now = kStart + seconds(second);
    ticket_of(admission.admit("acme", q, now))->report_cpu(100, now);
  }
  EXPECT_EQ(rejection_of(admission.admit("acme", q, kStart + seconds(30))).retry_after_seconds,
            30);  // the first 100 ms leave at t=60
  EXPECT_TRUE(ticket_of(admission.admit("acme", q, kStart + seconds(60))));
}

TEST(CpuWindow, EachTicketReportsOnceAndNonsenseCountsAsNothing) {
  Admission admission;
  auto q = quotas(1000, 1000, 100, 1000);
  auto ticket = ticket_of(admission.admit("acme", q, kStart));
  ticket->report_cpu(900, kStart);
  ticket->report_cpu(900, kStart);
  ticket_of(admission.admit("acme", q, kStart))->report_cpu(-5, kStart);
  ticket_of(admission.admit("acme", q, kStart))->report_cpu(std::nan(""), kStart);
  EXPECT_TRUE(ticket_of(admission.admit("acme", q, kStart)));
}

TEST(SoftLimits, WarnFromEightyPercentOfEachQuota) {
  Admission admission;
  auto q = quotas(5, 5, 5, 1000);
  std::vector<std::string> headers;
  std::vector<Ticket> held;
  for (int i = 0; i < 5; ++i) {
    auto ticket = ticket_of(admission.admit("acme", q, kStart));
    ASSERT_TRUE(ticket);
    headers.push_back(warning_header(ticket->warnings()));
    held.push_back(std::move(*ticket));
  }
  EXPECT_EQ(headers[0], "");
  EXPECT_EQ(headers[2], "");
  EXPECT_EQ(headers[3], "rate=80%, concurrency=80%");
  EXPECT_EQ(headers[4], "rate=100%, concurrency=100%");
  ASSERT_EQ(held[3].warnings().size(), 2u);
  EXPECT_EQ(held[3].warnings()[0].rule, "tenants.acme.quotas.rate_per_second");
  held.clear();

  // CPU: 850 of 1000 ms used.
  TimePoint later = kStart + seconds(10);
  ticket_of(admission.admit("acme", q, later))->report_cpu(850, later);
  auto ticket = ticket_of(admission.admit("acme", q, later));
  ASSERT_TRUE(ticket);
  EXPECT_EQ(warning_header(ticket->warnings()), "cpu_ms_per_minute=85%");
}

TEST(SoftLimits, TheAuditFlagIsSetOncePerTenantQuotaAndMinute) {
  Admission admission;
  auto q = quotas(1, 1);
  ASSERT_TRUE(ticket_of(admission.admit("acme", q, kStart)));  // 100 %: warned, audited
  int audited = 0;
  for (int i = 0; i < 50; ++i) audited += rejection_of(admission.admit("acme", q, kStart)).audit;
  EXPECT_EQ(audited, 1);
  // After the interval, the next rejection is audited again; a warning too.
  TimePoint later = kStart + kAuditInterval;
  auto ticket = ticket_of(admission.admit("acme", q, later));
  ASSERT_TRUE(ticket);
  ASSERT_EQ(ticket->warnings().size(), 1u);
  EXPECT_TRUE(ticket->warnings()[0].audit);
  EXPECT_TRUE(rejection_of(admission.admit("acme", q, later)).audit);
  EXPECT_FALSE(rejection_of(admission.admit("acme", q, later)).audit);

  auto first = ticket_of(admission.admit("globex", q, later));
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->warnings()[0].audit);
  EXPECT_TRUE(rejection_of(admission.admit("globex", q, later)).audit);
}

TEST(Memory, IdleTenantsAreForgottenAndTheMapIsBounded) {
  Admission admission(100);
  auto q = quotas(10, 10);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(ticket_of(admission.admit("tenant-" + std::to_string(i), q, kStart)));
    ASSERT_LE(admission.tracked_tenants(), 100u);
  }
  // A minute later every one of them is back to a full bucket: the periodic sweep drops them all.
  ASSERT_TRUE(ticket_of(admission.admit("acme", q, kStart + seconds(61))));
  EXPECT_EQ(admission.tracked_tenants(), 1u);
}

TEST(Memory, ATenantWithARunInFlightIsNeverForgotten) {
  Admission admission(2);
  auto q = quotas(10, 10, 1);
  auto running = ticket_of(admission.admit("acme", q, kStart));
  ASSERT_TRUE(running);
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(ticket_of(admission.admit("other-" + std::to_string(i), q, kStart)));
  EXPECT_LE(admission.tracked_tenants(), 2u);
  EXPECT_EQ(rejection_of(admission.admit("acme", q, kStart)).quota, "concurrency");
}

TEST(Threads, ConcurrentAdmissionsNeverExceedTheBurst) {
  Admission admission;
  auto q = quotas(0.001, 100, 1'000'000);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (auto ticket = ticket_of(admission.admit("acme", q, kStart))) ++admitted;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(admitted, 100);
}

}  // namespace
}  // namespace corral::sched
