// Lua as Lua users know it: every library function the sandbox offers gives the results and the
// error messages of stock Lua 5.4 (/usr/bin/lua5.4) on the same inputs. Both run the same cases
// (conformance_cases.lua, as the chunk "script", so positions agree) and their reports are
// compared line by line. What differs on purpose is listed below, each case with the sandbox's
// exact answer, and in docs/scripting.md ("Differences from stock Lua").
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "run_helper.h"

namespace corral::testing {
namespace {

constexpr const char* kStockLua = "/usr/bin/lua5.4";
const std::string kCasesPath =
    std::string(CORRAL_SOURCE_DIR) + "/tests/runtime/conformance_cases.lua";

// Deliberate differences: the case, and what the sandbox answers instead. "{line}" stands for
// the line of the case in conformance_cases.lua.
const std::map<std::string, std::string> kDeliberate = {
    {"setmetatable __gc",
     "false \"script:{line}: setmetatable: __gc is not allowed (finalizers run outside the "
     "budget)\""},
    {"load reader",
     "false \"script:{line}: load: only source strings can be loaded (readers are not "
     "supported)\""},
    {"load mode b", "false \"script:{line}: load: binary chunks are not allowed\""},
    {"load binary", "true nil \"attempt to load a binary chunk (mode is 't')\""},
    {"load env",
     "false \"script:{line}: load: the env argument is not supported; chunks share the script's "
     "globals\""},
    {"collectgarbage stop",
     "false \"script:{line}: collectgarbage('stop') is not allowed: scripts may not change the "
     "collector\""},
    {"collectgarbage generational",
     "false \"script:{line}: collectgarbage('generational') is not allowed: scripts may not change "
     "the collector\""},
    {"string.format %p",
     "false \"script:{line}: string.format: '%p' is not allowed (it would reveal an address)\""},
    {"string metatable", "true false"},
    {"math.randomseed none", "true"},
    {"os.time normalises", "true integer:2020 integer:14"},
    {"absent libraries", "true \"nil\" \"nil\" \"nil\" \"nil\" \"nil\""},
};

// Functions of stock Lua's libraries that the sandbox leaves out, and the one it adds.
const std::set<std::string> kRemoved = {
    "dofile",  "loadfile",  "require",   "warn",      "string.dump",  "os.difftime", "os.execute",
    "os.exit", "os.getenv", "os.remove", "os.rename", "os.setlocale", "os.tmpname"};
const std::set<std::string> kSandboxOnly = {"json.array"};

struct Report {
  std::map<std::string, std::string> cases;
  std::set<std::string> functions;
};

Report parse_report(const std::string& text) {
  Report report;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("case\t", 0) == 0) {
      size_t tab = line.find('\t', 5);
      report.cases[line.substr(5, tab - 5)] = line.substr(tab + 1);
    } else if (line.rfind("function\t", 0) == 0) {
      report.functions.insert(line.substr(9));
    }
  }
  return report;
}

// Addresses: stock Lua shows "table: 0x55d0c2a1b2c0", the sandbox "table: #3" (never an address).
std::string without_references(const std::string& shown) {
  static const std::regex reference(": (0x[0-9a-f]+|#[0-9]+)");
  return std::regex_replace(shown, reference, ": <reference>");
}

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The line of each case("NAME", ...) in the cases file.
std::map<std::string, int> case_lines(const std::string& source) {
  std::map<std::string, int> lines;
  std::istringstream input(source);
  std::string line;
  for (int number = 1; std::getline(input, line); ++number) {
    if (line.rfind("case(\"", 0) != 0) continue;
    lines[line.substr(6, line.find('"', 6) - 6)] = number;
  }
  return lines;
}

