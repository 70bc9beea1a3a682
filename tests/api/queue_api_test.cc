// The fair queues through a real corrald with one invocation thread: while a slow run holds the
// thread, requests queue per tenant; past a tenant's depth, or past the global bound, corrald
// answers 503 at once with Retry-After and a problem naming the bound; what was queued is answered
// afterwards, also when corrald is asked to stop. Nothing here depends on how fast the machine is:
// each step waits for corrald's own gauges, and the run holding the thread lasts far longer than
// the steps that need it held.
#include <gtest/gtest.h>

#include <boost/beast/http/write.hpp>
#include <chrono>
#include <map>
#include <thread>

#include "api/server.h"
#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kPolicy = R"(defaults:
  quotas:
    rate_per_second: 100000
    burst: 100000
    concurrency: 100
)";

// Holds the only invocation thread for about 4 s (CPU time, so it is the same under ASan).
const json kHold = {
    {"source",
     "function handle() local t = os.clock() while os.clock() - t < 4 do end return 'held' end"},
    {"limits", {{"fuel", 1'000'000'000}, {"timeout_ms", 30'000}}}};

// A request written now and answered later, on its own connection.
class Pending {
 public:
  Pending(const CorraldProcess& corrald, const std::string& token, const std::string& target,
          const json& body)
      : client_(corrald.host(), corrald.port(), token) {
    http::request<http::string_body> message(http::verb::post, target, 11);
    message.set(http::field::host, "127.0.0.1");
    message.set(http::field::authorization, "Bearer " + token);
    message.set(http::field::content_type, "application/json");
    message.body() = body.dump();
    message.prepare_payload();
    http::write(client_.socket(), message);
  }
  http::response<http::string_body> answer() { return client_.read_response(); }

 private:
  HttpClient client_;
};

void wait_for_metric(const CorraldProcess& corrald, const std::string& series, double value) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (corrald.metric(series) != value) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << series << " never reached " << value << " (now " << corrald.metric(series) << ")";
    std::this_thread::sleep_for(5ms);
  }
}

std::string header(const http::response<http::string_body>& response, const char* name) {
  auto found = response.find(name);
  return found == response.end() ? "" : std::string(found->value());
}

class QueueApiTest : public ::testing::Test {
 protected:
  // One lane: the bounds under test are those of a single queue (several lanes queue apart).
  QueueApiTest()
      : corrald_({"--lanes", "1", "--invocation-threads", "1", "--tenant-queue-depth", "2",
                  "--max-queued", "3"}) {}

  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    Answer policy = api_->put(api_->admin(), "/v1/policy", {{"document", kPolicy}});
    ASSERT_EQ(policy.status, 201) << policy;
    for (const char* tenant : {"acme", "globex"}) {
      tokens_[tenant] = api_->tenant_with_tokens(tenant);
      int64_t version = api_->publish(tokens_[tenant]["publisher"], tenant, "double", kDoubler);
      api_->approve(tokens_[tenant]["reviewer"], tenant, "double", version);
      api_->set_alias(tokens_[tenant]["reviewer"], tenant, "double", "live", version);
    }
  }

  std::string invoke_path(const std::string& tenant) {
    return "/v1/tenants/" + tenant + "/scripts/double/invoke";
  }

  std::unique_ptr<Pending> invoke_later(const std::string& tenant, int n) {
    return std::make_unique<Pending>(corrald_, tokens_[tenant]["invoker"], invoke_path(tenant),
                                     json{{"input", {{"n", n}}}});
  }

  http::response<http::string_body> invoke_now(const std::string& tenant, int n) {
    HttpClient client(corrald_.host(), corrald_.port(), tokens_[tenant]["invoker"]);
    return client.request(http::verb::post, invoke_path(tenant),
                          json{{"input", {{"n", n}}}}.dump());
  }

  // Starts the slow run and returns once it holds the thread.
  std::unique_ptr<Pending> hold_the_thread() {
    auto hold = std::make_unique<Pending>(corrald_, api_->admin(), "/v1/run", kHold);
    wait_for_metric(corrald_, "corral_invocations_in_flight", 1);
    return hold;
  }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::map<std::string, std::string>> tokens_;
};

