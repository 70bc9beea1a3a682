// A real corrald on a free loopback port, spoken to over HTTP/1.1.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "api/corrald_process.h"
#include "fake_worker.h"
#include "jail/jail.h"
#include "registry/api_client.h"

namespace {

using corral::FakeWorker;
using corral::kSendReadyFrame;
using corral::testing::CorraldProcess;
using corral::testing::HttpClient;
namespace http = boost::beast::http;
using nlohmann::json;

const char* kSum = "function handle(input, ctx) return {sum = input.a + input.b} end";

json body_of(const http::response<http::string_body>& response) {
  return json::parse(response.body());
}

class ServerTest : public ::testing::Test {
 protected:
  CorraldProcess corrald_;
  HttpClient client() { return corrald_.client(); }
};

TEST_F(ServerTest, RunsTheReadmeExample) {
  auto response = client().post_json({{"source", kSum}, {"input", {{"a", 1}, {"b", 2}}}});
  ASSERT_EQ(response.result_int(), 200) << response.body();
  EXPECT_EQ(response[http::field::content_type], "application/json");
  auto body = body_of(response);
  EXPECT_EQ(body["outcome"], "ok");
  EXPECT_EQ(body["output"], json({{"sum", 3}}));
  EXPECT_EQ(body["logs"], json::array());
  for (const char* figure : {"fuel_used", "memory_peak_bytes", "wall_ms", "cpu_ms"}) {
    EXPECT_TRUE(body["stats"].contains(figure)) << figure;
  }
  EXPECT_EQ(body["invocation_id"], std::string(response["Corral-Invocation-Id"]));
  EXPECT_EQ(body["invocation_id"].get<std::string>().size(), 32u);
}

TEST_F(ServerTest, KeepsTheConnectionAliveAcrossRequests) {
  auto connection = client();
  for (int i = 0; i < 5; ++i) {
    auto response = connection.post_json({{"source", kSum}, {"input", {{"a", i}, {"b", 1}}}});
    ASSERT_EQ(response.result_int(), 200);
    EXPECT_TRUE(response.keep_alive());
    EXPECT_EQ(body_of(response)["output"]["sum"], i + 1);
  }
}

TEST_F(ServerTest, ScriptErrorIsAProblemWithTheResult) {
  auto response = client().post_json({{"source", "function handle()\n  error('bad order')\nend"}});
  ASSERT_EQ(response.result_int(), 422);
  EXPECT_EQ(response[http::field::content_type], "application/problem+json");
  auto body = body_of(response);
  EXPECT_EQ(body["type"], "urn:corral:problem:script_error");
  EXPECT_EQ(body["status"], 422);
  EXPECT_FALSE(body["title"].get<std::string>().empty());
  EXPECT_NE(body["detail"].get<std::string>().find("bad order"), std::string::npos) << body;
  EXPECT_FALSE(body["hint"].get<std::string>().empty());
  EXPECT_EQ(body["invocation_id"], std::string(response["Corral-Invocation-Id"]));
  EXPECT_EQ(body["error"]["line"], 2);
}

TEST_F(ServerTest, LimitExceededNamesTheLimitAndTheFigures) {
  auto response = client().post_json(
      {{"source", "function handle() while true do end end"}, {"limits", {{"fuel", 100000}}}});
  ASSERT_EQ(response.result_int(), 422);
  auto body = body_of(response);
  EXPECT_EQ(body["type"], "urn:corral:problem:limit_exceeded");
  EXPECT_EQ(body["error"]["limit"], "fuel");
  EXPECT_EQ(body["error"]["allowed"], 100000);
  EXPECT_GE(body["error"]["used"].get<int64_t>(), 100000);
  EXPECT_NE(body["hint"].get<std::string>().find("limits.fuel"), std::string::npos);
}

TEST_F(ServerTest, WallTimeStopsWorkInsideOneCFunction) {
  auto response = client().post_json(
      {{"source",
        "function handle() return string.find(string.rep('a', 300000), '.-.-.-.-.-.-b') end"},
       {"limits", {{"timeout_ms", 200}}}});
  ASSERT_EQ(response.result_int(), 422) << response.body();
  EXPECT_EQ(body_of(response)["error"]["limit"], "wall_time");
}

TEST_F(ServerTest, SyntaxErrorIsInvalidWithLineAndColumn) {
  auto response = client().post_json({{"source", "function handle(\n  return 1 end"}});
  ASSERT_EQ(response.result_int(), 400);
  auto body = body_of(response);
  EXPECT_EQ(body["type"], "urn:corral:problem:invalid");
  EXPECT_EQ(body["error"]["line"], 2);
  EXPECT_GT(body["error"]["column"], 0);
}

TEST_F(ServerTest, UnknownFieldIsRefusedByName) {
  auto response = client().post_json({{"source", kSum}, {"inputs", 1}});
  ASSERT_EQ(response.result_int(), 400);
  auto body = body_of(response);
  EXPECT_EQ(body["type"], "urn:corral:problem:invalid");
  EXPECT_EQ(body["field"], "inputs");
  EXPECT_NE(body["detail"].get<std::string>().find("\"inputs\""), std::string::npos) << body;
  EXPECT_TRUE(body.contains("invocation_id"));
}

TEST_F(ServerTest, LimitAboveTheMaximumIsRefused) {
  auto response = client().post_json({{"source", kSum}, {"limits", {{"timeout_ms", 10'000'000}}}});
  ASSERT_EQ(response.result_int(), 400);
  EXPECT_EQ(body_of(response)["field"], "limits.timeout_ms");
}

TEST_F(ServerTest, BodyThatIsNotJsonIsRefused) {
  auto response = client().request(http::verb::post, "/v1/run", "{\"source\": ");
  ASSERT_EQ(response.result_int(), 400);
  EXPECT_EQ(body_of(response)["type"], "urn:corral:problem:invalid");
}

TEST_F(ServerTest, DeeplyNestedBodyIsRefusedAndTheServerLives) {
  std::string deep =
      "{\"source\":\"x\",\"input\":" + std::string(200000, '[') + std::string(200000, ']') + "}";
  auto connection = client();
  EXPECT_EQ(connection.request(http::verb::post, "/v1/run", deep).result_int(), 400);
  EXPECT_EQ(connection.post_json({{"source", kSum}, {"input", {{"a", 1}, {"b", 1}}}}).result_int(),
            200);
}

TEST_F(ServerTest, WrongContentTypeIs415) {
  auto response =
      client().request(http::verb::post, "/v1/run", json({{"source", kSum}}).dump(), "text/plain");
  ASSERT_EQ(response.result_int(), 415);
  EXPECT_EQ(body_of(response)["type"], "urn:corral:problem:unsupported-media-type");
  auto with_charset = client().request(
      http::verb::post, "/v1/run", json({{"source", kSum}, {"input", {{"a", 1}, {"b", 1}}}}).dump(),
      "Application/JSON; charset=utf-8");
  EXPECT_EQ(with_charset.result_int(), 200);
}

TEST_F(ServerTest, UnknownRouteIs404AndWrongMethodIs405) {
  auto missing = client().request(http::verb::get, "/v1/nothing");
  EXPECT_EQ(missing.result_int(), 404);
  EXPECT_EQ(body_of(missing)["type"], "urn:corral:problem:not-found");
  auto wrong = client().request(http::verb::get, "/v1/run");
  EXPECT_EQ(wrong.result_int(), 405);
  EXPECT_EQ(wrong[http::field::allow], "POST");
  EXPECT_EQ(body_of(wrong)["status"], 405);
}

TEST_F(ServerTest, HealthzListsTheActiveLayers) {
  auto response = client().request(http::verb::get, "/healthz");
  ASSERT_EQ(response.result_int(), 200);
  auto body = body_of(response);
  EXPECT_EQ(body["status"], "ok");
  ASSERT_TRUE(body["layers"].is_array());
  // Every jail layer is listed, active exactly when this machine provides it.
  for (const auto& status : corral::jail::probe_machine()) {
    bool listed = false;
    for (const auto& layer : body["layers"]) {
      if (layer["name"] != corral::jail::to_string(status.layer)) continue;
      listed = true;
      EXPECT_EQ(layer["active"], status.available) << layer;
    }
    EXPECT_TRUE(listed) << corral::jail::to_string(status.layer) << " missing from " << body;
  }
}

TEST(CorraldJail, RefusesToStartWithoutALayerUnlessAllowed) {
  std::string command =
      std::string(CORRALD_PATH) + " --listen 127.0.0.1:0 --cgroup-root /nonexistent 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char chunk[512];
  while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) output.append(chunk, n);
  int status = pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 2) << output;
  EXPECT_NE(output.find("'cgroup'"), std::string::npos) << output;
  EXPECT_NE(output.find("--allow-missing-layer=cgroup"), std::string::npos) << output;

  CorraldProcess corrald({"--cgroup-root", "/nonexistent", "--allow-missing-layer=cgroup"});
  HttpClient client = corrald.client();
  auto health = body_of(client.request(http::verb::get, "/healthz"));
  for (const auto& layer : health["layers"]) {
    if (layer["name"] == "cgroup") {
      EXPECT_EQ(layer["active"], false) << layer;
    }
  }
  auto response = client.post_json({{"source", kSum}, {"input", {{"a", 1}, {"b", 2}}}});
  EXPECT_EQ(response.result_int(), 200);
}

