// Every limit: the right outcome, the limit named, `used` and `allowed` right, and the limit
// holds even when the script catches the error.
#include <gtest/gtest.h>

#include "run_helper.h"

namespace corral::testing {
namespace {

void expect_limit(const InvocationResult& result, LimitKind limit, int64_t allowed) {
  ASSERT_EQ(result.outcome, Outcome::limit_exceeded) << to_json(result).dump();
  ASSERT_EQ(result.limit, limit) << to_json(result).dump();
  EXPECT_EQ(result.allowed, allowed);
  // Fuel and sizes report what the run reached past the limit; wall time the moment it hit it.
  EXPECT_GE(result.used, allowed);
}

TEST(FuelLimit, StopsAnInfiniteLoop) {
  auto result = run_script("function handle() while true do end end", {}, {{"fuel", 200000}});
  expect_limit(result, LimitKind::fuel, 200000);
  EXPECT_LE(result.used, 200000 + 1000);  // counted in steps of 1000 instructions
  EXPECT_EQ(result.stats.fuel_used, result.used);
}

TEST(FuelLimit, IsStickyThroughPcall) {
  auto result = run_script(
      "function handle() for i = 1, 100 do pcall(function() while true do end end) end "
      "return 'escaped' end",
      {}, {{"fuel", 100000}});
  expect_limit(result, LimitKind::fuel, 100000);
}

TEST(FuelLimit, ChargesNewCoroutines) {
  // Each coroutine runs fewer instructions than one hook step; creating them must still cost.
  auto result = run_script(
      "function handle() for i = 1, 1e9 do coroutine.wrap(function() end)() end end", {},
      {{"fuel", 1000000}});
  expect_limit(result, LimitKind::fuel, 1000000);
}

TEST(FuelLimit, ChargesBulkCFunctions) {
  expect_limit(run_script("function handle() return #string.rep('ab', 5000000) end", {},
                          {{"fuel", 1000000}}),
               LimitKind::fuel, 1000000);
  expect_limit(run_script("function handle() return table.move({}, 1, 1 << 62, 2) end", {},
                          {{"fuel", 1000000}}),
               LimitKind::fuel, 1000000);
  expect_limit(run_script("function handle() return table.unpack({}, 1, 1e8) end", {},
                          {{"fuel", 1000000}}),
               LimitKind::fuel, 1000000);
  EXPECT_EQ(evaluate("#string.rep('', 1 << 60)"), 0);  // nothing to build, so nothing to wait for
}

TEST(FuelLimit, SmallWorkFitsTheBudget) {
  auto result = run_script("function handle() local s = 0 for i = 1, 1000 do s = s + i end return s end",
                           {}, {{"fuel", 100000}});
  ASSERT_EQ(result.outcome, Outcome::ok);
  EXPECT_EQ(result.output, 500500);
}

TEST(MemoryLimit, StopsATableThatGrowsForever) {
  auto result = run_script("function handle() local t = {} for i = 1, 1e9 do t[i] = {} end end",
                           {}, {{"memory_bytes", 4 << 20}, {"fuel", 1'000'000'000}});
  expect_limit(result, LimitKind::memory, 4 << 20);
  EXPECT_LE(result.stats.memory_peak_bytes, 4 << 20);
}

TEST(MemoryLimit, RefusesOneHugeAllocation) {
  auto result = run_script("function handle() return #string.rep('x', 100 << 20) end", {},
                           {{"memory_bytes", 8 << 20}, {"fuel", 1'000'000'000}});
  expect_limit(result, LimitKind::memory, 8 << 20);
  EXPECT_GE(result.used, 100 << 20);
}

TEST(MemoryLimit, IsStickyWhenTheScriptCatchesIt) {
  auto result = run_script(
      "function handle() local ok = pcall(string.rep, 'x', 64 << 20) return ok end", {},
      {{"memory_bytes", 8 << 20}, {"fuel", 1'000'000'000}});
  expect_limit(result, LimitKind::memory, 8 << 20);
}

TEST(MemoryLimit, GarbageHeavyScriptsStillRunNearTheCap) {
  // Lots of short-lived strings: the collector, not the limit, should deal with them.
  auto result = run_script(
      "function handle() local n = 0 for i = 1, 20000 do local s = string.rep('x', 1000) .. i "
      "n = n + #s end return n end",
      {}, {{"memory_bytes", 1 << 20}});
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
}

TEST(WallTimeLimit, StopsALoopThatHasFuelToSpare) {
  // With fuel to spare, the deadline checked between instructions is what stops it.
  auto result = run_script("function handle() while true do end end", {},
                           {{"timeout_ms", 100}, {"fuel", 1'000'000'000}});
  expect_limit(result, LimitKind::wall_time, 100);
  EXPECT_LT(result.used, 1000);
}

TEST(OutputLimit, MeasuresTheWholeOutput) {
  auto result = run_script("function handle() return string.rep('x', 5000) end", {},
                           {{"output_bytes", 1000}});
  expect_limit(result, LimitKind::output_size, 1000);
  EXPECT_EQ(result.used, 5002);  // the string and its two quotes
}

TEST(OutputLimit, ExactFitIsOk) {
  auto result = run_script("function handle() return string.rep('x', 998) end", {},
                           {{"output_bytes", 1000}});
  EXPECT_EQ(result.outcome, Outcome::ok);
}

TEST(LogLimit, StopsALogFlood) {
  auto result = run_script("function handle() for i = 1, 1e6 do print('0123456789') end end", {},
                           {{"log_bytes", 1000}});
  expect_limit(result, LimitKind::log_size, 1000);
  EXPECT_EQ(result.used, 1010);
  EXPECT_EQ(result.logs.size(), 100u);  // what fitted is kept
}

TEST(LogLimit, IsStickyThroughPcall) {
  auto result = run_script(
      "function handle() for i = 1, 1000 do pcall(print, string.rep('y', 100)) end return 1 end",
      {}, {{"log_bytes", 1000}});
  expect_limit(result, LimitKind::log_size, 1000);
}

TEST(Limits, RequestsAboveTheMaximumAreRefused) {
  LimitsPolicy policy;
  EXPECT_THROW(policy.resolve({{"fuel", policy.maxima.fuel + 1}}), InvalidRequest);
  EXPECT_THROW(policy.resolve({{"fuel", 0}}), InvalidRequest);
  EXPECT_THROW(policy.resolve({{"fuel", "many"}}), InvalidRequest);
  EXPECT_THROW(policy.resolve({{"cpu", 1}}), InvalidRequest);
  EXPECT_EQ(policy.resolve({{"fuel", 10}}).fuel, 10);
  EXPECT_EQ(policy.resolve(nullptr), policy.defaults);
  try {
    policy.resolve({{"memory_bytes", policy.maxima.memory_bytes * 2}});
    FAIL();
  } catch (const InvalidRequest& error) {
    EXPECT_EQ(error.where, "limits.memory_bytes");
    EXPECT_NE(std::string(error.what()).find("maximum"), std::string::npos);
  }
}

TEST(Stats, AreReportedForEveryRun) {
  auto result = run_script(
      "function handle() local t = {} for i = 1, 100000 do t[i] = i end return #t end");
  ASSERT_EQ(result.outcome, Outcome::ok);
  EXPECT_GT(result.stats.fuel_used, 100000);
  EXPECT_GT(result.stats.memory_peak_bytes, 100000 * 8);
  EXPECT_GT(result.stats.wall_ms, 0);
  EXPECT_GT(result.stats.cpu_ms, 0);
}

}  // namespace
}  // namespace corral::testing
