// The curated environment: every allowlist entry present, everything else absent, and the
// wrapped functions behave as docs/scripting.md says.
#include <gtest/gtest.h>

#include "run_helper.h"

namespace corral::testing {
namespace {

struct Entry {
  const char* expression;
  const char* type;  // what type(expression) must be
};

class AllowlistTest : public ::testing::TestWithParam<Entry> {};

TEST_P(AllowlistTest, HasExpectedType) {
  EXPECT_EQ(evaluate(std::string("type(") + GetParam().expression + ")"), GetParam().type)
      << GetParam().expression;
}

INSTANTIATE_TEST_SUITE_P(
    Present, AllowlistTest,
    ::testing::Values(
        Entry{"assert", "function"}, Entry{"error", "function"}, Entry{"ipairs", "function"},
        Entry{"next", "function"}, Entry{"pairs", "function"}, Entry{"pcall", "function"},
        Entry{"rawequal", "function"}, Entry{"rawget", "function"}, Entry{"rawlen", "function"},
        Entry{"rawset", "function"}, Entry{"select", "function"}, Entry{"tonumber", "function"},
        Entry{"tostring", "function"}, Entry{"type", "function"}, Entry{"xpcall", "function"},
        Entry{"load", "function"}, Entry{"print", "function"}, Entry{"setmetatable", "function"},
        Entry{"getmetatable", "function"}, Entry{"collectgarbage", "function"},
        Entry{"_G", "table"}, Entry{"_VERSION", "string"}, Entry{"json", "table"},
        Entry{"json.array", "function"}, Entry{"json.null", "userdata"},
        Entry{"string.byte", "function"}, Entry{"string.char", "function"},
        Entry{"string.find", "function"}, Entry{"string.format", "function"},
        Entry{"string.gmatch", "function"}, Entry{"string.gsub", "function"},
        Entry{"string.len", "function"}, Entry{"string.lower", "function"},
        Entry{"string.match", "function"}, Entry{"string.rep", "function"},
        Entry{"string.reverse", "function"}, Entry{"string.sub", "function"},
        Entry{"string.upper", "function"}, Entry{"string.pack", "function"},
        Entry{"string.packsize", "function"}, Entry{"string.unpack", "function"},
        Entry{"table.concat", "function"}, Entry{"table.insert", "function"},
        Entry{"table.move", "function"}, Entry{"table.pack", "function"},
        Entry{"table.remove", "function"}, Entry{"table.sort", "function"},
        Entry{"table.unpack", "function"}, Entry{"math.abs", "function"},
        Entry{"math.floor", "function"}, Entry{"math.random", "function"},
        Entry{"math.randomseed", "function"}, Entry{"math.huge", "number"},
        Entry{"math.pi", "number"}, Entry{"math.maxinteger", "number"},
        Entry{"math.tointeger", "function"}, Entry{"math.type", "function"},
        Entry{"utf8.char", "function"}, Entry{"utf8.codepoint", "function"},
        Entry{"utf8.len", "function"}, Entry{"utf8.offset", "function"},
        Entry{"utf8.codes", "function"}, Entry{"utf8.charpattern", "string"},
        Entry{"coroutine.create", "function"}, Entry{"coroutine.resume", "function"},
        Entry{"coroutine.yield", "function"}, Entry{"coroutine.status", "function"},
        Entry{"coroutine.wrap", "function"}, Entry{"coroutine.isyieldable", "function"},
        Entry{"coroutine.running", "function"}, Entry{"coroutine.close", "function"},
        Entry{"os.time", "function"}, Entry{"os.clock", "function"}, Entry{"os.date", "function"}));

INSTANTIATE_TEST_SUITE_P(
    Absent, AllowlistTest,
    ::testing::Values(Entry{"dofile", "nil"}, Entry{"loadfile", "nil"}, Entry{"warn", "nil"},
                      Entry{"io", "nil"}, Entry{"package", "nil"}, Entry{"require", "nil"},
                      Entry{"debug", "nil"}, Entry{"loadstring", "nil"}, Entry{"module", "nil"},
                      Entry{"setfenv", "nil"}, Entry{"string.dump", "nil"},
                      Entry{"os.execute", "nil"}, Entry{"os.getenv", "nil"},
                      Entry{"os.exit", "nil"}, Entry{"os.remove", "nil"}, Entry{"os.rename", "nil"},
                      Entry{"os.tmpname", "nil"}, Entry{"os.setlocale", "nil"},
                      Entry{"os.difftime", "nil"}, Entry{"('').dump", "nil"}, Entry{"_G.io", "nil"},
                      Entry{"rawget(_G, 'debug')", "nil"}));

TEST(Environment, StringMetatableIsProtected) {
  EXPECT_EQ(evaluate("getmetatable('')"), false);
  auto result = run_script("function handle() local mt = getmetatable('') return mt.__index end");
  EXPECT_EQ(result.outcome, Outcome::script_error);  // false cannot be indexed
}

TEST(Environment, LoadRunsTextInTheSandbox) {
  EXPECT_EQ(evaluate("load('return 1 + 2')()"), 3);
  EXPECT_EQ(evaluate("load('return io')()"), nullptr);
  EXPECT_EQ(evaluate("select(2, load('\\27Lua'))"), "attempt to load a binary chunk (mode is 't')");
  // The chunk is named as in Lua: by its name argument, or by its text.
  EXPECT_EQ(evaluate("select(2, load('x = ', '=mychunk'))"),
            "mychunk:1: unexpected symbol near <eof>");
  EXPECT_EQ(evaluate("select(2, load('x = '))"),
            "[string \"x = \"]:1: unexpected symbol near <eof>");
  EXPECT_EQ(evaluate("select(2, pcall(load('error(\"e\")', '@lib.lua')))"), "lib.lua:1: e");
  EXPECT_EQ(run_script("function handle() return load('return 1', 'x', 'b') end").message,
            "script:1: load: binary chunks are not allowed");
  EXPECT_EQ(run_script("function handle() return load('return 1', 'x', 't', {}) end").outcome,
            Outcome::script_error);
  EXPECT_EQ(run_script("function handle() return load(function() return nil end) end").outcome,
            Outcome::script_error);
}

TEST(Environment, CollectGarbageCannotChangeTheCollector) {
  EXPECT_EQ(evaluate("math.type(collectgarbage('count'))"), "float");
  EXPECT_EQ(evaluate("collectgarbage()"), 0);
  for (const char* option : {"stop", "restart", "incremental", "generational", "setpause"}) {
    auto result = run_script(std::string("function handle() collectgarbage('") + option + "') end");
    EXPECT_EQ(result.outcome, Outcome::script_error) << option;
    EXPECT_NE(result.message.find("not allowed"), std::string::npos) << result.message;
  }
}

TEST(Environment, PrintAndCtxLogAreCaptured) {
  auto result = run_script(
      "function handle(input, ctx) print('a', 1, true) ctx.log.warn('b', 2) "
      "ctx.log.debug() ctx.log.error(nil) ctx.log.info({}) return 0 end");
  ASSERT_EQ(result.outcome, Outcome::ok);
  std::vector<LogEntry> expected{{"info", "a\t1\ttrue"},
                                 {"warn", "b 2"},
                                 {"debug", ""},
                                 {"error", "nil"},
                                 {"info", "table: #1"}};
  EXPECT_EQ(result.logs, expected);
}

TEST(Environment, TostringAndFormatRevealNoAddress) {
  auto output = evaluate(
      "{tostring({}), tostring(print), tostring(coroutine.create(print)), "
      "string.format('%s %5s', {}, 1), tostring(json.null)}");
  EXPECT_EQ(output, nlohmann::json({"table: #1", "function: #2", "thread: #3", "table: #4     1",
                                    "json.null"}));
  auto same = evaluate("(function() local t = {} return tostring(t) == tostring(t) end)()");
  EXPECT_EQ(same, true);
  auto result = run_script("function handle() return string.format('%p', {}) end");
  EXPECT_EQ(result.outcome, Outcome::script_error);
  EXPECT_EQ(evaluate("tostring(setmetatable({}, {__tostring = function() return 'mine' end}))"),
            "mine");
  // __name names the kind, as in Lua ("hi: 0x55..."), with the number in place of the address.
  EXPECT_EQ(evaluate("{tostring(setmetatable({}, {__name = 'hi'})), string.format('%s', "
                     "setmetatable({}, {__name = 'point'}))}"),
            nlohmann::json({"hi: #1", "point: #2"}));
}

TEST(Environment, RandomIsSeededPerInvocationAndSeedsAreNotRevealed) {
  EXPECT_NE(evaluate("math.random(1, 1 << 62)"), evaluate("math.random(1, 1 << 62)"));
  EXPECT_EQ(evaluate("select('#', math.randomseed())"), 0);
  EXPECT_EQ(evaluate("(function() math.randomseed(42) return math.random(1, 1000000) end)()"),
            evaluate("(function() math.randomseed(42) return math.random(1, 1000000) end)()"));
}

TEST(Environment, OsClockCountsThisInvocationOnly) {
  auto clock = evaluate("os.clock()");
  ASSERT_TRUE(clock.is_number());
  EXPECT_LT(clock.get<double>(), 0.5);
  EXPECT_TRUE(evaluate("os.time()").is_number_integer());
  EXPECT_EQ(evaluate("os.date('!%Y', 0)"), "1970");
}

TEST(Environment, DatesAreUtcWhateverTheHostZone) {
  // The host's zone must not matter: pretend it is far from UTC.
  setenv("TZ", "Asia/Kathmandu", 1);
  tzset();
  EXPECT_EQ(evaluate("os.date('%Y-%m-%d %H:%M', 0)"), "1970-01-01 00:00");
  EXPECT_EQ(evaluate("os.date('*t', 86400).hour"), 0);
  EXPECT_EQ(evaluate("os.date(nil, 0)"), "Thu Jan  1 00:00:00 1970");
  EXPECT_EQ(evaluate("os.time{year = 2020, month = 1, day = 1, hour = 0}"), 1577836800);
  EXPECT_EQ(evaluate("os.time{year = 2020, month = 1, day = 1}"),
            1577836800 + 12 * 3600);  // noon by default
  EXPECT_EQ(evaluate("os.time(os.date('*t', 1234567890))"), 1234567890);
  auto missing = run_script("function handle() return os.time{year = 2020} end");
  EXPECT_EQ(missing.outcome, Outcome::script_error);
  EXPECT_NE(missing.message.find("field 'month' missing"), std::string::npos) << missing.message;
  auto not_integer =
      run_script("function handle() return os.time{year = 2020, month = 1.5, day = 1} end");
  EXPECT_NE(not_integer.message.find("field 'month' is not an integer"), std::string::npos)
      << not_integer.message;
  unsetenv("TZ");
  tzset();
}

TEST(Environment, GcMetatablesAreRefused) {
  auto gc = run_script("function handle() setmetatable({}, {__gc = function() end}) end");
  EXPECT_EQ(gc.outcome, Outcome::script_error);
  EXPECT_NE(gc.message.find("__gc is not allowed"), std::string::npos);
  auto gc_false = run_script("function handle() setmetatable({}, {__gc = false}) end");
  EXPECT_EQ(gc_false.outcome, Outcome::script_error);
  EXPECT_EQ(evaluate("getmetatable(setmetatable({}, {__index = {a = 1}})).__index.a"), 1);
}

// Weak tables are allowed (the allocator keeps Lua's emergency collection out of reach:
// limits_test.cc), however the mode gets into the metatable, and they behave as in Lua.
TEST(Environment, WeakTablesWorkHoweverTheirModeIsSet) {
  auto result = run_script(R"(
    local function collected(weak)
      weak[{}] = {}
      collectgarbage()
      return next(weak) == nil
    end
    function handle()
      local given = setmetatable({}, {__mode = "k"})
      local mt = {}
      local assigned = setmetatable({}, mt)
      mt.__mode = "v"
      local raw_mt = {}
      local raw = setmetatable({}, raw_mt)
      rawset(raw_mt, "__mode", "kv")
      local result = {collected(given), collected(assigned), collected(raw)}
      local kept = {}
      given[kept] = 1
      collectgarbage()
      result[4] = given[kept] == 1
      return result
    end)");
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  EXPECT_EQ(result.output, nlohmann::json({true, true, true, true}));
}

TEST(Environment, NoInvocationSeesAnEarlierOne) {
  auto first = run_script(
      "leak = 'global' string.leak = 'library' getmetatable = nil\n"
      "function handle() upvalue_holder = function() return 'upvalue' end "
      "math.randomseed(1) return 1 end");
  ASSERT_EQ(first.outcome, Outcome::ok);
  EXPECT_EQ(
      evaluate("{leak == nil, string.leak == nil, type(getmetatable), upvalue_holder == nil}"),
      nlohmann::json({true, true, "function", true}));
}

}  // namespace
}  // namespace corral::testing
