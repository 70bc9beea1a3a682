// The JSON ↔ Lua mapping of docs/scripting.md.
#include <gtest/gtest.h>

#include "run_helper.h"

namespace corral::testing {
namespace {

nlohmann::json echo(const nlohmann::json& input) {
  auto result = run_script("function handle(input) return input end", input);
  if (result.outcome != Outcome::ok) return {{"unexpected", to_json(result)}};
  return result.output;
}

InvocationResult run_returning(const std::string& expression) {
  return run_script("function handle(input) return " + expression + " end");
}

TEST(JsonMapping, ValuesRoundTrip) {
  auto input = nlohmann::json::parse(
      R"({"s":"héllo \u0000 \"q\"","i":-42,"f":0.1,"big":1e300,"t":true,"n":null,
          "a":[1,"two",null,[]],"o":{},"nested":{"x":[{"y":{}}]}})");
  EXPECT_EQ(echo(input), input);
}

TEST(JsonMapping, IntegersStayIntegersTo2Pow63) {
  auto max = nlohmann::json::parse("9223372036854775807");
  auto min = nlohmann::json::parse("-9223372036854775808");
  EXPECT_EQ(echo(max).dump(), "9223372036854775807");
  EXPECT_EQ(echo(min).dump(), "-9223372036854775808");
  EXPECT_EQ(run_script("function handle(i) return math.type(i) end", max).output, "integer");
  // Beyond 2^63-1 there is no Lua integer: the value arrives as a float.
  EXPECT_EQ(run_script("function handle(i) return math.type(i) end",
                       nlohmann::json::parse("18446744073709551615"))
                .output,
            "float");
}

TEST(JsonMapping, FloatsStayFloatsAndRoundTrip) {
  EXPECT_EQ(echo(nlohmann::json::parse("3.0")).dump(), "3.0");
  EXPECT_EQ(
      run_script("function handle(i) return math.type(i) end", nlohmann::json::parse("3.0")).output,
      "float");
  for (double value : {0.1, 1.0 / 3.0, 1e-310, 1.7976931348623157e308, -2.5e-5}) {
    EXPECT_EQ(echo(value).get<double>(), value);
  }
  EXPECT_EQ(run_returning("1/2").output.dump(), "0.5");
  auto power = run_returning("2^53").output;
  EXPECT_TRUE(power.is_number_float());
  EXPECT_EQ(power.get<double>(), 9007199254740992.0);
}

TEST(JsonMapping, NanAndInfinityAreErrors) {
  auto nan = run_returning("{x = 0/0}");
  EXPECT_EQ(nan.outcome, Outcome::script_error);
  EXPECT_NE(nan.message.find("output.x: NaN"), std::string::npos) << nan.message;
  auto inf = run_returning("{list = {1, -math.huge}}");
  EXPECT_NE(inf.message.find("output.list[2]: infinity"), std::string::npos) << inf.message;
}

TEST(JsonMapping, EmptyTablesAndArrays) {
  EXPECT_EQ(run_returning("{}").output.dump(), "{}");
  EXPECT_EQ(run_returning("json.array()").output.dump(), "[]");
  EXPECT_EQ(run_returning("json.array({1, 2})").output.dump(), "[1,2]");
  EXPECT_EQ(echo(nlohmann::json::array()).dump(), "[]");  // decoded arrays stay arrays
  EXPECT_EQ(run_script("function handle(i) table.remove(i.a) return i end",
                       nlohmann::json::parse(R"({"a":[1]})"))
                .output.dump(),
            R"({"a":[]})");
  auto marked_object = run_returning("json.array({a = 1})");
  EXPECT_EQ(marked_object.outcome, Outcome::script_error);
}

TEST(JsonMapping, SparseAndMixedTablesAreErrorsNamingThePath) {
  auto sparse = run_returning("{items = {{1, nil, 3}}}");
  EXPECT_EQ(sparse.outcome, Outcome::script_error);
  EXPECT_NE(sparse.message.find("output.items[1]: sparse array"), std::string::npos)
      << sparse.message;
  auto mixed = run_returning("{1, 2, x = 3}");
  EXPECT_NE(mixed.message.find("output: table mixes key types"), std::string::npos)
      << mixed.message;
  auto float_key = run_returning("{[1.5] = true}");
  EXPECT_EQ(float_key.outcome, Outcome::script_error);
  EXPECT_EQ(run_returning("{1, json.null, 3}").output.dump(), "[1,null,3]");
}

TEST(JsonMapping, UnencodableValuesNameTheirPath) {
  auto function = run_returning("{items = {1, 2, print}}");
  EXPECT_EQ(function.outcome, Outcome::script_error);
  EXPECT_NE(function.message.find("output.items[3]: function values cannot be encoded"),
            std::string::npos)
      << function.message;
  auto cycle = run_returning("(function() local t = {} t.me = t return t end)()");
  EXPECT_NE(cycle.message.find("output.me: table contains itself"), std::string::npos);
  auto shared = run_returning("(function() local t = {1} return {a = t, b = t} end)()");
  EXPECT_EQ(shared.outcome, Outcome::ok);  // the same table twice is not a cycle
}

TEST(JsonMapping, InvalidUtf8IsRejected) {
  auto value = run_returning("{name = 'ok\\xff'}");
  EXPECT_EQ(value.outcome, Outcome::script_error);
  EXPECT_NE(value.message.find("output.name: string is not valid UTF-8 (byte 3)"),
            std::string::npos)
      << value.message;
  auto key = run_returning("{['\\xc0\\xaf'] = 1}");  // an overlong '/'
  EXPECT_EQ(key.outcome, Outcome::script_error);
  auto surrogate = run_returning("'\\xed\\xa0\\x80'");
  EXPECT_EQ(surrogate.outcome, Outcome::script_error);
  EXPECT_EQ(run_returning("'\\u{10FFFF}'").outcome, Outcome::ok);
}

TEST(JsonMapping, DepthIsLimited) {
  auto deep =
      run_returning("(function() local t = {} for i = 1, 200 do t = {t} end return t end)()");
  EXPECT_EQ(deep.outcome, Outcome::script_error);
  EXPECT_NE(deep.message.find("nests deeper than 100"), std::string::npos) << deep.message;
  nlohmann::json input = 1;
  for (int i = 0; i < 99; ++i) input = nlohmann::json::array({input});
  EXPECT_EQ(echo(input), input);
}

TEST(JsonMapping, NullIsASentinel) {
  EXPECT_EQ(run_script("function handle(i) return i.x == json.null end",
                       nlohmann::json::parse(R"({"x":null})"))
                .output,
            true);
  EXPECT_EQ(run_returning("nil").output, nullptr);
  EXPECT_EQ(run_returning("{a = nil}").output.dump(), "{}");
}

TEST(JsonMapping, ControlCharactersAreEscaped) {
  EXPECT_EQ(run_returning("'a\\n\\t\\1\"\\\\'").output.get<std::string>(), "a\n\t\x01\"\\");
}

}  // namespace
}  // namespace corral::testing
