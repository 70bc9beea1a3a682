// The noisy neighbour, functionally, against a real corrald: tenant "noisy" floods with slow,
// CPU-heavy invocations far over its quotas while tenant "quiet" invokes at a modest pace. Every
// quiet invocation must succeed; the noisy tenant must be told 429 or 503, each with Retry-After,
// and never anything else. How fast quiet is served is measured by bench/noisy_neighbour (see
// docs/performance.md), not asserted here.
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

// Runs get 10 s of wall time: on a loaded two-core test machine a trivial run may wait long for
// CPU, and this test is about being served, not about speed.
constexpr const char* kPolicy = R"(defaults:
  limits:
    timeout_ms: 10000
  quotas:
    rate_per_second: 1000
    burst: 1000
    concurrency: 100
tenants:
  noisy:
    limits:
      fuel: 1000000000
      timeout_ms: 5000
    quotas:
      rate_per_second: 2
      burst: 2
      concurrency: 1
      cpu_ms_per_minute: 60000
)";

// About 300 ms of CPU per run.
constexpr const char* kBurner =
    "function handle() local t = os.clock() while os.clock() - t < 0.3 do end return 'burned' end";

TEST(NoisyNeighbour, TheQuietTenantIsServedWhileTheNoisyOneIsToldToBackOff) {
  CorraldProcess corrald({"--invocation-threads", "2", "--tenant-queue-depth", "2"});
  ApiClient api(corrald);
  Answer policy = api.put(api.admin(), "/v1/policy", {{"document", kPolicy}});
  ASSERT_EQ(policy.status, 201) << policy;
  std::map<std::string, std::map<std::string, std::string>> tokens;
  for (const auto& [tenant, source] : {std::pair{"noisy", kBurner}, std::pair{"quiet", kDoubler}}) {
    tokens[tenant] = api.tenant_with_tokens(tenant);
    int64_t version = api.publish(tokens[tenant]["publisher"], tenant, "work", source);
    api.approve(tokens[tenant]["reviewer"], tenant, "work", version);
    api.set_alias(tokens[tenant]["reviewer"], tenant, "work", "live", version);
  }
  const std::string noisy_path = "/v1/tenants/noisy/scripts/work/invoke";
  const std::string quiet_path = "/v1/tenants/quiet/scripts/work/invoke";

  std::atomic<bool> quiet_done{false};
  Tally noisy;
  std::vector<std::thread> flood;
  auto flood_deadline = std::chrono::steady_clock::now() + 60s;
  for (int c = 0; c < 12; ++c) {
    flood.emplace_back([&] {
      yield_cpu_to_corrald();
      LoadConnection connection(corrald.host(), corrald.port(), tokens["noisy"]["invoker"]);
      // Bounded in time and count; stops as soon as the quiet tenant has finished.
      for (int i = 0;
           i < 20'000 && !quiet_done && std::chrono::steady_clock::now() < flood_deadline; ++i) {
        noisy.add(connection.post(noisy_path, R"({"input": {}})"));
      }
    });
  }
  // Let the flood fill the noisy tenant's queue before the quiet tenant starts.
  auto started = std::chrono::steady_clock::now();
  while (noisy.count(429) + noisy.count(503) == 0 &&
         std::chrono::steady_clock::now() < started + 20s)
    std::this_thread::sleep_for(10ms);

  LoadConnection quiet(corrald.host(), corrald.port(), tokens["quiet"]["invoker"]);
  std::vector<Reply> quiet_replies;
  for (int i = 0; i < 25; ++i) {
    quiet_replies.push_back(quiet.post(quiet_path, json{{"input", {{"n", i}}}}.dump()));
    std::this_thread::sleep_for(100ms);
  }
  quiet_done = true;
  for (auto& thread : flood) thread.join();

  for (size_t i = 0; i < quiet_replies.size(); ++i) {
    const Reply& reply = quiet_replies[i];
    ASSERT_EQ(reply.status, 200) << "quiet invocation " << i << ": " << reply.error << " "
                                 << reply.body.dump();
    EXPECT_EQ(reply.body["output"]["doubled"], 2 * static_cast<int>(i));
  }
  // The noisy tenant got its quota's worth, then refusals with Retry-After, and nothing else.
  SCOPED_TRACE("noisy tenant's answers: " + noisy.summary());
  EXPECT_GE(noisy.count(200), 1);
  EXPECT_GT(noisy.count(429) + noisy.count(503), 0);
  EXPECT_EQ(noisy.count(200) + noisy.count(429) + noisy.count(503), noisy.total());
  EXPECT_EQ(noisy.refusals_without_retry_after(), 0);
  EXPECT_TRUE(noisy.errors().empty()) << noisy.errors().front();
  for (const auto& [type, count] : noisy.problem_types()) {
    EXPECT_TRUE(type == "urn:corral:problem:quota-exceeded" ||
                type == "urn:corral:problem:queue-full")
        << type << " x" << count;
  }
}

}  // namespace
}  // namespace corral::testing
