// Every limit: the right outcome, the limit named, `used` and `allowed` right, and the limit
// holds even when the script catches the error.
#include <gtest/gtest.h>

#include <cstdlib>

#include "run_helper.h"
#include "runtime/run_state.h"

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
  auto result =
      run_script("function handle() for i = 1, 1e9 do coroutine.wrap(function() end)() end end", {},
                 {{"fuel", 1000000}});
  expect_limit(result, LimitKind::fuel, 1000000);
}

TEST(FuelLimit, XpcallHandlerDoesNotRunAfterATrip) {
  // The handler would run inside the metering hook, where hooks are off: it must be skipped.
  auto result = run_script(
      "function handle() xpcall(function() while true do end end, function() while true do end "
      "end) end",
      {}, {{"fuel", 100000}, {"timeout_ms", 2000}});
  expect_limit(result, LimitKind::fuel, 100000);
}

TEST(FuelLimit, XpcallHandlerStillRunsForOrdinaryErrors) {
  auto result = run_script(
      "function handle() return select(2, xpcall(function(a) error('x' .. a, 0) end, "
      "function(m) return 'handled ' .. m end, 1)) end");
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  EXPECT_EQ(result.output, "handled x1");
  auto yields = run_script(
      "function handle() local co = coroutine.wrap(function() return xpcall(function() "
      "coroutine.yield(1) return 2 end, print) end) return {co(), co()} end");
  ASSERT_EQ(yields.outcome, Outcome::ok) << to_json(yields).dump();
  EXPECT_EQ(yields.output,
            nlohmann::json::array({1, true, 2}));  // the first call is cut to one value
}

TEST(FuelLimit, CloseHandlersDoNotRunAfterATrip) {
  // A coroutine that died of the fuel limit still holds a pending __close; closing it later from
  // the script must not run that handler unmetered.
  auto closed = run_script(
      "function handle() local co = coroutine.create(function() "
      "local x <close> = setmetatable({}, {__close = function() while true do end end}) "
      "while true do end end) "
      "coroutine.resume(co) coroutine.close(co) return 'escaped' end",
      {}, {{"fuel", 100000}, {"timeout_ms", 2000}});
  expect_limit(closed, LimitKind::fuel, 100000);
  auto wrapped = run_script(
      "function handle() pcall(coroutine.wrap(function() "
      "local x <close> = setmetatable({}, {__close = function() while true do end end}) "
      "while true do end end)) return 'escaped' end",
      {}, {{"fuel", 100000}, {"timeout_ms", 2000}});
  expect_limit(wrapped, LimitKind::fuel, 100000);
}

TEST(CoroutineClose, NestingIsCappedWithAnOrdinaryError) {
  auto result = run_script(R"(
    function handle()
      local co = false
      for i = 1, 1000 do
        local previous = co
        co = coroutine.create(function()
          local c <close> = setmetatable({}, {__close = function()
            if previous then assert(coroutine.close(previous)) end end})
          coroutine.yield()
        end)
        coroutine.resume(co)
      end
      local ok, message = coroutine.close(co)
      return {ok = ok, message = message}
    end)",
                           {}, {{"fuel", 100000000}});
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  EXPECT_EQ(result.output["ok"], false);
  EXPECT_NE(result.output["message"].get<std::string>().find("nest deeper than 200"),
            std::string::npos);
}

