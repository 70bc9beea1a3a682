// The refusal hold through a real corrald: after a 429 or 503 with Retry-After, the connection's
// next request is read only after min(Retry-After, --refusal-hold-ms), while other connections
// are served at once; --refusal-hold-ms 0 turns it off; stopping closes a held connection at once.
// The only timings asserted are lower bounds set by corrald's own hold, or bounds many times
// larger than the work measured, so a slow machine cannot fail them.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "api/corrald_process.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The playground tenant (admins' POST /v1/run) may run once, then one run per 100 s: the second
// run is refused with Retry-After 100 (or a little less, rounded up).
constexpr const char* kPolicy = R"(tenants:
  playground:
    quotas:
      rate_per_second: 0.01
      burst: 1
)";

const json kRun = {{"source", "function handle(input) return input end"}, {"input", {{"n", 1}}}};

double metric(const CorraldProcess& corrald, const std::string& series) {
  HttpClient client(corrald.host(), corrald.port());
  std::istringstream lines(client.request(http::verb::get, "/metrics").body());
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Sets the policy above, spends the playground's burst, and returns the refusal that follows on
// `client`'s connection.
http::response<http::string_body> refused_run(HttpClient& client) {
  auto policy = client.request(http::verb::put, "/v1/policy", json{{"document", kPolicy}}.dump());
  EXPECT_EQ(policy.result_int(), 201) << policy.body();
  auto first = client.post_json(kRun);
  EXPECT_EQ(first.result_int(), 200) << first.body();
  auto refused = client.post_json(kRun);
  EXPECT_EQ(refused.result_int(), 429) << refused.body();
  EXPECT_TRUE(refused.keep_alive());
  EXPECT_GE(std::stoi(std::string(refused["Retry-After"])), 90)
      << "the policy allows one run per 100 s";
  return refused;
}

TEST(RefusalHold, TheRefusedConnectionWaitsOutTheHoldWhileOthersAreServedAtOnce) {
  CorraldProcess corrald({"--refusal-hold-ms", "3000"});
  HttpClient held = corrald.client();
  refused_run(held);
  auto refused_at = Clock::now();

  // The next request on the refused connection is written now but read only after the hold.
  http::request<http::string_body> health(http::verb::get, "/healthz", 11);
  health.set(http::field::host, "127.0.0.1");
  http::write(held.socket(), health);

  // Meanwhile a new connection is served, and refused again, without waiting for that hold.
  HttpClient other = corrald.client();
  auto other_health = other.request(http::verb::get, "/healthz");
  EXPECT_EQ(other_health.result_int(), 200);
  auto other_refusal = other.post_json(kRun);
  EXPECT_EQ(other_refusal.result_int(), 429) << other_refusal.body();
  double other_answered = seconds_since(refused_at);

  auto after_hold = held.read_response();
  double held_answered = seconds_since(refused_at);
  EXPECT_EQ(after_hold.result_int(), 200) << after_hold.body();
  EXPECT_TRUE(after_hold.keep_alive()) << "the hold keeps the connection";
  EXPECT_GE(held_answered, 3.0) << "answered before --refusal-hold-ms 3000 had passed";
  EXPECT_LT(other_answered, held_answered) << "the other connection waited for the hold";

  // The connection is served normally once its hold is over.
  EXPECT_EQ(held.request(http::verb::get, "/healthz").result_int(), 200);
  EXPECT_EQ(metric(corrald, "corral_refusal_holds_total"), 2);
}

TEST(RefusalHold, ZeroReadsTheNextRequestAtOnce) {
  CorraldProcess corrald({"--refusal-hold-ms", "0"});
  HttpClient client = corrald.client();
  refused_run(client);
  auto refused_at = Clock::now();
  auto again = client.post_json(kRun);
  EXPECT_EQ(again.result_int(), 429) << again.body();
  // A hold would have taken the default 1 s at least, or Retry-After (90 s or more).
  EXPECT_LT(seconds_since(refused_at), 30.0);
  EXPECT_EQ(metric(corrald, "corral_refusal_holds_total"), 0);
}

TEST(RefusalHold, StoppingClosesAHeldConnectionAtOnce) {
  CorraldProcess corrald({"--refusal-hold-ms", "60000"});
  HttpClient held = corrald.client();
  refused_run(held);
  auto stopping_at = Clock::now();
  EXPECT_EQ(corrald.terminate_and_wait(), 0);
  // The hold (60 s) did not keep corrald from exiting.
  EXPECT_LT(seconds_since(stopping_at), 30.0);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> nothing;
  boost::beast::error_code error;
  http::read(held.socket(), buffer, nothing, error);
  EXPECT_TRUE(error) << "the held connection was left open";
}

}  // namespace
}  // namespace corral::testing
