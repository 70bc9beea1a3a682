// How scripts fail: every error shape, and the hazards of a Lua host (recursion, the C stack,
// errors inside metamethods, error objects that are not strings) ending as clean outcomes.
#include <gtest/gtest.h>

#include <map>

#include "run_helper.h"

namespace corral::testing {
namespace {

TEST(ScriptError, NamesMessageLineAndTraceback) {
  auto result = run_script(
      "local function helper(x)\n"
      "  return x.field + 1\n"
      "end\n"
      "function handle(input)\n"
      "  local result = helper(input)\n"
      "  return result\n"
      "end\n",
      nullptr);
  ASSERT_EQ(result.outcome, Outcome::script_error);
  EXPECT_EQ(result.line, 2);
  EXPECT_NE(result.message.find("attempt to index a userdata value"), std::string::npos)
      << result.message;
  EXPECT_NE(result.traceback.find("script:2: in upvalue 'helper'"), std::string::npos)
      << result.traceback;
  EXPECT_NE(result.traceback.find("script:5: in function 'handle'"), std::string::npos)
      << result.traceback;
}

// The sandbox wraps some library functions; an error Lua raises in one still names the function
// and the script's line, as stock Lua's message does.
TEST(ScriptError, WrappedLibraryFunctionsNameThemselvesAndTheCallersLine) {
  const std::pair<const char*, const char*> calls[] = {
      {"setmetatable(1, {})", "bad argument #1 to 'setmetatable' (table expected, got number)"},
      {"string.format('%d', 'x')", "bad argument #2 to 'format' (number expected, got string)"},
      {"table.concat({{}})", "invalid value (table) at index 1 in table for 'concat'"},
      {"table.move({}, 1, 2)", "bad argument #4 to 'move' (number expected, got no value)"},
      {"table.unpack({}, 'a')", "bad argument #2 to 'unpack' (number expected, got string)"},
      {"string.rep('x')", "bad argument #2 to 'rep' (number expected, got no value)"},
      {"math.randomseed('x')", "bad argument #1 to 'randomseed' (number expected, got string)"},
      {"coroutine.create(1)", "bad argument #1 to 'create' (function expected, got number)"},
      {"collectgarbage('x')", "bad argument #1 to 'collectgarbage' (invalid option 'x')"},
      {"os.time('x')", "bad argument #1 to 'time' (table expected, got string)"},
      {"os.date('%Ez')", "bad argument #1 to 'date' (invalid conversion specifier '%Ez')"},
  };
  for (auto [call, message] : calls) {
    auto result =
        run_script(std::string("function handle()\n  local unused = 1\n  ") + call + "\nend");
    EXPECT_EQ(result.outcome, Outcome::script_error) << call;
    EXPECT_EQ(result.message, std::string("script:3: ") + message) << call;
    EXPECT_EQ(result.line, 3) << call;
  }
  // Called from C (pcall), the function is named by where the script finds it, as in Lua.
  EXPECT_EQ(evaluate("select(2, pcall(os.time, 'x'))"),
            "bad argument #1 to 'os.time' (table expected, got string)");
  EXPECT_EQ(evaluate("select(2, pcall(setmetatable, 1, {}))"),
            "bad argument #1 to 'setmetatable' (table expected, got number)");
}

TEST(ScriptError, TopLevelErrorsAreScriptErrors) {
  auto result = run_script("error('at load time')\nfunction handle() end");
  EXPECT_EQ(result.outcome, Outcome::script_error);
  EXPECT_EQ(result.message, "script:1: at load time");
  EXPECT_EQ(result.line, 1);
}

TEST(ScriptError, ErrorObjectsThatAreNotStrings) {
  EXPECT_EQ(run_script("function handle() error({code = 7, why = 'no'}) end").message,
            "error object: {\"code\":7,\"why\":\"no\"}");
  EXPECT_EQ(run_script("function handle() error(42) end").message, "42");
  EXPECT_EQ(run_script("function handle() error(nil) end").message, "error object is a nil value");
  EXPECT_EQ(run_script("function handle() error(print) end").message,
            "error object is a function value");
  auto cyclic = run_script("function handle() local t = {} t.t = t error(t) end");
  EXPECT_EQ(cyclic.outcome, Outcome::script_error);
  EXPECT_EQ(cyclic.message, "error object is a table value");
  // __tostring is not consulted: it would run script code while the host handles the error.
  auto with_tostring = run_script(
      "function handle() error(setmetatable({}, {__tostring = function() while true do end end})) "
      "end");
  EXPECT_EQ(with_tostring.outcome, Outcome::script_error);
}

TEST(ScriptError, TableErrorObjectsEncodeWithSortedKeys) {
  // The same table must give the same message whatever Lua's hash seed was for this run.
  auto result = run_script(
      "function handle() local t = {nested = {zeta = 1, alpha = 2, mid = {3}}} "
      "for i = 1, 40 do t['k' .. (i * 7919 % 40)] = i end error(t) end");
  std::string expected = "error object: {";
  std::map<std::string, int> members;
  for (int i = 1; i <= 40; ++i) members["k" + std::to_string(i * 7919 % 40)] = i;
  for (const auto& [key, value] : members)
    expected += "\"" + key + "\":" + std::to_string(value) + ",";
  expected += "\"nested\":{\"alpha\":2,\"mid\":[3],\"zeta\":1}}";
  EXPECT_EQ(result.message, expected);
}

TEST(ScriptError, ErrorsInsideMetamethodsAreClean) {
  auto in_tostring = run_script(
      "function handle() print(setmetatable({}, {__tostring = function() error('boom') end})) end");
  EXPECT_EQ(in_tostring.outcome, Outcome::script_error);
  EXPECT_NE(in_tostring.message.find("boom"), std::string::npos);
  auto bad_tostring = run_script(
      "function handle() return tostring(setmetatable({}, {__tostring = function() return {} "
      "end})) end");
  EXPECT_EQ(bad_tostring.outcome, Outcome::script_error);
  auto in_close = run_script(
      "function handle() local x <close> = setmetatable({}, {__close = function() error('closing') "
      "end}) "
      "return 1 end");
  EXPECT_EQ(in_close.outcome, Outcome::script_error);
  EXPECT_NE(in_close.message.find("closing"), std::string::npos);
  auto in_index = run_script(
      "function handle() return setmetatable({}, {__index = function() error('idx') end}).x end");
  EXPECT_EQ(in_index.outcome, Outcome::script_error);
}

TEST(ScriptError, DeepRecursionEndsCleanly) {
  auto lua_stack =
      run_script("local function f(n) return 1 + f(n + 1) end function handle() return f(1) end");
  EXPECT_TRUE(lua_stack.outcome == Outcome::script_error ||
              lua_stack.outcome == Outcome::limit_exceeded)
      << to_json(lua_stack).dump();
  auto c_stack = run_script(
      "function handle() local t = setmetatable({}, {__index = function(t, k) return t[k] end}) "
      "return t.x end");
  EXPECT_EQ(c_stack.outcome, Outcome::script_error);
  EXPECT_NE(c_stack.message.find("stack overflow"), std::string::npos) << c_stack.message;
  auto through_pcall =
      run_script("local function f() return pcall(f) end function handle() return f() end");
  EXPECT_NE(through_pcall.outcome, Outcome::crashed);
}

TEST(Invalid, SyntaxErrorsHaveLineAndColumn) {
  auto result = run_script("function handle()\n  local x = = 1\nend");
  ASSERT_EQ(result.outcome, Outcome::invalid);
  EXPECT_EQ(result.line, 2);
  EXPECT_EQ(result.column, 13);
  EXPECT_NE(result.message.find("unexpected symbol near '='"), std::string::npos) << result.message;
}

TEST(Invalid, MissingHandle) {
  for (const char* source : {"x = 1", "local function handle() end", "handle = 42"}) {
    auto result = run_script(source);
    EXPECT_EQ(result.outcome, Outcome::invalid) << source;
    EXPECT_NE(result.message.find("handle"), std::string::npos);
  }
}

TEST(Invalid, BytecodeIsRefused) {
  auto result = run_script(std::string("\x1bLua\x54\x00", 6) + "junk");
  EXPECT_EQ(result.outcome, Outcome::invalid);
  EXPECT_NE(result.message.find("binary chunk"), std::string::npos) << result.message;
}

TEST(Invalid, OversizedSource) {
  auto result = run_script("function handle() end --" + std::string(2 << 20, 'x'));
  EXPECT_EQ(result.outcome, Outcome::invalid);
}

TEST(Invalid, InputTooDeep) {
  nlohmann::json input = 1;
  for (int i = 0; i < 150; ++i) input = nlohmann::json::array({input});
  auto result = run_script("function handle(input) return 1 end", input);
  EXPECT_EQ(result.outcome, Outcome::invalid);
  EXPECT_NE(result.message.find("deeper"), std::string::npos) << result.message;
}

}  // namespace
}  // namespace corral::testing
