// Overload against a real corrald: five times as many concurrent clients as it can hold (its
// invocation threads plus its global queue bound), each sending invocations back to back. corrald
// must answer every request 200, 429 or 503 (never another 5xx, never a dropped connection), put
// Retry-After on every refusal, keep its memory bounded, and serve normally as soon as the load
// stops. Counts, not speed, are asserted: how many of each answer depends on the machine.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "api/load.h"
#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kThreads = 2;
constexpr int kMaxQueued = 24;
constexpr int kClients = 5 * (kThreads + kMaxQueued);

// Tenants t0..t4 have room in their quotas, so the queues are what refuses them; t5 may run once
// (its warm-up) and then hardly ever, so those of its requests that get through its queue are
// refused by admission (429) under the same load.
// Runs get 10 s of wall time: on a loaded two-core test machine a 20 ms run may wait long for
// CPU, and this test is about the answers corrald gives, not about speed.
constexpr const char* kPolicy = R"(defaults:
  limits:
    timeout_ms: 10000
  quotas:
    rate_per_second: 100000
    burst: 100000
    concurrency: 100
tenants:
  t5:
    quotas:
      rate_per_second: 0.01
      burst: 1
)";

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer keeps freed memory in quarantine (256 MiB by default) before reusing it, so a
// sanitized corrald's resident size grows by that much under any load before it levels off.
constexpr long kGrowthBoundKib = 512 * 1024;
#else
constexpr long kGrowthBoundKib = 128 * 1024;
#endif

// About 20 ms of CPU per run.
constexpr const char* kWork =
    "function handle(input) local t = os.clock() while os.clock() - t < 0.02 do end "
    "return {n = input.n} end";

TEST(Overload, FiveTimesCapacityGetsOnly200429Or503AndCorraldRecovers) {
  CorraldProcess corrald({"--invocation-threads", std::to_string(kThreads), "--tenant-queue-depth",
                          "8", "--max-queued", std::to_string(kMaxQueued)});
  ApiClient api(corrald);
  Answer policy = api.put(api.admin(), "/v1/policy", {{"document", kPolicy}});
  ASSERT_EQ(policy.status, 201) << policy;
  std::vector<std::string> invokers;
  for (int t = 0; t < 6; ++t) {
    std::string tenant = "t" + std::to_string(t);
    auto tokens = api.tenant_with_tokens(tenant);
    int64_t version = api.publish(tokens["publisher"], tenant, "work", kWork);
    api.approve(tokens["reviewer"], tenant, "work", version);
    api.set_alias(tokens["reviewer"], tenant, "work", "live", version);
    invokers.push_back(tokens["invoker"]);
    // Warm each tenant's worker, so that "before" includes what a served tenant costs.
    LoadConnection warm(corrald.host(), corrald.port(), tokens["invoker"]);
    Reply reply =
        warm.post("/v1/tenants/" + tenant + "/scripts/work/invoke", R"({"input": {"n": 1}})");
    ASSERT_EQ(reply.status, 200) << reply.error << reply.body.dump();
  }
  auto before = resident_kib(corrald.pid());
  ASSERT_TRUE(before);

  Tally tally;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      yield_cpu_to_corrald();
      int t = c % 6;
      LoadConnection connection(corrald.host(), corrald.port(), invokers[t]);
      std::string target = "/v1/tenants/t" + std::to_string(t) + "/scripts/work/invoke";
      for (int i = 0; i < 5'000 && !stop; ++i) {
        tally.add(connection.post(target, json{{"input", {{"n", i}}}}.dump()));
      }
    });
  }
  // Load for 6 s, sampling corrald's memory.
  long peak = *before;
  auto until = std::chrono::steady_clock::now() + 6s;
  while (std::chrono::steady_clock::now() < until) {
    if (auto now = resident_kib(corrald.pid())) peak = std::max(peak, *now);
    std::this_thread::sleep_for(100ms);
  }
  stop = true;
  for (auto& thread : clients) thread.join();
  auto after = resident_kib(corrald.pid());
  ASSERT_TRUE(after);

  SCOPED_TRACE("answers under load: " + tally.summary() + "; VmRSS before " +
               std::to_string(*before) + " KiB, peak " + std::to_string(peak) + " KiB, after " +
               std::to_string(*after) + " KiB");
  std::cout << "[ overload ] " << kClients << " clients, " << tally.summary() << "; VmRSS before "
            << *before << " KiB, peak " << peak << " KiB, after " << *after << " KiB\n";
  EXPECT_EQ(tally.count(200) + tally.count(429) + tally.count(503), tally.total());
  EXPECT_TRUE(tally.errors().empty()) << tally.errors().front();
  EXPECT_GT(tally.count(200), 0);
  EXPECT_GT(tally.count(503), 0) << "the load never reached a bound: it is not an overload";
  EXPECT_GT(tally.count(429), 0) << "t5's tiny rate should have refused some";
  EXPECT_EQ(tally.refusals_without_retry_after(), 0);
  for (const auto& [type, count] : tally.problem_types()) {
    EXPECT_TRUE(type == "urn:corral:problem:quota-exceeded" ||
                type == "urn:corral:problem:queue-full" || type == "urn:corral:problem:overloaded")
        << type << " x" << count;
  }
  // Generous: bounded queues hold a few dozen small requests; 130 connections cost buffers.
  EXPECT_LT(peak - *before, kGrowthBoundKib) << "corrald grew by " << (peak - *before) << " KiB";
  EXPECT_LT(*after - *before, kGrowthBoundKib) << "corrald kept " << (*after - *before) << " KiB";

  // Full recovery: nothing is left queued, and the next invocation of each tenant is served.
  EXPECT_EQ(corrald.metric("corral_requests_queued"), 0);
  EXPECT_EQ(corrald.client().request(http::verb::get, "/healthz").result_int(), 200);
  for (int t = 0; t < 5; ++t) {
    LoadConnection connection(corrald.host(), corrald.port(), invokers[t]);
    Reply reply = connection.post("/v1/tenants/t" + std::to_string(t) + "/scripts/work/invoke",
                                  R"({"input": {"n": 7}})");
    ASSERT_EQ(reply.status, 200) << reply.error << reply.body.dump();
    EXPECT_EQ(reply.body["output"]["n"], 7);
  }
}

}  // namespace
}  // namespace corral::testing