TEST(CorraldJail, CheckListsEveryLayer) {
  std::string command = std::string(CORRALD_PATH) + " --check --cgroup-root /nonexistent";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char chunk[512];
  while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) output.append(chunk, n);
  EXPECT_EQ(WEXITSTATUS(pclose(pipe)), 1);
  for (corral::jail::Layer layer : corral::jail::kAllLayers) {
    EXPECT_NE(output.find(std::string(corral::jail::to_string(layer))), std::string::npos)
        << output;
  }
  EXPECT_NE(output.find("MISSING"), std::string::npos) << output;
}

TEST_F(ServerTest, LogsOneJsonLinePerRequestWithTheInvocationId) {
  auto response = client().post_json({{"source", kSum}, {"input", {{"a", 1}, {"b", 2}}}});
  client().request(http::verb::get, "/healthz");
  std::string id(response["Corral-Invocation-Id"]);
  std::vector<json> requests;
  for (const auto& line : corrald_.log_lines_with_requests(2)) {
    if (line.value("msg", "") == "request") requests.push_back(line);
  }
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0]["invocation_id"], id);
  EXPECT_EQ(requests[0]["route"], "/v1/run");
  EXPECT_EQ(requests[0]["status"], 200);
  EXPECT_EQ(requests[0]["outcome"], "ok");
  EXPECT_TRUE(requests[0].contains("duration_ms"));
  EXPECT_TRUE(requests[0].contains("time"));
  EXPECT_EQ(requests[1]["route"], "/healthz");
  EXPECT_FALSE(requests[1].contains("invocation_id"));
}