TEST_F(QueueApiTest, AFullTenantQueueAndTheGlobalBoundAnswer503WithRetryAfter) {
  auto hold = hold_the_thread();
  std::vector<std::unique_ptr<Pending>> queued;
  queued.push_back(invoke_later("acme", 1));
  queued.push_back(invoke_later("acme", 2));
  wait_for_metric(corrald_, "corral_requests_queued", 2);

  // acme's queue holds 2: the third is refused at once, naming the tenant's bound.
  auto full = invoke_now("acme", 3);
  ASSERT_EQ(full.result_int(), 503) << full.body();
  EXPECT_EQ(header(full, "Content-Type"), "application/problem+json");
  json body = json::parse(full.body());
  EXPECT_EQ(body["type"], "urn:corral:problem:queue-full") << body;
  EXPECT_EQ(body["status"], 503);
  EXPECT_FALSE(body["title"].get<std::string>().empty());
  EXPECT_EQ(body["tenant"], "acme");
  EXPECT_EQ(body["outcome"], "rejected");
  EXPECT_EQ(body["queue"]["reason"], "tenant_queue_full");
  EXPECT_EQ(body["queue"]["queued"], 2);
  EXPECT_EQ(body["queue"]["bound"], 2);
  EXPECT_EQ(body["queue"]["invocation_threads"], 1);
  std::string detail = body["detail"];
  EXPECT_NE(detail.find("tenant \"acme\" has 2 requests queued"), std::string::npos) << detail;
  EXPECT_NE(detail.find("--tenant-queue-depth 2"), std::string::npos) << detail;
  std::string hint = body["hint"];
  EXPECT_NE(hint.find("Retry-After"), std::string::npos) << hint;
  EXPECT_NE(hint.find("--tenant-queue-depth"), std::string::npos) << hint;
  int retry_after = std::stoi(header(full, "Retry-After"));
  EXPECT_GE(retry_after, 1);
  EXPECT_EQ(body["retry_after"], retry_after);
  EXPECT_EQ(body["invocation_id"], header(full, "Corral-Invocation-Id"));
  EXPECT_EQ(body["invocation_id"].get<std::string>().size(), 32u);

  // globex still gets a place: acme's full queue is acme's alone.
  queued.push_back(invoke_later("globex", 4));
  wait_for_metric(corrald_, "corral_requests_queued", 3);

  // Now 3 are queued in all, the global bound: globex (1 of its 2) and anything else are refused.
  auto overloaded = invoke_now("globex", 5);
  ASSERT_EQ(overloaded.result_int(), 503) << overloaded.body();
  body = json::parse(overloaded.body());
  EXPECT_EQ(body["type"], "urn:corral:problem:overloaded") << body;
  EXPECT_EQ(body["queue"]["reason"], "overloaded");
  EXPECT_EQ(body["queue"]["queued_in_all"], 3);
  EXPECT_EQ(body["queue"]["bound"], 3);
  detail = body["detail"];
  EXPECT_NE(detail.find("--max-queued 3"), std::string::npos) << detail;
  EXPECT_NE(detail.find("tenant \"globex\" has 1 request queued"), std::string::npos) << detail;
  EXPECT_NE(body["hint"].get<std::string>().find("--max-queued"), std::string::npos) << body;
  EXPECT_GE(std::stoi(header(overloaded, "Retry-After")), 1);

  // A request that names no tenant, and is no invocation, is refused by the same bound.
  HttpClient admin = corrald_.client();
  auto listing = admin.request(http::verb::get, "/v1/tenants");
  ASSERT_EQ(listing.result_int(), 503) << listing.body();
  body = json::parse(listing.body());
  EXPECT_EQ(body["type"], "urn:corral:problem:overloaded");
  EXPECT_FALSE(body.contains("outcome"));
  EXPECT_FALSE(body.contains("tenant"));
  EXPECT_NE(body["detail"].get<std::string>().find("name no tenant"), std::string::npos) << body;
  EXPECT_GE(std::stoi(header(listing, "Retry-After")), 1);
  // The refusal kept the connection: the client may retry on it.
  EXPECT_TRUE(listing.keep_alive());

  // Health and metrics are answered by the I/O thread, queues or not. (A new connection: the
  // refused one is held for a second, see refusal_hold_test.cc.)
  EXPECT_EQ(corrald_.client().request(http::verb::get, "/healthz").result_int(), 200);

  // Everything that was queued is served once the thread frees, in full.
  auto held = hold->answer();
  EXPECT_EQ(held.result_int(), 200) << held.body();
  std::vector<int> expected = {2, 4, 8};
  for (size_t i = 0; i < queued.size(); ++i) {
    auto answer = queued[i]->answer();
    ASSERT_EQ(answer.result_int(), 200) << answer.body();
    EXPECT_EQ(json::parse(answer.body())["output"]["doubled"], expected[i]);
  }
  EXPECT_EQ(invoke_now("acme", 21).result_int(), 200);

  EXPECT_EQ(corrald_.metric("corral_requests_queued"), 0);
  EXPECT_EQ(corrald_.metric("corral_queue_rejections_total{reason=\"tenant_queue_full\"}"), 1);
  EXPECT_EQ(corrald_.metric("corral_queue_rejections_total{reason=\"overloaded\"}"), 2);
  EXPECT_EQ(corrald_.metric("corral_queue_rejections_total{reason=\"stopping\"}"), 0);
  // Two refused invocations are outcome rejected; the refused listing is not an invocation.
  EXPECT_EQ(corrald_.metric("corral_invocations_total{outcome=\"rejected\"}"), 2);
  // The three queued runs waited while the slow run held the thread (4 s of its CPU time).
  EXPECT_GT(corrald_.metric("corral_queue_wait_seconds_sum"), 1);
  EXPECT_GT(corrald_.metric("corral_queue_wait_seconds_count"), 3);

  // Refusals shed load: not a request line each, but the first of each kind at once, at warn,
  // and the rest of its 10 s counted into one line (the second overloaded one, not yet due).
  std::map<std::string, json> refused;
  for (const auto& line : corrald_.log_lines()) {
    EXPECT_FALSE(line.value("msg", "") == "request" && line.value("status", 0) == 503) << line;
    if (line.value("msg", "") == "requests refused") refused[line.value("kind", "")] = line;
  }
  ASSERT_EQ(refused.size(), 2u);
  for (const char* kind : {"queue-full", "overloaded"}) {
    EXPECT_EQ(refused[kind]["count"], 1) << refused[kind];
    EXPECT_EQ(refused[kind]["level"], "warn");
    EXPECT_EQ(refused[kind]["status"], 503);
    EXPECT_EQ(refused[kind]["route"], "/v1/tenants/{tenant}/scripts/{script}/invoke");
  }
}

