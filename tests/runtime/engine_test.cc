// One Engine serves invocation after invocation, as a worker does: each invocation must find a
// fresh environment whatever the one before it changed, and nothing it allocated may stay.
// Each attack runs in one invocation and is looked for in the next.
#include <gtest/gtest.h>

#include "run_helper.h"

namespace corral::testing {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  InvocationResult run(const std::string& source, nlohmann::json limits = nullptr) {
    return run_script_in(engine_, source, nlohmann::json::object(), std::move(limits));
  }

  nlohmann::json output(const std::string& source) {
    auto result = run(source);
    EXPECT_EQ(result.outcome, Outcome::ok) << result.message;
    return result.output;
  }

  runtime::Engine engine_;
};

TEST_F(EngineTest, GlobalsOfOneInvocationAreGoneInTheNext) {
  output("secret = 'tenant data' function handle() rawset(_G, 'also', 1) return true end");
  EXPECT_EQ(output("function handle() return {secret == nil, also == nil, _G.secret == nil} end"),
            nlohmann::json::parse("[true, true, true]"));
}

TEST_F(EngineTest, ChangedLibraryTablesAreFreshCopiesInTheNext) {
  // Within the invocation the change is seen, string methods included.
  EXPECT_EQ(output(R"(
    string.upper = function() return 'hijacked' end
    string.shout = function(s) return s .. '!' end
    math.pi = 3
    table.insert = nil
    os.time = function() return 0 end
    json.null = 'not null'
    coroutine.wrap = print
    utf8.char = nil
    function handle() return {('x'):upper(), ('x'):shout(), math.pi} end)"),
            nlohmann::json::parse(R"(["hijacked", "x!", 3])"));
  EXPECT_EQ(output(R"(
    function handle()
      return {('x'):upper(), string.upper('y'), ('x').shout == nil, math.pi > 3.14,
              type(table.insert), os.time() > 0, type(json.null), coroutine.wrap ~= print,
              utf8.char(65)}
    end)"),
            nlohmann::json::parse(R"(["X", "Y", true, true, "function", true, "userdata", true,
                                     "A"])"));
}

TEST_F(EngineTest, BaseFunctionsReplacedInOneInvocationAreRestoredInTheNext) {
  output("print = nil tostring = function() return 'x' end _G.pairs = nil function handle() end");
  EXPECT_EQ(
      output("function handle() return {type(print), tostring(1), type(pairs), _G == _ENV} end"),
      nlohmann::json::parse(R"(["function", "1", "function", true])"));
}

TEST_F(EngineTest, ChunksLoadedByAScriptSeeOnlyItsOwnInvocation) {
  output("function handle() load('leaked = 1')() return leaked end");
  EXPECT_EQ(output("function handle() return load('return leaked')() == nil end"), true);
}

TEST_F(EngineTest, ASeedSetByOneInvocationDoesNotDecideTheNext) {
  const std::string draw =
      "function handle() return {math.random(1, 1000000000), math.random(1, 1000000000)} end";
  auto seeded = output("math.randomseed(42) " + draw);
  auto seeded_again = output("math.randomseed(42) " + draw);
  ASSERT_EQ(seeded, seeded_again);  // the seed works within an invocation
  output("math.randomseed(42) function handle() end");
  EXPECT_NE(output(draw), seeded);
}

TEST_F(EngineTest, ObjectNumbersStartAgainAtOne) {
  output("function handle() local t = {} for i = 1, 5 do t[i] = tostring({}) end return t end");
  EXPECT_EQ(output("function handle() return tostring({}) end"), "table: #1");
}

TEST_F(EngineTest, TheSameSourceRunsItsTopLevelAgainEachTime) {
  const std::string counter =
      "local calls = 0 function handle() calls = calls + 1 return calls end";
  EXPECT_EQ(output(counter), 1);
  EXPECT_EQ(output(counter), 1);
  EXPECT_EQ(output(counter), 1);
}

TEST_F(EngineTest, ACoroutineLeftSuspendedIsUnreachableAfterwards) {
  output(R"(
    parked = coroutine.create(function() coroutine.yield(1) return 'resumed' end)
    coroutine.resume(parked)
    function handle() end)");
  EXPECT_EQ(output("function handle() return parked == nil end"), true);
}

TEST_F(EngineTest, TheStringMetatableStaysHidden) {
  output("function handle() return pcall(setmetatable, '', {}) end");
  EXPECT_EQ(output("function handle() return {getmetatable(''), ('abc'):len()} end"),
            nlohmann::json::parse("[false, 3]"));
}

TEST_F(EngineTest, AnInvocationAfterALimitStartsClean) {
  auto bomb = run("t = {} function handle() while true do t[#t + 1] = ('x'):rep(100) end end",
                  {{"memory_bytes", 1 << 20}});
  ASSERT_EQ(bomb.outcome, Outcome::limit_exceeded);
  auto loop = run("stuck = true function handle() while true do end end", {{"fuel", 100000}});
  ASSERT_EQ(loop.outcome, Outcome::limit_exceeded);
  EXPECT_EQ(output("function handle() return {t == nil, stuck == nil, ('a'):upper()} end"),
            nlohmann::json::parse(R"([true, true, "A"])"));
}