TEST(CoroutineClose, KeepsLuaSemantics) {
  auto result = run_script(R"(
    function handle()
      local log = {}
      local co = coroutine.create(function()
        local c <close> = setmetatable({}, {__close = function() log[#log + 1] = 'closed' end})
        coroutine.yield()
      end)
      coroutine.resume(co)
      -- (each result goes to a local first: log[#log + 1] is indexed before the call runs)
      local closed = tostring(coroutine.close(co))
      log[#log + 1] = closed
      log[#log + 1] = coroutine.status(co)
      local failing = coroutine.create(function() error('boom', 0) end)
      coroutine.resume(failing)
      local ok, message = coroutine.close(failing)
      log[#log + 1] = tostring(ok) .. ' ' .. message
      log[#log + 1] = select(2, pcall(coroutine.close, coroutine.running()))
      local wrapped = coroutine.wrap(function()
        local c <close> = setmetatable({}, {__close = function() log[#log + 1] = 'wrap closed' end})
        error('inner', 0)
      end)
      local wrapped_error = select(2, pcall(wrapped))
      log[#log + 1] = wrapped_error
      return log
    end)");
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  EXPECT_EQ(result.output,
            nlohmann::json::array({"closed", "true", "dead", "false boom",
                                   "cannot close a running coroutine", "wrap closed", "inner"}));
}

TEST(FuelLimit, ChargesBulkCFunctions) {
  expect_limit(run_script("function handle() return #string.rep('ab', 5000000) end", {},
                          {{"fuel", 1000000}}),
               LimitKind::fuel, 1000000);
  expect_limit(run_script("function handle() return table.move({}, 1, 1 << 62, 2) end", {},
                          {{"fuel", 1000000}}),
               LimitKind::fuel, 1000000);
  // Within the stack Lua can grow (at most a million values: beyond, Lua refuses before any work).
  expect_limit(run_script("function handle() return table.unpack({}, 1, 999000) end", {},
                          {{"fuel", 500000}}),
               LimitKind::fuel, 500000);
  EXPECT_EQ(evaluate("#string.rep('', 1 << 60)"), 0);  // nothing to build, so nothing to wait for
}

// Lua's own checks come first: a call Lua refuses costs no fuel for work that never happens, and
// the script gets Lua's error, which pcall catches.
TEST(FuelLimit, IsChargedOnlyAfterLuasOwnChecks) {
  auto result = run_script(
      "function handle()\n"
      "  local out = {}\n"
      "  for _, call in ipairs({{string.rep, 'aa', 1 << 30}, {table.unpack, {}, 1, (1 << 31) - "
      "1},\n"
      "                         {table.unpack, {}, 1, 1e7}, {table.concat, {}, '', 1, 1 << 40},\n"
      "                         {table.move, {}, 1, math.maxinteger, 2}}) do\n"
      "    out[#out + 1] = select(2, pcall(table.unpack(call)))\n"
      "  end\n"
      "  return out\n"
      "end",
      {}, {{"fuel", 1000000}});
  ASSERT_EQ(result.outcome, Outcome::ok) << result.message;
  EXPECT_EQ(result.output,
            nlohmann::json({"resulting string too large", "too many results to unpack",
                            "too many results to unpack",
                            "invalid value (nil) at index 1 in table for 'concat'",
                            "bad argument #4 to 'table.move' (destination wrap around)"}));
  EXPECT_LT(result.stats.fuel_used, 10000);
  // table.concat is charged as it goes, element by element: real work still runs out of fuel.
  expect_limit(run_script("function handle() local t = {} for i = 1, 1000 do t[i] = 'x' end "
                          "for i = 1, 2000 do table.concat(t) end end",
                          {}, {{"fuel", 1000000}}),
               LimitKind::fuel, 1000000);
}

TEST(FuelLimit, SmallWorkFitsTheBudget) {
  auto result =
      run_script("function handle() local s = 0 for i = 1, 1000 do s = s + i end return s end", {},
                 {{"fuel", 100000}});
  ASSERT_EQ(result.outcome, Outcome::ok);
  EXPECT_EQ(result.output, 500500);
}

TEST(MemoryLimit, StopsATableThatGrowsForever) {
  auto result = run_script("function handle() local t = {} for i = 1, 1e9 do t[i] = {} end end", {},
                           {{"memory_bytes", 4 << 20}, {"fuel", 1'000'000'000}});
  expect_limit(result, LimitKind::memory, 4 << 20);
  // The allocation that crossed the limit was let through; the next instruction stopped it.
  EXPECT_LE(result.stats.memory_peak_bytes, 2 * (4 << 20));
}

TEST(MemoryLimit, RefusesOneHugeAllocation) {
  auto result = run_script("function handle() return #string.rep('x', 100 << 20) end", {},
                           {{"memory_bytes", 8 << 20}, {"fuel", 1'000'000'000}});
  expect_limit(result, LimitKind::memory, 8 << 20);
  EXPECT_GE(result.used, 100 << 20);
}

TEST(MemoryLimit, IsStickyWhenTheScriptCatchesIt) {
  auto result =
      run_script("function handle() local ok = pcall(string.rep, 'x', 64 << 20) return ok end", {},
                 {{"memory_bytes", 8 << 20}, {"fuel", 1'000'000'000}});
  expect_limit(result, LimitKind::memory, 8 << 20);
}

TEST(MemoryLimit, GarbageHeavyScriptsStillRunNearTheCap) {
  // Lots of short-lived strings: the collector, not the limit, should deal with them.
  auto result = run_script(
      "function handle() local n = 0 for i = 1, 20000 do local s = string.rep('x', 1000) .. i "
      "n = n + #s end return n end",
      {}, {{"memory_bytes", 1 << 20}, {"timeout_ms", 10000}});
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
}

// The allocator must never fail an allocation inside the VM for going over the limit: Lua
// answers a failed allocation with an emergency collection in the middle of whatever the VM was
// doing (clearing weak tables among other things). Past the limit it lets the allocation
// through and marks the run; only past the hard ceiling, once the limit has tripped, it refuses.
TEST(MemoryLimit, TheAllocatorLetsTheCrossingAllocationThroughAndRefusesOnlyPastTheCeiling) {
  Limits limits;
  limits.memory_bytes = 1 << 20;
  runtime::RunState state(limits);
  void* under = runtime::metered_alloc(&state, nullptr, 0, 900 << 10);
  ASSERT_NE(under, nullptr);
  EXPECT_FALSE(state.memory_over);
  void* over = runtime::metered_alloc(&state, nullptr, 0, 900 << 10);
  ASSERT_NE(over, nullptr);
  EXPECT_TRUE(state.memory_over);
  EXPECT_FALSE(state.tripped);

  size_t ceiling = runtime::memory_ceiling(limits.memory_bytes, false);
  size_t limit = static_cast<size_t>(limits.memory_bytes);
  EXPECT_EQ(runtime::memory_ceiling(limits.memory_bytes, true) - limit, 2 * (ceiling - limit));
  EXPECT_LE(runtime::memory_ceiling(256 << 20, true), size_t{(256 + 112) << 20});
  EXPECT_EQ(runtime::metered_alloc(&state, nullptr, 0, ceiling), nullptr);
  EXPECT_EQ(state.tripped, LimitKind::memory);
  EXPECT_EQ(state.memory_refusals, 1);
  EXPECT_EQ(state.memory_in_use, size_t{1800} << 10);
  runtime::metered_alloc(&state, over, 900 << 10, 0);
  runtime::metered_alloc(&state, under, 900 << 10, 0);
  EXPECT_EQ(state.memory_in_use, 0u);
}

// Every way a script fills memory ends in the memory limit raised between instructions, not in
// an allocation failing inside the VM, which a pcall would catch as Lua's "not enough memory".
TEST(MemoryLimit, NoAllocationFailsInsideTheVmWhateverFillsMemory) {
  const char* fillers[] = {
      "local t = {} for i = 1, 1e9 do t[i] = {i} end",
      "local s = 'x' for i = 1, 40 do s = s .. s end",
      "local s = 'x' for i = 1, 40 do s = s .. s .. s .. s .. s .. s .. s .. s end",
      "local t = {} for i = 1, 1e9 do t['k' .. i] = i end",
      "local weak = setmetatable({}, {__mode = 'k'}) local keep = {} "
      "for i = 1, 1e9 do local k = {} keep[i] = k weak[k] = {i} end",
      "local t = {} for i = 1, 1e9 do t[i] = table.concat({string.rep('c', 1000), i}) end",
      "coroutine.wrap(function() local t = {} for i = 1, 1e9 do t[i] = {} end end)()",
      "local co = coroutine.create(function() local s = 'x' for i = 1, 40 do s = s .. s end end) "
      "local ok, e = coroutine.resume(co) error(e, 0)",
  };
  for (const char* filler : fillers) {
    auto result = run_script(
        std::string("function handle() for attempt = 1, 3 do local ok, e = pcall(function() ") +
            filler + " end) print(e) end end",
        {}, {{"memory_bytes", 8 << 20}, {"fuel", 1'000'000'000}});
    SCOPED_TRACE(filler);
    expect_limit(result, LimitKind::memory, 8 << 20);
    for (const auto& entry : result.logs) {
      EXPECT_EQ(entry.message.find("not enough memory"), std::string::npos) << entry.message;
    }
  }
}

// The allocator arms the hook of the thread that runs: a coroutine doubling a string stops at
// the instruction after the allocation that crossed the limit, not up to a metering step later.
TEST(MemoryLimit, StopsAtTheNextInstructionInTheThreadThatCrossedIt) {
  for (const char* where : {"%s", "coroutine.wrap(function() %s end)()",
                            "local co = coroutine.create(function() %s end) "
                            "coroutine.resume(co) coroutine.resume(co)"}) {
    char body[256];
    std::snprintf(body, sizeof body, where, "local s = 'x' for i = 1, 40 do s = s .. s end");
    auto result = run_script(std::string("function handle() ") + body + " end", {},
                             {{"memory_bytes", 8 << 20}, {"fuel", 1'000'000'000}});
    SCOPED_TRACE(body);
    expect_limit(result, LimitKind::memory, 8 << 20);
    // The 8 MiB string that crossed the limit and the strings before it; one doubling more
    // would be 16 MiB on top.
    EXPECT_LT(result.stats.memory_peak_bytes, 20 << 20);
  }
}

TEST(MemoryLimit, GarbageOverTheLimitIsCollectedNotCounted) {
  // Half the limit held, and garbage made much faster than the collector's pace: crossing the
  // limit runs a full collection, and only what is still held counts.
  auto result = run_script(
      "function handle() local live = {} for i = 1, 500 do live[i] = string.rep('l', 1000) .. i "
      "end local big, n = string.rep('x', 4000), 0 for i = 1, 20000 do local s = big .. i "
      "n = n + #s end "
      "return n end",
      {}, {{"memory_bytes", 1 << 20}, {"timeout_ms", 10000}});
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
  auto result =
      run_script("function handle() return string.rep('x', 998) end", {}, {{"output_bytes", 1000}});
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
  auto result =
      run_script("function handle() local t = {} for i = 1, 100000 do t[i] = i end return #t end");
  ASSERT_EQ(result.outcome, Outcome::ok);
  EXPECT_GT(result.stats.fuel_used, 100000);
  EXPECT_GT(result.stats.memory_peak_bytes, 100000 * 8);
  EXPECT_GT(result.stats.wall_ms, 0);
  EXPECT_GT(result.stats.cpu_ms, 0);
}

}  // namespace
}  // namespace corral::testing