// The review's attack: while the only thread is busy, strangers send requests naming tenant
// acme with no token, a bad token, and globex's token. None of them may take a place in acme's
// queue: the strangers are answered 401 at once, globex's probes wait in globex's own queue, and
// acme's own calls still queue and are answered.
TEST_F(QueueApiTest, NothingEntersATenantsQueueBeforeItsTokenIsChecked) {
  auto hold = hold_the_thread();
  for (const std::string& token : {std::string(), std::string("corral_") + std::string(64, '0')}) {
    for (int i = 0; i < 5; ++i) {
      HttpClient stranger(corrald_.host(), corrald_.port(), token);
      auto refused = stranger.request(http::verb::post, invoke_path("acme"),
                                      json{{"input", {{"n", 1}}}}.dump());
      EXPECT_EQ(refused.result_int(), 401) << refused.body();
    }
  }
  EXPECT_EQ(corrald_.metric("corral_requests_queued"), 0);
  // globex probing acme's paths fills globex's queue (depth 2), never acme's.
  std::vector<std::unique_ptr<Pending>> probes;
  for (int i = 0; i < 2; ++i) {
    probes.push_back(std::make_unique<Pending>(corrald_, tokens_["globex"]["invoker"],
                                               invoke_path("acme"), json{{"input", {{"n", 1}}}}));
  }
  wait_for_metric(corrald_, "corral_requests_queued", 2);
  auto globex_refused = invoke_now("globex", 3);
  EXPECT_EQ(globex_refused.result_int(), 503) << "globex's probes did not count as globex's";
  auto own = invoke_later("acme", 21);
  wait_for_metric(corrald_, "corral_requests_queued", 3);
  auto answered = own->answer();
  EXPECT_EQ(answered.result_int(), 200) << answered.body();
  EXPECT_EQ(json::parse(answered.body())["output"]["doubled"], 42);
  for (auto& probe : probes) EXPECT_EQ(probe->answer().result_int(), 404);
  EXPECT_EQ(hold->answer().result_int(), 200);
}

