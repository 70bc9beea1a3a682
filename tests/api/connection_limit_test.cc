// The per-client connection limit through a real corrald: a client address with
// --max-connections-per-client connections open gets a 429 too-many-connections on the next one,
// which is then closed; other addresses are not affected; a connection that ends gives its place
// back; 0 means no limit. Loopback addresses other than 127.0.0.1 (127.0.0.2, 127.0.0.3) stand
// for other clients: they reach corrald's 127.0.0.1 without leaving the machine.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "api/corrald_process.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Metrics are read from an address of their own, so that reading one never counts against the
// addresses under test.
constexpr const char* kMetricsReader = "127.0.0.3";

TEST(PerClientConnections, TheConnectionPastTheLimitIsRefusedAndClosed) {
  CorraldProcess corrald({"--max-connections-per-client", "3"});
  std::vector<HttpClient> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(corrald.client());
    auto health = open.back().request(http::verb::get, "/healthz");
    ASSERT_EQ(health.result_int(), 200) << "connection " << i << ": " << health.body();
  }
  HttpClient fourth = corrald.client();
  auto refused = fourth.request(http::verb::get, "/v1/tenants");
  EXPECT_EQ(refused.result_int(), 429) << refused.body();
  EXPECT_EQ(refused["Retry-After"], "1");
  EXPECT_FALSE(refused.keep_alive()) << "the refused connection is closed";
  auto problem = json::parse(refused.body());
  EXPECT_EQ(problem["type"], "urn:corral:problem:too-many-connections");
  std::string detail = problem["detail"];
  EXPECT_NE(detail.find("127.0.0.1"), std::string::npos) << detail;
  EXPECT_NE(detail.find("--max-connections-per-client 3"), std::string::npos) << detail;

  // The three admitted connections still serve requests.
  for (auto& client : open) {
    EXPECT_EQ(client.request(http::verb::get, "/v1/tenants").result_int(), 200);
  }
  EXPECT_EQ(corrald.metric("corral_connection_refusals_total", kMetricsReader), 1);

  // The refusal is in the access log with its route and status.
  bool logged = false;
  for (const auto& line : corrald.log_lines_with_requests(8)) {
    if (line.value("msg", "") == "request" && line.value("status", 0) == 429 &&
        line.value("route", "") == "/v1/tenants") {
      logged = true;
    }
  }
  EXPECT_TRUE(logged) << "no access-log line for the refused connection";
}

TEST(PerClientConnections, OtherAddressesAreCountedApart) {
  CorraldProcess corrald({"--max-connections-per-client", "1"});
  HttpClient first = corrald.client();
  ASSERT_EQ(first.request(http::verb::get, "/healthz").result_int(), 200);
  EXPECT_EQ(corrald.client().request(http::verb::get, "/healthz").result_int(), 429);
  HttpClient elsewhere(corrald.host(), corrald.port(), corrald.admin_token(), "127.0.0.2");
  auto answer = elsewhere.request(http::verb::get, "/v1/tenants");
  EXPECT_EQ(answer.result_int(), 200)
      << "another address has its own connection: " << answer.body();
}

TEST(PerClientConnections, AClosedConnectionGivesItsPlaceBack) {
  CorraldProcess corrald({"--max-connections-per-client", "2"});
  std::optional<HttpClient> first = corrald.client();
  HttpClient second = corrald.client();
  ASSERT_EQ(first->request(http::verb::get, "/healthz").result_int(), 200);
  ASSERT_EQ(second.request(http::verb::get, "/healthz").result_int(), 200);
  EXPECT_EQ(corrald.client().request(http::verb::get, "/healthz").result_int(), 429);
  first.reset();  // closes it; corrald notices on its next read
  auto deadline = Clock::now() + 10s;
  int status = 0;
  while (Clock::now() < deadline) {
    status = corrald.client().request(http::verb::get, "/healthz").result_int();
    if (status == 200) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(status, 200) << "the closed connection's place was never given back";
}

TEST(PerClientConnections, ZeroMeansNoLimit) {
  CorraldProcess corrald({"--max-connections-per-client", "0"});
  std::vector<HttpClient> open;
  for (int i = 0; i < 300; ++i) {  // past the default of 256
    open.push_back(corrald.client());
    ASSERT_EQ(open.back().request(http::verb::get, "/healthz").result_int(), 200) << i;
  }
  EXPECT_EQ(corrald.metric("corral_connection_refusals_total", kMetricsReader), 0);
}

TEST(PerClientConnections, TheDefaultIsTwoHundredAndFiftySix) {
  CorraldProcess corrald;
  std::vector<HttpClient> open;
  for (int i = 0; i < 256; ++i) {
    open.push_back(corrald.client());
    ASSERT_EQ(open.back().request(http::verb::get, "/healthz").result_int(), 200) << i;
  }
  EXPECT_EQ(corrald.client().request(http::verb::get, "/healthz").result_int(), 429);
}

TEST(PerClientConnections, ABadValueIsRefusedAtStart) {
  try {
    CorraldProcess corrald({"--max-connections-per-client", "-1"});
    FAIL() << "corrald started with --max-connections-per-client -1";
  } catch (const std::runtime_error& refused) {
    std::string what = refused.what();
    EXPECT_NE(what.find("--max-connections-per-client: Value -1 not in range"), std::string::npos)
        << what;
  }
}

}  // namespace
}  // namespace corral::testing
