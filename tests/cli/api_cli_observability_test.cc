// The CLI against a real corrald for what an operator watches: `corral usage` (usage for billing,
// issue 27), `corral events tail --follow` printing an event emitted after it started, and
// `corral jobs wait` giving up at --timeout-s (issue 26).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cli/api_cli_fixture.h"

namespace {

using nlohmann::json;
using namespace corral::testing::cli;

// Emits one event per run and fails when asked to.
const char* kOrders =
    "function handle(input, ctx)\n"
    "  if input.fail then error('no such order') end\n"
    "  ctx.emit('orders.seen', {n = input.n})\n"
    "  return {seen = input.n}\n"
    "end\n";

class ObservabilityCli : public ApiCliWithCorrald {
 protected:
  // Restarts the fixture's corrald with these flags.
  void restart_corrald(std::vector<std::string> flags) {
    corrald_.reset();
    corrald_ = std::make_unique<CorraldProcess>(std::move(flags));
    server_ = "http://" + corrald_->host() + ":" + std::to_string(corrald_->port());
    admin_ = corrald_->admin_token();
  }

  // Tenant acme, its script orders live (it may emit orders.*), and tokens for each role used.
  void acme_with_orders() {
    ASSERT_EQ(as(admin_, {"tenant", "create", "acme"}).status, 0);
    auto policy = write("policy.yaml",
                        "tenants:\n"
                        "  acme:\n"
                        "    capabilities:\n"
                        "      emit: {topics: [\"orders.*\"]}\n");
    ASSERT_EQ(as(admin_, {"policy", "put", policy}).status, 0);
    publisher_ = make_token("acme", "publisher", "alice");
    reviewer_ = make_token("acme", "reviewer", "bob");
    invoker_ = make_token("acme", "invoker", "billing-service");
    auto file = write("orders.lua", kOrders);
    CliRun published = as(publisher_, {"publish", file, "--tenant", "acme", "--script", "orders",
                                       "--capability", "emit"});
    ASSERT_EQ(published.status, 0) << published;
    ASSERT_EQ(as(reviewer_, {"approve", "--tenant", "acme", "--script", "orders", "1"}).status, 0);
    ASSERT_EQ(as(reviewer_, {"alias", "set", "--tenant", "acme", "--script", "orders", "live", "1"})
                  .status,
              0);
  }

  CliRun invoke(const std::string& input) {
    return as(invoker_, {"invoke", "--tenant", "acme", "--script", "orders", "--input", input});
  }