TEST_F(QueueApiTest, StoppingAnswersEveryQueuedRequestBeforeExiting) {
  auto hold = hold_the_thread();
  std::vector<std::unique_ptr<Pending>> queued;
  queued.push_back(invoke_later("acme", 1));
  queued.push_back(invoke_later("globex", 2));
  queued.push_back(invoke_later("acme", 3));
  wait_for_metric(corrald_, "corral_requests_queued", 3);

  kill(corrald_.pid(), SIGTERM);
  auto held = hold->answer();
  EXPECT_EQ(held.result_int(), 200) << held.body();
  std::vector<int> expected = {2, 4, 6};
  for (size_t i = 0; i < queued.size(); ++i) {
    auto answer = queued[i]->answer();
    ASSERT_EQ(answer.result_int(), 200) << answer.body();
    EXPECT_EQ(json::parse(answer.body())["output"]["doubled"], expected[i]);
    EXPECT_FALSE(answer.keep_alive());
  }
  EXPECT_EQ(corrald_.wait(), 0);
}

TEST(QueueKey, IsTheDecodedTenantSegmentOrNothing) {
  EXPECT_EQ(api::queue_key("/v1/tenants/acme/scripts/double/invoke"), "acme");
  EXPECT_EQ(api::queue_key("/v1/tenants/acme"), "acme");
  EXPECT_EQ(api::queue_key("/v1/tenants/acme?x=1"), "acme");
  EXPECT_EQ(api::queue_key("/v1/tenants/ac%6De/tokens"), "acme");
  EXPECT_EQ(api::queue_key("/v1/tenants/ac%zz/tokens"), "ac%zz");
  EXPECT_EQ(api::queue_key("/v1/tenants"), "");
  EXPECT_EQ(api::queue_key("/v1/tenants?limit=3"), "");
  EXPECT_EQ(api::queue_key("/v1/run"), "");
  EXPECT_EQ(api::queue_key("/v1/policy"), "");
  EXPECT_EQ(api::queue_key(std::string("/v1/tenants/") + std::string(5000, 'a') + "/scripts"),
            std::string(api::kMaxQueueKeyBytes, 'a'));
}

TEST(ScriptKey, IsTheDecodedScriptSegmentOrNothing) {
  EXPECT_EQ(api::script_key("/v1/tenants/acme/scripts/double/invoke"), "double");
  EXPECT_EQ(api::script_key("/v1/tenants/acme/scripts/dou%62le/invoke?x=1"), "double");
  EXPECT_EQ(api::script_key("/v1/tenants/acme/scripts/double"), "double");
  EXPECT_EQ(api::script_key("/v1/tenants/acme/scripts"), "");
  EXPECT_EQ(api::script_key("/v1/tenants/acme/jobs/double"), "");
  EXPECT_EQ(api::script_key("/v1/tenants/acme"), "");
  EXPECT_EQ(api::script_key("/v1/run"), "");
  EXPECT_EQ(api::script_key("/v1/tenants/acme/scripts/" + std::string(5000, 'b') + "/invoke"),
            std::string(api::kMaxQueueKeyBytes, 'b'));
}

TEST(QueueFlags, BadBoundsAreUsageErrorsNamingTheFlag) {
  auto run = [](const std::string& arguments) {
    std::string command =
        std::string(CORRALD_PATH) + " --listen 127.0.0.1:0 " + arguments + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    std::string output;
    char chunk[512];
    while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) output.append(chunk, n);
    int status = pclose(pipe);
    return std::make_pair(WEXITSTATUS(status), output);
  };
  auto [zero_status, zero] = run("--tenant-queue-depth 0");
  EXPECT_EQ(zero_status, 2) << zero;
  EXPECT_NE(zero.find("--tenant-queue-depth"), std::string::npos) << zero;
  auto [global_status, global] = run("--max-queued 0");
  EXPECT_EQ(global_status, 2) << global;
  EXPECT_NE(global.find("--max-queued"), std::string::npos) << global;
  auto [above_status, above] = run("--tenant-queue-depth 100 --max-queued 10");
  EXPECT_EQ(above_status, 2) << above;
  EXPECT_NE(above.find("100 is above --max-queued 10"), std::string::npos) << above;
  auto [help_status, help] = run("--help");
  EXPECT_EQ(help_status, 0);
  EXPECT_NE(help.find("--tenant-queue-depth"), std::string::npos);
  EXPECT_NE(help.find("--max-queued"), std::string::npos);
}

}  // namespace
}  // namespace corral::testing
