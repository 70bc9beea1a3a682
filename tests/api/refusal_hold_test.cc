// The refusal hold through a real corrald: after a 429 or 503 with Retry-After, the same token
// sending the same request again, on that connection or any other, waits until
// min(Retry-After, --refusal-hold-ms) has passed, so a client that opens a new connection per
// request is paced as one that reuses its connection; other tokens, tenants or requests are
// served at once; --refusal-hold-ms 0 turns it off; stopping ends a hold at once.
// The only timings asserted are lower bounds set by corrald's own hold, or bounds many times
// larger than the work measured, so a slow machine cannot fail them.
#include <gtest/gtest.h>

#include <boost/beast/http/write.hpp>
#include <chrono>
#include <thread>
#include <utility>

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

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Writes a request on `client`'s connection without waiting for the answer.
void write_run(HttpClient& client) {
  http::request<http::string_body> message(http::verb::post, "/v1/run", 11);
  message.set(http::field::host, "127.0.0.1");
  message.set(http::field::authorization, "Bearer " + client.token);
  message.set(http::field::content_type, "application/json");
  message.body() = kRun.dump();
  message.prepare_payload();
  http::write(client.socket(), message);
}

// Sets the policy above, spends the playground's burst, and has the next run refused on `client`'s
// connection. Returns when that refused request was sent: corrald's hold starts later, so a hold
// measured from here is never shorter than corrald's.
Clock::time_point refused_run(HttpClient& client) {
  auto policy = client.request(http::verb::put, "/v1/policy", json{{"document", kPolicy}}.dump());
  EXPECT_EQ(policy.result_int(), 201) << policy.body();
  auto first = client.post_json(kRun);
  EXPECT_EQ(first.result_int(), 200) << first.body();
  auto sent = Clock::now();
  auto refused = client.post_json(kRun);
  EXPECT_EQ(refused.result_int(), 429) << refused.body();
  EXPECT_TRUE(refused.keep_alive());
  EXPECT_GE(std::stoi(std::string(refused["Retry-After"])), 90)
      << "the policy allows one run per 100 s";
  return sent;
}

TEST(RefusalHold, TheSameTokenWaitsOutTheHoldOnAnyConnection) {
  CorraldProcess corrald({"--refusal-hold-ms", "3000"});
  HttpClient held = corrald.client();
  auto refused_at = refused_run(held);
  write_run(held);  // asked again at once, ignoring Retry-After
  // And again on a new connection, as a client that opens one per request would.
  HttpClient fresh = corrald.client();
  write_run(fresh);

  // The same token asking for another tenant, on yet another connection, is not held (the tenant
  // does not exist: 404).
  HttpClient other = corrald.client();
  auto other_tenant = other.request(http::verb::get, "/v1/tenants/globex/scripts");
  EXPECT_EQ(other_tenant.result_int(), 404) << other_tenant.body();
  // Nor is another request of the same token: a read after a refused run.
  auto read = other.request(http::verb::get, "/v1/tenants");
  EXPECT_EQ(read.result_int(), 200) << read.body();
  double other_answered = seconds_since(refused_at);

  auto after_hold = held.read_response();
  double held_answered = seconds_since(refused_at);
  auto fresh_after_hold = fresh.read_response();
  double fresh_answered = seconds_since(refused_at);
  EXPECT_EQ(after_hold.result_int(), 429) << after_hold.body();
  EXPECT_TRUE(after_hold.keep_alive()) << "the hold keeps the connection";
  EXPECT_EQ(fresh_after_hold.result_int(), 429) << fresh_after_hold.body();
  EXPECT_GE(held_answered, 3.0) << "answered before --refusal-hold-ms 3000 had passed";
  EXPECT_GE(fresh_answered, 3.0) << "a new connection got around the hold";
  EXPECT_LT(other_answered, held_answered) << "another tenant's request waited for the hold";
  EXPECT_EQ(corrald.metric("corral_refusal_holds_total"), 2);
}

// A client that ignores Retry-After and opens a new connection for every request gets one answer
// per hold: each refusal starts the next hold, which the next connection waits out.
TEST(RefusalHold, ANewConnectionPerRequestIsPacedToOneAnswerPerHold) {
  CorraldProcess corrald({"--refusal-hold-ms", "500"});
  HttpClient first = corrald.client();
  auto refused_at = refused_run(first);
  constexpr int kFresh = 4;
  for (int i = 0; i < kFresh; ++i) {
    auto answer = corrald.client().post_json(kRun);
    EXPECT_EQ(answer.result_int(), 429) << answer.body();
  }
  EXPECT_GE(seconds_since(refused_at), kFresh * 0.5)
      << kFresh << " requests on new connections within " << kFresh << " holds of 500 ms";
  EXPECT_EQ(corrald.metric("corral_refusal_holds_total"), kFresh);
}

