// Several corrald nodes on one PostgreSQL (docs/operations.md, "Running several nodes"), each a
// real corrald with a data directory of its own, sharing the store the test's own server holds
// (support/postgres_server.h) and the sealing key: what one node writes, another serves, and a
// node killed with SIGKILL mid-way through a batch of jobs costs none of them.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/beast/http/write.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <thread>

#include "registry/api_client.h"
#include "support/postgres_server.h"

namespace corral::testing {
namespace {

using nlohmann::json;

class SeveralNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = PostgresServer::unavailable()) GTEST_SKIP() << *why;
    server_.emplace();
    server_->create_database("corral");
  }

  // A node on the shared store; the first makes the sealing key, the others are given a copy.
  CorraldProcess& start_node(const std::string& name, std::vector<std::string> arguments = {}) {
    arguments.insert(arguments.end(), {"--store", server_->url("corral"), "--node-name", name});
    if (nodes_.empty()) {
      nodes_.push_back(std::make_unique<CorraldProcess>(arguments));
    } else {
      fs::path directory = nodes_.front()->directory().string() + "-" + name;
      fs::remove_all(directory);
      fs::create_directories(directory / "data");
      // The admin token is the first node's (the store has it), kept here for the test's client.
      for (const char* file : {"master.key", "admin.token"}) {
        fs::copy_file(nodes_.front()->data_dir() / file, directory / "data" / file);
      }
      fs::permissions(directory / "data", fs::perms::owner_all, fs::perm_options::replace);
      directories_.push_back(directory);
      nodes_.push_back(std::make_unique<CorraldProcess>(arguments, directory));
    }
    return *nodes_.back();
  }

  void TearDown() override {
    nodes_.clear();
    for (const auto& directory : directories_) fs::remove_all(directory);
  }

  std::optional<PostgresServer> server_;
  std::vector<std::unique_ptr<CorraldProcess>> nodes_;
  std::vector<fs::path> directories_;
};

TEST_F(SeveralNodes, WhatOneNodeWritesAnotherServes) {
  ApiClient a(start_node("node-a"));
  ApiClient b(start_node("node-b"));
  // Made on A: the tenant, its tokens, a version approved and aliased.
  auto tokens = a.tenant_with_tokens("acme");
  int64_t version = a.publish(tokens["publisher"], "acme", "double", kDoubler);
  a.approve(tokens["reviewer"], "acme", "double", version);
  a.set_alias(tokens["reviewer"], "acme", "double", "live", version);
  // Served by B, with A's tokens.
  Answer run =
      b.post(tokens["invoker"], "/v1/tenants/acme/scripts/double/invoke", {{"input", {{"n", 21}}}});
  ASSERT_EQ(run.status, 200) << run;
  EXPECT_EQ(run.body["output"]["doubled"], 42);
  // A secret put through B is sealed with the shared key and listed by A.
  Answer put = b.put(b.admin(), "/v1/tenants/acme/secrets/stripe", {{"value", "sk_test_1"}});
  EXPECT_TRUE(put.status == 200 || put.status == 201) << put;
  Answer listed = a.get(a.admin(), "/v1/tenants/acme/secrets");
  EXPECT_NE(listed.raw.find("stripe"), std::string::npos) << listed;
  // One audit chain, whichever node appended: it verifies from either.
  for (ApiClient* node : {&a, &b}) {
    Answer verified = node->get(node->admin(), "/v1/audit/verify");
    EXPECT_EQ(verified.status, 200) << verified;
    EXPECT_EQ(verified.body.value("ok", false), true) << verified;
  }
}