// Runs the cases in stock lua5.4, in UTC and the C locale (the only ones the sandbox knows).
std::string run_stock(const std::string& cases_path) {
  char directory[] = "/tmp/corral-conformance-XXXXXX";
  if (mkdtemp(directory) == nullptr) return "mkdtemp failed";
  std::string driver = std::string(directory) + "/driver.lua";
  std::ofstream(driver) << "local file = assert(io.open(arg[1], 'rb'))\n"
                           "local source = file:read('a')\n"
                           "file:close()\n"
                           "assert(load(source, '=script', 't'))()\n"
                           "io.write('\\n@@report@@\\n', report(), '\\n')\n";
  std::string command =
      std::string("TZ=UTC LC_ALL=C ") + kStockLua + " " + driver + " " + cases_path + " 2>&1";
  std::string output;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t got = 0;
    while ((got = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, got);
    pclose(pipe);
  }
  unlink(driver.c_str());
  rmdir(directory);
  size_t marker = output.find("\n@@report@@\n");
  return marker == std::string::npos ? "stock lua5.4 gave no report:\n" + output
                                     : output.substr(marker + 12);
}

TEST(Conformance, LibraryFunctionsAnswerAsStockLua) {
  if (access(kStockLua, X_OK) != 0) {
    GTEST_SKIP() << kStockLua << " is not installed (scripts/install-deps.sh installs lua5.4): "
                 << "there is no stock Lua to compare the sandbox with";
  }
  std::string source = read_file(kCasesPath);
  ASSERT_FALSE(source.empty()) << kCasesPath;
  auto lines = case_lines(source);

  std::string stock_text = run_stock(kCasesPath);
  Report stock = parse_report(stock_text);
  ASSERT_FALSE(stock.cases.empty()) << stock_text;

  auto result = run_script(source + "\nfunction handle() return report() end\n",
                           nlohmann::json::object(), {{"timeout_ms", 10000}});
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump(2);
  Report sandbox = parse_report(result.output.get<std::string>());

  EXPECT_EQ(sandbox.cases.size(), stock.cases.size());
  for (const auto& [name, stock_shown] : stock.cases) {
    SCOPED_TRACE("case \"" + name + "\" (conformance_cases.lua:" + std::to_string(lines[name]) +
                 ")");
    auto found = sandbox.cases.find(name);
    ASSERT_NE(found, sandbox.cases.end());
    const std::string& sandbox_shown = found->second;
    auto deliberate = kDeliberate.find(name);
    if (deliberate == kDeliberate.end()) {
      EXPECT_EQ(without_references(sandbox_shown), without_references(stock_shown));
      continue;
    }
    std::string expected = deliberate->second;
    size_t placeholder = expected.find("{line}");
    if (placeholder != std::string::npos)
      expected.replace(placeholder, 6, std::to_string(lines[name]));
    EXPECT_EQ(sandbox_shown, expected) << "a deliberate difference changed";
    EXPECT_NE(without_references(sandbox_shown), without_references(stock_shown))
        << "listed as a deliberate difference, but the sandbox now answers as stock Lua: remove "
           "it from kDeliberate and docs/scripting.md";
  }
  for (const auto& [name, expected] : kDeliberate) {
    EXPECT_TRUE(stock.cases.count(name))
        << "kDeliberate names a case that does not exist: " << name;
  }

  // The same functions, but for the ones removed or added on purpose.
  std::set<std::string> expected_functions;
  for (const auto& name : stock.functions) {
    if (!kRemoved.count(name)) expected_functions.insert(name);
  }
  expected_functions.insert(kSandboxOnly.begin(), kSandboxOnly.end());
  EXPECT_EQ(sandbox.functions, expected_functions);
  for (const auto& name : kRemoved) EXPECT_TRUE(stock.functions.count(name)) << name;

  // Every function the sandbox offers is exercised by a case named after it.
  for (const auto& function : sandbox.functions) {
    if (kSandboxOnly.count(function)) continue;
    bool covered = false;
    for (const auto& [name, shown] : sandbox.cases) {
      covered = covered || name == function || name.rfind(function + " ", 0) == 0;
    }
    EXPECT_TRUE(covered) << "no case in conformance_cases.lua exercises " << function;
  }
}

}  // namespace
}  // namespace corral::testing