TEST_F(ServerTest, ServesConcurrentClients) {
  // This is about the server, not about quotas (tests/sched): lift the playground's quotas, which
  // would otherwise refuse 80 runs at once with 429.
  auto policy = client().request(
      http::verb::put, "/v1/policy",
      json({{"document",
             "defaults:\n  quotas:\n    rate_per_second: 100000\n    burst: 100000\n"
             "    concurrency: 100\n"}})
          .dump());
  ASSERT_EQ(policy.result_int(), 201) << policy.body();
  std::atomic<int> ok{0};
  std::mutex ids_mutex;
  std::set<std::string> ids;
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      auto connection = client();
      for (int i = 0; i < 10; ++i) {
        auto response = connection.post_json({{"source", kSum}, {"input", {{"a", c}, {"b", i}}}});
        if (response.result_int() == 200 && body_of(response)["output"]["sum"] == c + i) ++ok;
        std::lock_guard lock(ids_mutex);
        ids.insert(std::string(response["Corral-Invocation-Id"]));
      }
    });
  }
  for (auto& thread : clients) thread.join();
  EXPECT_EQ(ok, 80);
  // Lines written together under load are still one line per request, each whole.
  std::set<std::string> logged;
  for (const auto& line : corrald_.log_lines_with_requests(81)) {
    if (line.value("msg", "") == "request" && line.value("route", "") == "/v1/run") {
      EXPECT_EQ(line.value("status", 0), 200) << line;
      logged.insert(line.value("invocation_id", ""));
    }
  }
  EXPECT_EQ(logged, ids);
  EXPECT_EQ(logged.size(), 80u);
}