// Polls `check` for up to `limit`; how long it took to hold, or nullopt.
std::optional<std::chrono::milliseconds> within(std::chrono::milliseconds limit,
                                                const std::function<bool()>& check) {
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < limit) {
    if (check()) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

TEST_F(SeveralNodes, ARevocationAndAPolicyMadeOnOneNodeAreInForceOnTheOtherWithinASecond) {
  // The default token cache (5 s) on both: the node that did not revoke must learn of it.
  ApiClient a(start_node("node-a"));
  ApiClient b(start_node("node-b"));
  a.tenant_with_tokens("acme");
  Answer made =
      a.post(a.admin(), "/v1/tenants/acme/tokens", {{"role", "auditor"}, {"subject", "eve"}});
  ASSERT_EQ(made.status, 201) << made;
  std::string secret = made.body.value("token", ""), id = made.body.value("id", "");
  ASSERT_EQ(b.get(secret, "/v1/tenants/acme/scripts").status, 200) << "cached by node-b now";

  Answer revoked = a.del(a.admin(), "/v1/tenants/acme/tokens/" + id);
  ASSERT_EQ(revoked.status, 200) << revoked;
  auto refused = within(std::chrono::seconds(1),
                        [&] { return b.get(secret, "/v1/tenants/acme/scripts").status == 401; });
  ASSERT_TRUE(refused) << "node-b still took the token a second after node-a revoked it";
  std::printf("node-b refused the revoked token after %lld ms\n",
              static_cast<long long>(refused->count()));

  int64_t before = b.get(b.admin(), "/v1/policy").body.value("version", int64_t{-1});
  Answer put = a.put(a.admin(), "/v1/policy",
                     {{"document", "tenants:\n  acme:\n    quotas: {rate_per_second: 7}\n"}});
  ASSERT_EQ(put.status, 201) << put;
  int64_t stored = put.body.value("version", int64_t{0});
  ASSERT_GT(stored, before);
  auto in_force = within(std::chrono::seconds(1), [&] {
    return b.get(b.admin(), "/v1/policy").body.value("version", int64_t{-1}) == stored;
  });
  ASSERT_TRUE(in_force) << "node-b's policy is not node-a's new version a second later";
  std::printf("node-b put policy version %lld in force after %lld ms\n",
              static_cast<long long>(stored), static_cast<long long>(in_force->count()));
}

TEST_F(SeveralNodes, ANodeKilledMidwayCostsNoJob) {
  // Short leases, so that the dead node's jobs go to the other within seconds.
  CorraldProcess& doomed = start_node("node-a", {"--job-lease-seconds", "3"});
  ApiClient a(doomed);
  ApiClient b(start_node("node-b", {"--job-lease-seconds", "3"}));
  auto tokens = a.tenant_with_tokens("acme");
  // A run long enough that node A is holding some when it dies.
  int64_t version = a.publish(tokens["publisher"], "acme", "slow",
                              "function handle(input) local t = os.clock() "
                              "while os.clock() - t < 0.2 do end return {n = input.n} end");
  a.approve(tokens["reviewer"], "acme", "slow", version);
  a.set_alias(tokens["reviewer"], "acme", "slow", "live", version);

  constexpr int kJobs = 24;
  std::vector<std::string> ids;
  for (int n = 0; n < kJobs; ++n) {
    CorraldProcess& node = *nodes_[n % 2];
    HttpClient client(node.host(), node.port());
    http::request<http::string_body> message(http::verb::post, "/v1/tenants/acme/scripts/slow/jobs",
                                             11);
    message.set(http::field::host, "127.0.0.1");
    message.set(http::field::authorization, "Bearer " + tokens["invoker"]);
    message.set(http::field::content_type, "application/json");
    message.set("Idempotency-Key", "job-" + std::to_string(n));
    message.body() = json{{"input", {{"n", n}}}}.dump();
    message.prepare_payload();
    http::write(client.socket(), message);
    auto response = client.read_response();
    ASSERT_EQ(response.result_int(), 202u) << response.body();
    ids.push_back(json::parse(response.body()).value("id", ""));
  }
  // Kill A once it holds a job.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool a_holds_one = false;
  while (!a_holds_one && std::chrono::steady_clock::now() < deadline) {
    for (const auto& id : ids) {
      Answer job = b.get(tokens["invoker"], "/v1/tenants/acme/scripts/slow/jobs/" + id);
      if (job.body.value("state", "") == "running" && job.body.value("node", json()) == "node-a") {
        a_holds_one = true;
        break;
      }
    }
  }
  ASSERT_TRUE(a_holds_one) << "node-a never ran a job";
  ASSERT_EQ(kill(doomed.pid(), SIGKILL), 0);
  std::printf("killed node-a (pid %d) while it held a job\n", doomed.pid());
  doomed.wait();

  // Every job ends succeeded, through B, with its own input's result.
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::map<std::string, json> finished;
  while (finished.size() < ids.size() && std::chrono::steady_clock::now() < deadline) {
    for (const auto& id : ids) {
      if (finished.contains(id)) continue;
      Answer job = b.get(tokens["invoker"], "/v1/tenants/acme/scripts/slow/jobs/" + id);
      std::string state = job.body.value("state", "");
      if (state == "succeeded" || state == "failed" || state == "cancelled")
        finished[id] = job.body;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(finished.size(), ids.size()) << "jobs left unfinished after node-a died";
  int handed_over = 0;
  for (size_t n = 0; n < ids.size(); ++n) {
    const json& job = finished[ids[n]];
    EXPECT_EQ(job.value("state", ""), "succeeded") << job.dump();
    EXPECT_EQ(job["result"]["output"]["n"], static_cast<int>(n)) << job.dump();
    if (job.value("attempts", 1) > 1) ++handed_over;
  }
  std::printf("%d of %d jobs were handed from node-a to node-b\n", handed_over, kJobs);
  EXPECT_GE(handed_over, 1) << "the job node-a held was not run again";
}

TEST_F(SeveralNodes, AStoreThatGoesAwayIsAGapNotALoss) {
  ApiClient a(start_node("node-a", {"--token-cache-ms", "0"}));
  Answer before = a.post(a.admin(), "/v1/tenants", {{"name", "before"}});
  ASSERT_EQ(before.status, 201) << before;

  server_->stop();
  Answer during = a.post(a.admin(), "/v1/tenants", {{"name", "during"}});
  EXPECT_EQ(during.status, 503) << during;
  EXPECT_EQ(during.body.value("type", ""), "urn:corral:problem:storage-failing") << during;
  EXPECT_EQ(std::string(during.response["Retry-After"]), "30") << during;
  EXPECT_EQ(during.raw.find("PQ"), std::string::npos) << "libpq's words reached a client";

  server_->start();
  // The node connects again by itself: the first request after the restart may still meet the
  // old connection, the next ones are served.
  Answer after;
  for (int attempt = 0; attempt < 50; ++attempt) {
    after = a.post(a.admin(), "/v1/tenants", {{"name", "after"}});
    if (after.status == 201) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(after.status, 201) << after;
  Answer listed = a.get(a.admin(), "/v1/tenants");
  EXPECT_NE(listed.raw.find("\"before\""), std::string::npos) << "what was acknowledged is kept";
  EXPECT_EQ(listed.raw.find("\"during\""), std::string::npos) << "what was refused was not made";
}

// corrald's exit status and what it wrote to stderr, started with `arguments` on a fresh data
// directory.
std::pair<int, std::string> start_corrald(const std::string& arguments) {
  fs::path data = fs::temp_directory_path() / ("corrald-store-flag-" + std::to_string(getpid()));
  std::string command = std::string(CORRALD_PATH) + " --listen 127.0.0.1:0 --data-dir " +
                        data.string() + " " + arguments + " 2>&1 >/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  int status = pclose(pipe);
  fs::remove_all(data);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(StoreFlag, AStoreCorraldCannotUseIsRefusedAtStartWithoutItsPassword) {
  auto [unknown_status, unknown] = start_corrald("--store mysql://db/corral");
  EXPECT_EQ(unknown_status, 1);
  EXPECT_NE(unknown.find("--store must be sqlite:PATH or a postgresql:// URI"), std::string::npos)
      << unknown;
  auto [down_status, down] =
      start_corrald("--store 'postgresql://corral:s3cret@/corral?host=/nonexistent'");
  EXPECT_EQ(down_status, 1);
  EXPECT_NE(down.find("cannot connect to PostgreSQL at /nonexistent/corral"), std::string::npos)
      << down;
  EXPECT_EQ(down.find("s3cret"), std::string::npos) << "the password was printed: " << down;
}

}  // namespace
}  // namespace corral::testing
