// `corral run` as a user runs it: files in, JSON out, one exit status per outcome.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fake_worker.h"

namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status;
  std::string out;
  std::string err;
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("corral-cli-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  static std::string read(const fs::path& path) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

  CliRun corral(const std::string& arguments) {
    std::string command = std::string(CORRAL_CLI_PATH) + " " + arguments + " >" +
                          (dir_ / "out").string() + " 2>" + (dir_ / "err").string() + " </dev/null";
    int status = std::system(command.c_str());
    return {WEXITSTATUS(status), read(dir_ / "out"), read(dir_ / "err")};
  }

  fs::path dir_;
};

TEST_F(CliTest, PrintsTheOutputJson) {
  auto script = write("sum.lua", "function handle(input) return {sum = input.a + input.b} end");
  auto run = corral("run " + script + " --input '{\"a\":1,\"b\":2}'");
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(run.out), nlohmann::json({{"sum", 3}}));
}

TEST_F(CliTest, ReadsInputFromAFile) {
  auto script = write("echo.lua", "function handle(input) return input.items end");
  auto input = write("input.json", "{\"items\": [1, 2, 3]}");
  auto run = corral("run " + script + " --input @" + input);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "[1,2,3]\n");
}

TEST_F(CliTest, StatsGoToStderr) {
  auto script = write("s.lua", "function handle() print('hi') return 1 end");
  auto run = corral("run " + script + " --stats");
  EXPECT_EQ(run.status, 0);
  EXPECT_EQ(run.out, "1\n");
  EXPECT_NE(run.err.find("[info] hi"), std::string::npos) << run.err;
  auto stats_at = run.err.find("stats: ");
  ASSERT_NE(stats_at, std::string::npos) << run.err;
  auto stats = nlohmann::json::parse(run.err.substr(stats_at + 7));
  for (const char* key : {"fuel_used", "memory_peak_bytes", "wall_ms", "cpu_ms"}) {
    EXPECT_TRUE(stats.contains(key)) << key;
  }
}

TEST_F(CliTest, ExitStatusDiffersPerOutcome) {
  struct Case {
    const char* source;
    const char* flags;
    int status;
    const char* says;
  };
  for (const Case& c :
       {Case{"function handle() error('bad') end", "", 1, "script_error"},
        Case{"function handle() while true do end end", "--fuel 10000", 3, "fuel limit exceeded"},
        Case{"function handle(", "", 4, "syntax error"}, Case{"x = 1", "", 4, "handle"}}) {
    auto script = write("case.lua", c.source);
    auto run = corral("run " + script + " " + c.flags);
    EXPECT_EQ(run.status, c.status) << c.source << "\n" << run.err;
    EXPECT_NE(run.err.find(c.says), std::string::npos) << run.err;
    EXPECT_EQ(run.out, "");
  }
}

TEST_F(CliTest, AWorkerThatCannotStartIsRejectedNotCrashed) {
  auto script = write("one.lua", "function handle() return 1 end");
  auto missing = corral("run " + script + " --worker /nonexistent/corral-worker");
  EXPECT_EQ(missing.status, 7) << missing.err;
  EXPECT_NE(missing.err.find("cannot start the worker"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("/nonexistent/corral-worker"), std::string::npos) << missing.err;

  // As corral-worker does when it cannot jail itself: it exits before it says it is ready.
  corral::FakeWorker unjailable("cli-unjailable", "exit 3");
  auto unready = corral("run " + script + " --worker " + unjailable.path());
  EXPECT_EQ(unready.status, 7) << unready.err;
  EXPECT_NE(unready.err.find("exited with status 3 before it was ready"), std::string::npos)
      << unready.err;
  EXPECT_NE(unready.err.find("the script did not run"), std::string::npos) << unready.err;
}

TEST_F(CliTest, BadInputIsInvalid) {
  auto script = write("s.lua", "function handle() return 1 end");
  auto run = corral("run " + script + " --input '{nope'");
  EXPECT_EQ(run.status, 4);
  EXPECT_NE(run.err.find("--input is not valid JSON"), std::string::npos) << run.err;
  auto missing = corral("run " + (dir_ / "missing.lua").string());
  EXPECT_EQ(missing.status, 4);
  EXPECT_NE(missing.err.find("cannot read the script"), std::string::npos) << missing.err;
  auto too_much = corral("run " + script + " --fuel 99999999999999");
  EXPECT_EQ(too_much.status, 4);
  EXPECT_NE(too_much.err.find("maximum"), std::string::npos) << too_much.err;
}

TEST_F(CliTest, UsageErrorsExitWith2) {
  EXPECT_EQ(corral("").status, 2);
  EXPECT_EQ(corral("run").status, 2);
  EXPECT_EQ(corral("run x.lua --no-such-flag").status, 2);
  auto help = corral("run --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--input"), std::string::npos);
}

TEST_F(CliTest, JsonFlagPrintsTheWholeResult) {
  auto script = write("s.lua", "function handle() error('x') end");
  auto run = corral("run " + script + " --json");
  EXPECT_EQ(run.status, 1);
  auto result = nlohmann::json::parse(run.out);
  EXPECT_EQ(result["outcome"], "script_error");
  EXPECT_EQ(result["error"]["line"], 1);
}

}  // namespace
