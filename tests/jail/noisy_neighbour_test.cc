// Noisy neighbour: while one tenant runs infinite loops and memory bombs at full concurrency,
// another tenant's invocations all still succeed. The latencies of both are printed (figures
// for the record, not asserted: the machines are shared and noisy).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "pool/jail_setup.h"
#include "pool/tenant_pool.h"

namespace corral {
namespace {

using Clock = std::chrono::steady_clock;

struct Latencies {
  std::vector<double> ms;
  double percentile(double p) {
    if (ms.empty()) return 0;
    std::sort(ms.begin(), ms.end());
    return ms[std::min(ms.size() - 1, static_cast<size_t>(p * static_cast<double>(ms.size())))];
  }
};

InvocationRequest request(const std::string& tenant, const std::string& source,
                          nlohmann::json limits = {}) {
  InvocationRequest request;
  request.invocation_id = new_invocation_id();
  request.tenant = tenant;
  request.source = source;
  request.input = {{"id", 7}, {"amount", 10}};
  request.limits = LimitsPolicy{}.resolve(limits.is_object() ? limits : nlohmann::json::object());
  return request;
}

const char* kQuiet = "function handle(input) input.total = input.amount * 1.2 return input end";

Latencies run_quiet(TenantPool& pool, Clock::duration how_long, std::atomic<int>& failures) {
  Latencies latencies;
  auto end = Clock::now() + how_long;
  while (Clock::now() < end) {
    auto started = Clock::now();
    auto result = pool.run(request("quiet", kQuiet));
    latencies.ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - started).count());
    if (result.outcome != Outcome::ok) {
      ++failures;
      ADD_FAILURE() << "the quiet tenant's run failed: " << to_json(result).dump();
    }
  }
  return latencies;
}

TEST(NoisyNeighbour, QuietTenantKeepsBeingServed) {
  JailSetup jail(JailSetup::accept_any_missing());
  TenantPool pool(
      {.max_workers = 10,
       .warm_per_tenant = 2,
       .max_idle = 10,
       .recycle_after = 1000,
       .kill_grace_ms = 50},
      [&](const std::string& tenant) {
        return std::make_unique<WorkerProcess>(jail.spec_for(CORRAL_WORKER_PATH, tenant));
      });
  std::atomic<int> failures{0};
  Latencies alone = run_quiet(pool, std::chrono::seconds(1), failures);

  std::atomic<bool> stop{false};
  std::vector<std::thread> noisy;
  std::vector<Latencies> noisy_latencies(6);
  std::atomic<int> noisy_stopped_by_a_limit{0};
  for (int i = 0; i < 6; ++i) {
    noisy.emplace_back([&, i] {
      while (!stop) {
        bool loop = i % 2 == 0;
        auto started = Clock::now();
        auto result =
            loop ? pool.run(request("noisy", "function handle() while true do end end",
                                    {{"timeout_ms", 300}, {"fuel", 1000000000}}))
                 : pool.run(request("noisy",
                                    "function handle() local t = {} while true do t[#t + 1] = "
                                    "string.rep('x', 1024) .. #t end end",
                                    {{"memory_bytes", 256 << 20}, {"timeout_ms", 2000}}));
        noisy_latencies[i].ms.push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - started).count());
        if (result.outcome == Outcome::limit_exceeded) ++noisy_stopped_by_a_limit;
      }
    });
  }
  Latencies crowded = run_quiet(pool, std::chrono::seconds(3), failures);
  stop = true;
  for (auto& thread : noisy) thread.join();

  Latencies all_noisy;
  for (auto& each : noisy_latencies)
    all_noisy.ms.insert(all_noisy.ms.end(), each.ms.begin(), each.ms.end());
  std::printf(
      "noisy neighbour: quiet alone p50 %.2f ms p99 %.2f ms (%zu runs); quiet beside noisy p50 "
      "%.2f ms "
      "p99 %.2f ms (%zu runs); noisy p50 %.2f ms p99 %.2f ms (%zu runs, %d stopped by a limit)\n",
      alone.percentile(0.5), alone.percentile(0.99), alone.ms.size(), crowded.percentile(0.5),
      crowded.percentile(0.99), crowded.ms.size(), all_noisy.percentile(0.5),
      all_noisy.percentile(0.99), all_noisy.ms.size(), noisy_stopped_by_a_limit.load());
  EXPECT_EQ(failures, 0);
  EXPECT_GT(crowded.ms.size(), 10u);
  EXPECT_GT(noisy_stopped_by_a_limit, 0)
      << "the noisy tenant never hit a limit: the test did not make noise";
}

}  // namespace
}  // namespace corral