TEST_F(ServerTest, SigtermLetsTheRunInProgressFinishThenExitsZero) {
  auto idle = client();
  ASSERT_EQ(idle.request(http::verb::get, "/healthz").result_int(), 200);

  http::response<http::string_body> slow;
  std::thread runner([&] {
    slow = client().post_json({{"source",
                                "function handle() local t = os.clock() while os.clock() - t < 0.6 "
                                "do end return 'done' end"},
                               {"limits", {{"fuel", 1'000'000'000}, {"timeout_ms", 5000}}}});
  });
  // Wait until the run is in flight before asking corrald to stop.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (
      client().request(http::verb::get, "/metrics").body().find("corral_invocations_in_flight 1") ==
      std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(corrald_.terminate_and_wait(), 0);
  runner.join();
  EXPECT_EQ(slow.result_int(), 200) << slow.body();
  EXPECT_EQ(body_of(slow)["output"], "done");
  EXPECT_FALSE(slow.keep_alive());

  // The idle keep-alive connection was closed rather than left hanging.
  boost::beast::error_code error;
  char byte;
  idle.socket().read_some(boost::asio::buffer(&byte, 1), error);
  EXPECT_EQ(error, boost::asio::error::eof);
  bool logged_stop = false;
  for (const auto& line : corrald_.log_lines()) logged_stop |= line.value("msg", "") == "stopped";
  EXPECT_TRUE(logged_stop);
}

TEST(ServerLimits, BodyOverTheLimitIs413) {
  CorraldProcess corrald({"--max-body-bytes", "2000"});
  HttpClient client = corrald.client();
  auto response = client.post_json({{"source", std::string(5000, ' ') + kSum}});
  ASSERT_EQ(response.result_int(), 413);
  EXPECT_EQ(body_of(response)["type"], "urn:corral:problem:body-too-large");
  EXPECT_FALSE(response.keep_alive());
}

TEST(ServerLimits, ConfigFileSetsDefaults) {
  auto config =
      std::filesystem::temp_directory_path() / ("corrald-" + std::to_string(getpid()) + ".toml");
  std::ofstream(config) << "default-fuel = 20000\nmax-fuel = 40000\n";
  CorraldProcess corrald({"--config", config.string()});
  std::filesystem::remove(config);
  HttpClient client = corrald.client();
  auto response = client.post_json({{"source", "function handle() while true do end end"}});
  ASSERT_EQ(response.result_int(), 422);
  EXPECT_EQ(body_of(response)["error"]["allowed"], 20000);
  auto above = client.post_json({{"source", kSum}, {"limits", {{"fuel", 50000}}}});
  EXPECT_EQ(above.result_int(), 400);
}

// A misspelt key would leave corrald on a default the operator meant to change: it refuses to
// start, naming the key, the file and the line, in its own words rather than CLI11's. (--check,
// so that a corrald that wrongly accepts the file exits rather than serves.)
TEST(ServerLimits, ConfigFileWithAnUnknownKeyIsRefusedNamingTheKeyTheFileAndTheLine) {
  auto config =
      std::filesystem::temp_directory_path() / ("corrald-" + std::to_string(getpid()) + "-x.toml");
  auto refusal = [&](const std::string& text) {
    std::ofstream(config) << text;
    std::string command =
        std::string(CORRALD_PATH) + " --config " + config.string() + " --check 2>&1 >/dev/null";
    FILE* pipe = popen(command.c_str(), "r");
    std::string output;
    char chunk[4096];
    for (size_t n; (n = fread(chunk, 1, sizeof chunk, pipe)) > 0;) output.append(chunk, n);
    int status = pclose(pipe);
    return std::pair(WEXITSTATUS(status), output);
  };
  auto [status, output] = refusal("default-fuel = 20000\nmax-worker = 3\n");
  EXPECT_EQ(status, 2) << output;
  EXPECT_EQ(output, "corrald: " + config.string() +
                        ":2: unknown key \"max-worker\"; corrald has no option --max-worker. Keys "
                        "are corrald's long option names without the dashes (corrald --help): "
                        "correct or remove it\n");
  // A key under a [section] names no option either (corrald's options have no sections).
  std::tie(status, output) = refusal("[limits]\nfuel = 1\n");
  EXPECT_EQ(status, 2) << output;
  EXPECT_NE(output.find(config.string() + ":2: unknown key \"limits.fuel\""), std::string::npos)
      << output;
  EXPECT_EQ(output.find("INI"), std::string::npos) << output;
  std::filesystem::remove(config);
}

// Over the subrequests limit, the hint names how far the limit goes (here a published version's,
// from its tenant's policy: 16 by default), through the one maximum_of every limit shares. The
// playground grants no capability, so no playground run reaches its subrequests limit: its hint
// (corrald's maximum, 1000, where it said 0) is tested in responses_test.cc.
TEST(ServerLimits, SubrequestsOverTheLimitHintAtHowFarTheLimitGoes) {
  CorraldProcess corrald;
  corral::testing::ApiClient api(corrald);
  ASSERT_EQ(api.put(api.admin(), "/v1/policy",
                    {{"document",
                      "tenants:\n  acme:\n    capabilities:\n"
                      "      emit: {topics: [\"t\"]}\n"}})
                .status,
            201);
  auto tokens = api.tenant_with_tokens("acme");
  corral::testing::Answer published =
      api.post(tokens["publisher"], "/v1/tenants/acme/scripts/emitter/versions",
               {{"source",
                 "function handle(input, ctx) for i = 1, input.calls do ctx.emit('t', {}) end "
                 "return {} end"},
                {"manifest", corral::testing::manifest({"emit"})}});
  ASSERT_EQ(published.status, 201) << published;
  api.approve(tokens["reviewer"], "acme", "emitter", 1);
  auto invoke = [&](json body) {
    return api.post(tokens["invoker"], "/v1/tenants/acme/scripts/emitter/invoke?version=1", body);
  };
  corral::testing::Answer lowered =
      invoke({{"input", {{"calls", 3}}}, {"limits", {{"subrequests", 2}}}});
  ASSERT_EQ(lowered.status, 422) << lowered;
  EXPECT_EQ(lowered.body["error"]["limit"], "subrequests") << lowered;
  EXPECT_EQ(lowered.body["hint"],
            "make the script do less work, or leave limits.subrequests out of the request: the "
            "tenant's policy allows up to 16")
      << lowered;
  corral::testing::Answer at_most = invoke({{"input", {{"calls", 17}}}});
  ASSERT_EQ(at_most.status, 422) << at_most;
  EXPECT_EQ(at_most.body["error"]["allowed"], 16) << at_most;
  EXPECT_EQ(at_most.body["hint"],
            "make the script do less work: limits.subrequests is already the most this tenant's "
            "runs may have (16, from its policy); an operator can raise it in the policy "
            "(docs/policy.md, limits)")
      << at_most;
}

TEST(ServerLimits, CrashedWorkerIs500AndIsReplaced) {
  // Says it is ready, then exits once the invocation comes.
  FakeWorker fake("crashing", std::string(kSendReadyFrame) + "\nexec head -c 8 <&3");
  CorraldProcess corrald({"--worker", fake.path()});
  HttpClient client = corrald.client();
  for (int i = 0; i < 2; ++i) {
    auto response = client.post_json({{"source", kSum}});
    ASSERT_EQ(response.result_int(), 500) << response.body();
    auto body = body_of(response);
    EXPECT_EQ(body["type"], "urn:corral:problem:crashed");
    EXPECT_NE(body["detail"].get<std::string>().find("exited with status 0 during the invocation"),
              std::string::npos)
        << body;
  }
}

TEST(ServerLimits, AWorkerThatCannotStartIs503WithRetryAfterAndIsLoggedOnce) {
  // Exits before its ready frame, as corral-worker does when it cannot jail itself.
  FakeWorker fake("unstartable", "exit 3");
  CorraldProcess corrald({"--worker", fake.path()});
  HttpClient client = corrald.client();
  for (int i = 0; i < 2; ++i) {
    auto response = client.post_json({{"source", kSum}});
    // Not 500 `crashed`: the script never ran, and a crash would count against its version.
    ASSERT_EQ(response.result_int(), 503) << response.body();
    EXPECT_EQ(response["Retry-After"], "5");
    auto body = body_of(response);
    EXPECT_EQ(body["type"], "urn:corral:problem:no-worker");
    EXPECT_EQ(body["outcome"], "rejected");
    EXPECT_EQ(body["retry_after"], 5);
    std::string detail = body["detail"];
    EXPECT_NE(detail.find("could not start a worker"), std::string::npos) << detail;
    EXPECT_NE(detail.find("exited with status 3 before it was ready"), std::string::npos) << detail;
  }
  EXPECT_GE(corrald.metric("corral_worker_start_failures_total"), 2);
  EXPECT_EQ(corrald.metric("corral_invocations_total{outcome=\"rejected\"}"), 2);
  EXPECT_EQ(corrald.metric("corral_invocations_total{outcome=\"crashed\"}"), 0);
  // Every start failed (the spares too), but the warning is throttled to one per 10 s.
  int warnings = 0;
  for (const auto& line : corrald.log_lines_settled()) {
    if (line.value("msg", "") != "cannot start a worker") continue;
    ++warnings;
    EXPECT_EQ(line.value("level", ""), "warning") << line;
    EXPECT_NE(line.value("error", "").find("status 3"), std::string::npos) << line;
  }
  EXPECT_EQ(warnings, 1);
}

TEST(ServerLimits, MetricsShowTheWorkerPool) {
  CorraldProcess corrald({"--spare-workers", "1", "--max-workers", "7"});
  HttpClient client = corrald.client();
  auto served = client.post_json({{"source", "function handle() return 1 end"}});
  ASSERT_EQ(served.result_int(), 200) << served.body();
  EXPECT_EQ(corrald.metric("corral_workers_max"), 7);
  EXPECT_EQ(corrald.metric("corral_worker_start_failures_total"), 0);
  EXPECT_EQ(corrald.metric("corral_workers{state=\"busy\"}"), 0);
  // The run bound the spare to the playground tenant, which keeps it idle; a new spare follows.
  EXPECT_EQ(corrald.metric("corral_workers{state=\"idle\"}"), 1);
  for (int wait = 0; wait < 500 && corrald.metric("corral_workers{state=\"spare\"}") != 1; ++wait)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(corrald.metric("corral_workers{state=\"spare\"}"), 1);
  EXPECT_EQ(corrald.metric("corral_workers_started_total"), 2) << "the spare and its replacement";
  EXPECT_EQ(corrald.metric("corral_workers{state=\"starting\"}"), 0);
  // Two workers live (the bound one and the spare), each counted at more than the least a worker
  // costs, within the default budget of a quarter of the machine's memory.
  double budget = corrald.metric("corral_worker_memory_budget_bytes");
  double counted = corrald.metric("corral_worker_memory_bytes");
  EXPECT_GT(budget, 0);
  EXPECT_GE(counted, 2.0 * (96 << 10));
  EXPECT_LT(counted, budget);
}

TEST(ServerLimits, TheWorkerPoolIsSizedByMemoryAndSaysHow) {
  CorraldProcess corrald({"--worker-memory-budget", "64M"});
  HttpClient client = corrald.client();
  auto served = client.post_json({{"source", "function handle() return 1 end"}});
  ASSERT_EQ(served.result_int(), 200) << served.body();
  EXPECT_EQ(corrald.metric("corral_worker_memory_budget_bytes"), 64 << 20);
  bool sized = false;
  for (const auto& line : corrald.log_lines()) {
    if (line.value("msg", "") != "worker pool sized") continue;
    sized = true;
    EXPECT_EQ(line.value("memory_budget_mib", 0), 64) << line;
    EXPECT_GT(line.value("worker_kernel_kib", 0), 0) << line;
    EXPECT_GT(line.value("worker_user_kib", 0), 0) << line;
    // The count cap never binds before the memory: it is the budget over the least a worker
    // costs (192 KiB).
    EXPECT_EQ(line.value("max_workers", 0), (64 << 20) / (192 << 10)) << line;
    EXPECT_EQ(line.value("max_workers_set_by", ""), "--worker-memory-budget") << line;
  }
  EXPECT_TRUE(sized) << "no worker pool sized line in the log";
}

TEST(ServerLimits, AMemoryBudgetThatCannotBeReadIsRefusedAtStart) {
  std::string command = std::string(CORRALD_PATH) + " --worker-memory-budget 4GB 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char chunk[4096];
  for (size_t n; (n = fread(chunk, 1, sizeof chunk, pipe)) > 0;) output.append(chunk, n);
  int status = pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 2) << output;
  EXPECT_NE(output.find("--worker-memory-budget takes a share of the machine's memory (\"25%\") "
                        "or an amount"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("not '4GB'"), std::string::npos) << output;
}

TEST(CorraldCommand, HelpExplainsEachOption) {
  std::string command = std::string(CORRALD_PATH) + " --help";
  FILE* pipe = popen(command.c_str(), "r");
  std::string help;
  char chunk[512];
  while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) help.append(chunk, n);
  EXPECT_EQ(pclose(pipe), 0);
  for (const char* option :
       {"--listen", "--data-dir", "--config", "--max-body-bytes", "--default-fuel",
        "--max-memory-bytes", "--default-timeout-ms", "SIGTERM"}) {
    EXPECT_NE(help.find(option), std::string::npos) << option;
  }
}

TEST(CorraldCommand, BadListenAddressIsAUsageError) {
  std::string command = std::string(CORRALD_PATH) + " --listen nowhere 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char chunk[512];
  while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) output.append(chunk, n);
  int status = pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(output.find("HOST:PORT"), std::string::npos) << output;
}

}  // namespace