TEST_F(EngineTest, WhatAnInvocationAllocatesIsFreedAfterIt) {
  const std::string trivial = "function handle() return 1 end";
  output(trivial);
  auto before = run(trivial).stats.memory_peak_bytes;
  for (int i = 0; i < 50; ++i) {
    output("keep = {} function handle() for i = 1, 1000 do keep[i] = {i, tostring(i)} end end");
  }
  auto after = run(trivial).stats.memory_peak_bytes;
  // Were the big tables still held, the trivial run's limit would count them; it counts only
  // what the run itself allocates.
  EXPECT_LE(after, before + 1024);
  // And the memory limit applies to each invocation alone: many runs near the limit all pass.
  for (int i = 0; i < 20; ++i) {
    auto near_limit =
        run("function handle() local t = {} for i = 1, 2000 do t[i] = ('y'):rep(100) .. i end "
            "return #t end",
            {{"memory_bytes", 1 << 20}});
    ASSERT_EQ(near_limit.outcome, Outcome::ok) << i << ": " << near_limit.message;
  }
}

TEST_F(EngineTest, ManyDifferentSourcesRunCorrectly) {
  // More sources than the engine keeps compiled: each still runs its own code.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(output("function handle() return " + std::to_string(i) + " end"), i);
    }
  }
}

TEST_F(EngineTest, ASyntaxErrorIsReportedEveryTime) {
  for (int i = 0; i < 2; ++i) {
    auto result = run("function handle( oops");
    EXPECT_EQ(result.outcome, Outcome::invalid);
    EXPECT_NE(result.message.find("syntax error"), std::string::npos);
  }
}

TEST(EngineOutputAsText, GivesTheOutputItWouldHaveParsedAsText) {
  runtime::Engine as_text({.output_as_text = true});
  const std::string source =
      "function handle(input) input.total = input.amount * 1.2 input.seen = true return input end";
  nlohmann::json input = {{"amount", 10}, {"name", "caf\u00e9"}, {"items", {1, 2}}};
  auto text_result = run_script_in(as_text, source, input);
  auto value_result = run_script(source, input);
  ASSERT_EQ(text_result.outcome, Outcome::ok) << text_result.message;
  EXPECT_TRUE(text_result.output.is_null());
  EXPECT_EQ(nlohmann::json::parse(text_result.output_json), value_result.output);
  EXPECT_TRUE(value_result.output_json.empty());
  // A limit hit leaves no output of either kind.
  auto limited = run_script_in(as_text, "function handle() return string.rep('x', 100) end",
                               nlohmann::json::object(), {{"output_bytes", 10}});
  EXPECT_EQ(limited.outcome, Outcome::limit_exceeded);
  EXPECT_TRUE(limited.output_json.empty());
}

double burn_cpu_ms(double ms) {
  auto cpu_ms = [] {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) * 1000 + static_cast<double>(now.tv_nsec) / 1e6;
  };
  double start = cpu_ms();
  volatile double sink = 0;
  while (cpu_ms() - start < ms) sink = sink + 1;
  return cpu_ms() - start;
}

TEST(EngineClock, CountsCpuBetweenRunsOnlyWhenAskedTo) {
  const std::string empty = "function handle() return true end";
  runtime::Engine alone;
  runtime::Engine worker({.count_cpu_between_runs = true});
  for (auto* engine : {&alone, &worker})
    ASSERT_EQ(run_script_in(*engine, empty).outcome, Outcome::ok);
  burn_cpu_ms(60);
  auto alone_result = run_script_in(alone, empty);
  burn_cpu_ms(60);
  auto worker_result = run_script_in(worker, empty);
  EXPECT_LT(alone_result.stats.cpu_ms, 30) << "CPU spent outside the run was counted";
  EXPECT_GE(worker_result.stats.cpu_ms, 55) << "CPU spent since the last run was not counted";
  worker.restart_cpu_count();
  burn_cpu_ms(60);
  EXPECT_LT(run_script_in(worker, empty).stats.cpu_ms, 30) << "counted from before the restart";
}

TEST(EngineClock, OsClockCountsFromTheInvocationsStart) {
  runtime::Engine engine;
  // Burn CPU outside any invocation: os.clock must not count it.
  volatile double sink = 0;
  for (int i = 0; i < 20'000'000; ++i) sink = sink + i * 0.5;
  auto result = run_script_in(engine, "function handle() return os.clock() end");
  ASSERT_EQ(result.outcome, Outcome::ok) << result.message;
  EXPECT_GE(result.output.get<double>(), 0.0);
  EXPECT_LT(result.output.get<double>(), 0.01);
}

}  // namespace
}  // namespace corral::testing