  std::string publisher_, reviewer_, invoker_;
};

TEST_F(ObservabilityCli, UsagePrintsEachScriptsRunsTheTotalAndWhatTheTenantStores) {
  acme_with_orders();
  for (const char* input : {R"({"n": 1})", R"({"n": 2})", R"({"fail": true})"}) {
    CliRun run = invoke(input);
    ASSERT_TRUE(run.status == 0 || run.status == 1) << run;
  }
  // A publisher's playground run counts for its tenant, under no script.
  corral::testing::HttpClient http(corrald_->host(), corrald_->port(), publisher_);
  ASSERT_EQ(http.post_json({{"source", "function handle() return 1 end"}}).result_int(), 200);

  CliRun usage = as(admin_, {"usage", "acme"});
  ASSERT_EQ(usage.status, 0) << usage;
  std::vector<std::string> header = row(usage.out, "SCRIPT");
  EXPECT_EQ(header, (std::vector<std::string>{"SCRIPT", "INVOCATIONS", "FAILURES", "CPU", "MS",
                                              "FUEL", "JOBS"}))
      << usage;
  std::vector<std::string> orders = row(usage.out, "orders");
  ASSERT_EQ(orders.size(), 6u) << usage;
  EXPECT_EQ(orders[1], "3") << usage;
  EXPECT_EQ(orders[2], "1") << usage;
  EXPECT_EQ(orders[5], "0") << usage;
  std::vector<std::string> playground = row(usage.out, "(playground)");
  ASSERT_EQ(playground.size(), 6u) << usage;
  EXPECT_EQ(playground[1], "1") << usage;
  std::vector<std::string> total = row(usage.out, "total");
  ASSERT_EQ(total.size(), 6u) << usage;
  EXPECT_EQ(total[1], "4") << usage;
  EXPECT_EQ(total[2], "1") << usage;
  EXPECT_TRUE(has(usage.out, "stored now: 1 version (")) << usage;
  EXPECT_TRUE(std::regex_search(usage.err, std::regex("usage of acme from \\d{4}-\\d\\d-\\d\\d "
                                                      "\\d\\d:00:00Z to ")))
      << usage;

  // By hour: every script added up in the hour of now.
  CliRun by_hour = as(publisher_, {"usage", "acme", "--by", "hour"});
  ASSERT_EQ(by_hour.status, 0) << by_hour;
  EXPECT_FALSE(row(by_hour.out, "HOUR").empty()) << by_hour;
  // (two hours' rows if the hour turned between the runs)
  int64_t counted = 0;
  std::regex hour_row("(\\d{4}-\\d\\d-\\d\\d \\d\\d:00:00Z) +(\\d+) ");
  for (std::sregex_iterator match(by_hour.out.begin(), by_hour.out.end(), hour_row), end;
       match != end; ++match)
    counted += std::stoll((*match)[2]);
  EXPECT_EQ(counted, 4) << by_hour;
  EXPECT_EQ(row(by_hour.out, "total").at(1), "4") << by_hour;

  // --json: the server's answer unchanged.
  CliRun as_json = as(admin_, {"--json", "usage", "acme", "--by", "script"});
  ASSERT_EQ(as_json.status, 0) << as_json;
  json report = json::parse(as_json.out, nullptr, false);
  EXPECT_EQ(report["by"], "script") << as_json;
  EXPECT_EQ(report["total"]["invocations"], 4) << as_json;
  EXPECT_EQ(report["storage"]["versions"], 1) << as_json;

  // A window with nothing in it: the total alone, of zeros.
  CliRun empty = as(
      admin_, {"usage", "acme", "--from", "2020-01-01T00:00:00Z", "--to", "2020-01-02T00:00:00Z"});
  ASSERT_EQ(empty.status, 0) << empty;
  EXPECT_TRUE(row(empty.out, "orders").empty()) << empty;
  EXPECT_EQ(row(empty.out, "total"), (std::vector<std::string>{"total", "0", "0", "0.0", "0", "0"}))
      << empty;
  EXPECT_TRUE(has(empty.err, "from 2020-01-01 00:00:00Z to 2020-01-02 00:00:00Z")) << empty;

  // Refusals: the server's, by kind; a --by it does not know is a usage error, nothing sent.
  CliRun bad_time = as(admin_, {"usage", "acme", "--from", "yesterday"});
  EXPECT_EQ(bad_time.status, 20) << bad_time;
  EXPECT_TRUE(has(bad_time.err, "from must be unix milliseconds or an RFC 3339 UTC time"))
      << bad_time;
  CliRun bad_by = as(admin_, {"usage", "acme", "--by", "day"});
  EXPECT_EQ(bad_by.status, 2) << bad_by;
  CliRun help = corral({"usage", "--help"});
  EXPECT_EQ(help.status, 0) << help;
  EXPECT_TRUE(has(help.out, "corral usage [OPTIONS] tenant")) << help;
  CliRun invoker = as(invoker_, {"usage", "acme"});
  EXPECT_EQ(invoker.status, 22) << invoker;
  CliRun unknown = as(admin_, {"usage", "globex"});
  EXPECT_EQ(unknown.status, 23) << unknown;
}

// --follow keeps asking: an event emitted after the command started is printed, and the command
// is still running until it is interrupted.
TEST_F(ObservabilityCli, EventsTailFollowPrintsAnEventEmittedAfterItStarted) {
  acme_with_orders();
  ASSERT_EQ(invoke(R"({"n": 1})").status, 0);

  fs::path out = dir_ / "follow.out";
  std::vector<std::string> argv_text = {CORRAL_CLI_PATH, "--server", server_,         "--token",
                                        invoker_,        "events",   "tail",          "--tenant",
                                        "acme",          "--follow", "--interval-ms", "100"};
  std::vector<char*> argv;
  for (auto& text : argv_text) argv.push_back(text.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, (dir_ / "follow.err").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, CORRAL_CLI_PATH, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  auto printed = [&](const std::string& text) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (has(corral::testing::read_text(out), text)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  // The event from before it started: it is reading.
  EXPECT_TRUE(printed(R"({"n":1})")) << corral::testing::read_text(out);

  ASSERT_EQ(invoke(R"({"n": 2})").status, 0);
  EXPECT_TRUE(printed(R"({"n":2})")) << corral::testing::read_text(out);
  std::vector<std::string> second = row(corral::testing::read_text(out), "2");
  ASSERT_GE(second.size(), 4u) << corral::testing::read_text(out);
  EXPECT_EQ(second[3], "orders.seen");
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, WNOHANG), 0) << "events tail --follow ended by itself";

  kill(pid, SIGINT);
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << status;
}

// A job no runner takes (corrald --job-threads 0): jobs wait gives up at --timeout-s with exit 8,
// saying what state it left the job in and what to do.
TEST_F(ObservabilityCli, JobsWaitGivesUpAtItsTimeoutWithExitEight) {
  restart_corrald({"--job-threads", "0"});
  acme_with_orders();
  CliRun submitted = as(invoker_, {"jobs", "submit", "--tenant", "acme", "--script", "orders",
                                   "--input", R"({"n": 1})"});
  ASSERT_EQ(submitted.status, 0) << submitted;
  std::string job = submitted.out.substr(0, submitted.out.size() - 1);

  auto started = std::chrono::steady_clock::now();
  CliRun waited = as(invoker_, {"jobs", "wait", "--tenant", "acme", "--script", "orders", job,
                                "--timeout-s", "1"});
  EXPECT_EQ(waited.status, 8) << waited;
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(500));
  EXPECT_EQ(waited.out, "") << waited;
  EXPECT_TRUE(has(waited.err, "job " + job + " is still queued after 1 s")) << waited;
  EXPECT_TRUE(has(waited.err, "give a longer --timeout-s")) << waited;

  // With --json, the job as last seen.
  CliRun waited_json = as(invoker_, {"--json", "jobs", "wait", "--tenant", "acme", "--script",
                                     "orders", job, "--timeout-s", "1"});
  EXPECT_EQ(waited_json.status, 8) << waited_json;
  EXPECT_EQ(json::parse(waited_json.out, nullptr, false)["state"], "queued") << waited_json;
}

}  // namespace