// A proxy may carry many clients over one upstream connection: a refusal of one token or tenant
// must not hold the others' requests that follow on it.
TEST(RefusalHold, OtherTokensAndTenantsOnTheRefusedConnectionAreServedAtOnce) {
  CorraldProcess corrald({"--refusal-hold-ms", "60000"});
  HttpClient shared = corrald.client();
  auto refused_at = refused_run(shared);
  // The same token, another tenant's queue (the tenant does not exist: 404, at once).
  auto other_tenant = shared.request(http::verb::get, "/v1/tenants/globex/scripts");
  EXPECT_EQ(other_tenant.result_int(), 404) << other_tenant.body();
  // No token at all.
  shared.token.clear();
  auto anonymous = shared.request(http::verb::get, "/v1/tenants");
  EXPECT_EQ(anonymous.result_int(), 401) << anonymous.body();
  // A 60 s hold would have shown; both answers take milliseconds.
  EXPECT_LT(seconds_since(refused_at), 30.0);
  EXPECT_EQ(corrald.metric("corral_refusal_holds_total"), 0);
}

TEST(RefusalHold, ZeroHandlesTheNextRequestAtOnce) {
  CorraldProcess corrald({"--refusal-hold-ms", "0"});
  HttpClient client = corrald.client();
  auto refused_at = refused_run(client);
  auto again = client.post_json(kRun);
  EXPECT_EQ(again.result_int(), 429) << again.body();
  // A hold would have taken the default 1 s at least, or Retry-After (90 s or more).
  EXPECT_LT(seconds_since(refused_at), 30.0);
  EXPECT_EQ(corrald.metric("corral_refusal_holds_total"), 0);
}

TEST(RefusalHold, StoppingEndsAHoldAndAnswersTheHeldRequest) {
  CorraldProcess corrald({"--refusal-hold-ms", "60000"});
  HttpClient held = corrald.client();
  refused_run(held);
  write_run(held);
  auto deadline = Clock::now() + 20s;
  while (corrald.metric("corral_refusal_holds_total") != 1) {
    ASSERT_LT(Clock::now(), deadline) << "the second request was never held";
    std::this_thread::sleep_for(5ms);
  }
  auto stopping_at = Clock::now();
  EXPECT_EQ(corrald.terminate_and_wait(), 0);
  // The hold (60 s) did not keep corrald from exiting.
  EXPECT_LT(seconds_since(stopping_at), 30.0);
  auto answer = held.read_response();
  EXPECT_EQ(answer.result_int(), 429) << answer.body();
  EXPECT_FALSE(answer.keep_alive()) << "a stopping corrald closes the connection after answering";
}

// Denials a client can repeat at will (bad tokens, other tenants' paths, role refusals) are
// paced per client: past --denials-per-client-per-minute, each answer waits until the budget
// allows (at most --refusal-hold-ms), whichever token, path or connection the client uses; the
// same client's valid requests are not held. Counted by corrald's own metric, not timed.
TEST(RefusalHold, ABudgetOfDenialsPerClientPacesFloodsOfBadTokensAndProbes) {
  CorraldProcess corrald({"--denials-per-client-per-minute", "5", "--refusal-hold-ms", "100"});
  HttpClient admin = corrald.client();
  ASSERT_EQ(admin.request(http::verb::post, "/v1/tenants", R"({"name":"acme"})").result_int(), 201);
  for (int i = 0; i < 12; ++i) {
    HttpClient stranger(corrald.host(), corrald.port(),
                        i % 2 ? "" : "corral_" + std::string(63, 'a') + std::to_string(i % 10));
    auto refused = stranger.request(http::verb::get, "/v1/tenants/acme/scripts");
    ASSERT_EQ(refused.result_int(), 401) << refused.body();
  }
  double held = corrald.metric("corral_refusal_holds_total");
  EXPECT_GE(held, 7) << "12 denials with a budget of 5 were not paced";
  // The client's own valid requests are answered without a hold.
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(admin.request(http::verb::get, "/v1/tenants").result_int(), 200);
  EXPECT_EQ(corrald.metric("corral_refusal_holds_total"), held);
}

}  // namespace
}  // namespace corral::testing
