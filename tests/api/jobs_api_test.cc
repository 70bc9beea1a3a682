// Jobs and webhooks through a real corrald: Idempotency-Key, states and results, cancellation,
// the queued_jobs quota, retries of crashed runs (a worker made to crash by the test) but never of
// script errors, and webhooks signed with the tenant's secret, retried and left dead, received by
// a loopback server the test starts.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/beast/http/write.hpp>
#include <chrono>
#include <fstream>
#include <regex>
#include <thread>

#include "fake_worker.h"
#include "jobs/webhook_receiver.h"
#include "registry/api_client.h"
#include "support/hmac.h"

namespace corral::testing {
namespace {

using nlohmann::json;

constexpr const char* kFailing = "function handle(input, ctx) error('no such order') end";

// A corrald with tenant acme, a token per role, the policy given, and script "double" (approved,
// alias live).
class JobsApi {
 public:
  explicit JobsApi(const std::string& policy, std::vector<std::string> arguments = {})
      : corrald_(std::move(arguments)), api_(corrald_) {
    Answer put = api_.put(api_.admin(), "/v1/policy", {{"document", policy}});
    EXPECT_EQ(put.status, 201) << put;
    tokens_ = api_.tenant_with_tokens("acme");
    publish("double", kDoubler);
  }

  int64_t publish(const std::string& script, const std::string& source) {
    int64_t version = api_.publish(tokens_["publisher"], "acme", script, source);
    api_.approve(tokens_["reviewer"], "acme", script, version);
    api_.set_alias(tokens_["reviewer"], "acme", script, "live", version);
    return version;
  }

  // POST …/jobs with an Idempotency-Key (none when key is empty).
  Answer submit(const std::string& script, const std::string& key, const json& body,
                const std::string& query = "") {
    HttpClient client(corrald_.host(), corrald_.port());
    http::request<http::string_body> message(
        http::verb::post, "/v1/tenants/acme/scripts/" + script + "/jobs" + query, 11);
    message.set(http::field::host, "127.0.0.1");
    message.set(http::field::authorization, "Bearer " + tokens_["invoker"]);
    message.set(http::field::content_type, "application/json");
    if (!key.empty()) message.set("Idempotency-Key", key);
    message.body() = body.dump();
    message.prepare_payload();
    http::write(client.socket(), message);
    auto response = client.read_response();
    Answer answer{static_cast<int>(response.result_int()), nullptr, response.body(), response};
    answer.body = json::parse(response.body(), nullptr, false);
    return answer;
  }

  Answer get(const std::string& target, const std::string& role = "invoker") {
    return api_.get(tokens_[role], target);
  }

  // Polls the job until it is final; its last answer.
  Answer wait_final(const std::string& script, const std::string& id,
                    std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    Answer answer;
    while (std::chrono::steady_clock::now() < deadline) {
      answer = get("/v1/tenants/acme/scripts/" + script + "/jobs/" + id);
      std::string state = answer.body.value("state", "");
      if (state == "succeeded" || state == "failed" || state == "cancelled") return answer;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "job " << id << " did not finish: " << answer;
    return answer;
  }

  CorraldProcess corrald_;
  ApiClient api_;
  std::map<std::string, std::string> tokens_;
};

std::string header(const Answer& answer, const char* name) {
  auto found = answer.response.find(name);
  return found == answer.response.end() ? "" : std::string(found->value());
}

constexpr const char* kQuickPolicy = R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
)";

TEST(JobsApi, TheSameKeyAndBodyIsTheSameJobAndItRunsToItsResult) {
  JobsApi jobs(kQuickPolicy);
  Answer accepted = jobs.submit("double", "order-1", {{"input", {{"n", 21}}}});
  ASSERT_EQ(accepted.status, 202) << accepted;
  std::string id = accepted.body["id"];
  EXPECT_EQ(accepted.body["state"], "queued");
  EXPECT_EQ(accepted.body["version"], 1);
  EXPECT_EQ(accepted.body["alias"], "live");
  EXPECT_EQ(header(accepted, "Location"), "/v1/tenants/acme/scripts/double/jobs/" + id);

  Answer again = jobs.submit("double", "order-1", {{"input", {{"n", 21}}}});
  ASSERT_EQ(again.status, 200) << again;
  EXPECT_EQ(again.body["id"], id);

  Answer other = jobs.submit("double", "order-1", {{"input", {{"n", 22}}}});
  ASSERT_EQ(other.status, 409) << other;
  EXPECT_EQ(other.body["type"], "urn:corral:problem:idempotency-key-reused");
  EXPECT_EQ(other.body["idempotency_key"], "order-1");
  EXPECT_EQ(other.body["job"], id);
  EXPECT_NE(other.body["detail"].get<std::string>().find("order-1"), std::string::npos);

  Answer done = jobs.wait_final("double", id);
  EXPECT_EQ(done.body["state"], "succeeded") << done;
  EXPECT_EQ(done.body["attempts"], 1);
  EXPECT_EQ(done.body["outcome"], "ok");
  EXPECT_EQ(done.body["result"]["output"]["doubled"], 42);
  EXPECT_EQ(done.body["result"]["outcome"], "ok");
  EXPECT_TRUE(done.body["finished_at"].is_string());

  Answer listed = jobs.get("/v1/tenants/acme/scripts/double/jobs", "auditor");
  ASSERT_EQ(listed.status, 200) << listed;
  ASSERT_EQ(listed.body["jobs"].size(), 1u);
  EXPECT_EQ(listed.body["jobs"][0]["id"], id);
  Answer audit = jobs.api_.get(jobs.api_.admin(), "/v1/audit?tenant=acme&action=job.submit");
  EXPECT_EQ(audit.body["entries"].size(), 1u) << audit;
  // The gauge follows the store about once a second.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (jobs.corrald_.metric(R"(corral_jobs{state="succeeded"})") != 1 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(jobs.corrald_.metric(R"(corral_jobs{state="succeeded"})"), 1);
  EXPECT_EQ(jobs.corrald_.metric(R"(corral_job_runs_total{result="succeeded"})"), 1);
}

// --job-retention-seconds: a corrald starting after the retention has passed forgets the job, its
// result and its key, just after it starts (and every minute after that; tests/jobs covers the
// batches).
TEST(JobsApi, AFinishedJobIsForgottenPastItsRetentionAndItsKeyIsFreeAgain) {
  JobsApi jobs(kQuickPolicy, {"--job-retention-seconds", "1"});
  Answer accepted = jobs.submit("double", "order-9", {{"input", {{"n", 4}}}});
  ASSERT_EQ(accepted.status, 202) << accepted;
  std::string id = accepted.body["id"];
  EXPECT_EQ(jobs.wait_final("double", id).body["state"], "succeeded");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_EQ(jobs.corrald_.terminate_and_wait(), 0);

  CorraldProcess restarted({"--job-retention-seconds", "1"}, jobs.corrald_.directory());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (restarted.metric("corral_jobs_pruned_total") != 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the job was never pruned";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  HttpClient invoker(restarted.host(), restarted.port(), jobs.tokens_["invoker"]);
  auto gone = invoker.request(http::verb::get, "/v1/tenants/acme/scripts/double/jobs/" + id);
  EXPECT_EQ(gone.result_int(), 404) << gone.body();
  bool logged = false;
  for (const auto& line : restarted.log_lines())
    logged |= line.value("msg", "") == "forgot jobs that ended before the retention";
  EXPECT_TRUE(logged);

  auto again = invoker.request(http::verb::post, "/v1/tenants/acme/scripts/double/jobs",
                               json{{"input", {{"n", 4}}}}.dump(), "application/json",
                               {{"Idempotency-Key", "order-9"}});
  ASSERT_EQ(again.result_int(), 202) << again.body();
  EXPECT_NE(json::parse(again.body())["id"], id);
}

TEST(JobsApi, AMissingOrMalformedKeyIsAClear400) {
  JobsApi jobs(kQuickPolicy);
  Answer missing = jobs.submit("double", "", {{"input", 1}});
  ASSERT_EQ(missing.status, 400) << missing;
  EXPECT_EQ(missing.body["field"], "Idempotency-Key");
  EXPECT_NE(missing.body["detail"].get<std::string>().find("missing"), std::string::npos);
  Answer long_key = jobs.submit("double", std::string(201, 'k'), {{"input", 1}});
  EXPECT_EQ(long_key.status, 400) << long_key;
  Answer unknown = jobs.submit("double", "k", {{"input", 1}, {"limits", {}}});
  EXPECT_EQ(unknown.status, 400) << unknown;
  Answer no_script = jobs.submit("nothing", "k", {{"input", 1}});
  EXPECT_EQ(no_script.status, 404) << no_script;
}

TEST(JobsApi, AScriptErrorFailsOnceAndIsNotRetried) {
  JobsApi jobs(kQuickPolicy);
  jobs.publish("failing", kFailing);
  Answer accepted = jobs.submit("failing", "f-1", {{"input", 1}}, "?version=1");
  ASSERT_EQ(accepted.status, 202) << accepted;
  Answer done = jobs.wait_final("failing", accepted.body["id"]);
  EXPECT_EQ(done.body["state"], "failed");
  EXPECT_EQ(done.body["attempts"], 1);
  EXPECT_EQ(done.body["outcome"], "script_error");
  EXPECT_EQ(done.body["result"]["outcome"], "script_error");
  EXPECT_NE(done.body["error"].get<std::string>().find("no such order"), std::string::npos);
}

// Without runners, jobs stay queued: what a quota and a cancellation act on.
TEST(JobsApi, QueuedJobsCountAgainstTheQuotaAndCanBeCancelledButNotOnceFinal) {
  JobsApi jobs(R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100, queued_jobs: 2}
)",
               {"--job-threads", "0"});
  Answer first = jobs.submit("double", "q-1", {{"input", {{"n", 1}}}});
  ASSERT_EQ(first.status, 202) << first;
  EXPECT_EQ(header(first, "Corral-Quota-Warning"), "");
  Answer second = jobs.submit("double", "q-2", {{"input", {{"n", 2}}}});
  ASSERT_EQ(second.status, 202) << second;
  EXPECT_EQ(header(second, "Corral-Quota-Warning"), "queued_jobs=100%");

  Answer refused = jobs.submit("double", "q-3", {{"input", {{"n", 3}}}});
  ASSERT_EQ(refused.status, 429) << refused;
  EXPECT_EQ(refused.body["type"], "urn:corral:problem:quota-exceeded");
  EXPECT_EQ(refused.body["quota"], "queued_jobs");
  EXPECT_EQ(refused.body["rule"], "tenants.acme.quotas.queued_jobs");
  EXPECT_FALSE(header(refused, "Retry-After").empty());
  EXPECT_TRUE(refused.body["hint"].is_string());

  std::string path = "/v1/tenants/acme/scripts/double/jobs/" + first.body["id"].get<std::string>();
  Answer cancelled = jobs.api_.del(jobs.tokens_["invoker"], path);
  ASSERT_EQ(cancelled.status, 200) << cancelled;
  EXPECT_EQ(cancelled.body["state"], "cancelled");
  Answer again = jobs.api_.del(jobs.tokens_["invoker"], path);
  ASSERT_EQ(again.status, 409) << again;
  EXPECT_EQ(again.body["type"], "urn:corral:problem:job-final");
  EXPECT_EQ(again.body["state"], "cancelled");
  // The cancelled job made room.
  EXPECT_EQ(jobs.submit("double", "q-3", {{"input", {{"n", 3}}}}).status, 202);
  // Another tenant's job is not there, as if it did not exist.
  Answer missing =
      jobs.api_.del(jobs.tokens_["invoker"], "/v1/tenants/acme/scripts/double/jobs/0f");
  EXPECT_EQ(missing.status, 404) << missing;
}

// A worker binary that crashes while the flag file exists (it says it is ready, then exits when
// the invocation comes), that cannot start while the unstartable flag exists (it exits before it
// is ready), and is the real worker otherwise; with no warm workers kept, every run starts one,
// so the flags decide per run.
class CrashingWorker {
 public:
  CrashingWorker() {
    dir_ = fs::temp_directory_path() / ("corral-crashing-worker-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    // Jailed workers run as an unprivileged user: it must reach the flag and the script.
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    std::ofstream(path()) << "#!/bin/sh\n"
                          << "if [ -e " << unstartable_flag().string() << " ]; then exit 3; fi\n"
                          << "if [ -e " << hang_flag().string() << " ]; then\n"
                          << "  " << kSendReadyFrame << "\n"
                          << "  exec cat <&3 >/dev/null\n"
                          << "fi\n"
                          << "if [ -e " << flag().string() << " ]; then\n"
                          << "  " << kSendReadyFrame << "\n"
                          << "  exec head -c 8 <&3\n"
                          << "fi\n"
                          << "exec " << CORRAL_WORKER_PATH << " \"$@\"\n";
    fs::permissions(path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                fs::perms::others_read | fs::perms::others_exec);
  }
  ~CrashingWorker() { fs::remove_all(dir_); }
  fs::path path() const { return dir_ / "worker.sh"; }
  fs::path flag() const { return dir_ / "crash"; }
  fs::path unstartable_flag() const { return dir_ / "unstartable"; }
  // Takes the invocation and never answers, until corrald kills it at the run's timeout.
  fs::path hang_flag() const { return dir_ / "hang"; }
  // corrald with this worker, and no idle or spare worker kept: every run starts a new one.
  std::vector<std::string> corrald_arguments() const {
    return {"--worker",           path().string(),
            "--max-idle-workers", "0",
            "--warm-per-tenant",  "0",
            "--spare-workers",    "0"};
  }
  void crash(bool on) { set(flag(), on); }
  void fail_to_start(bool on) { set(unstartable_flag(), on); }
  void hang(bool on) { set(hang_flag(), on); }

 private:
  static void set(const fs::path& flag, bool on) {
    if (on) {
      std::ofstream(flag) << "1";
    } else {
      fs::remove(flag);
    }
  }
  fs::path dir_;
};

// The review found jobs without a per-tenant bound: finished ones (with their inputs) were kept for
// the whole retention however many a tenant made. quotas.jobs bounds the jobs kept in every state.
TEST(JobsApi, JobsKeptPastTheirQuotaAreRefusedNamingIt) {
  JobsApi jobs(R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100, jobs: 3}
)");
  for (int i = 0; i < 3; ++i) {
    Answer accepted = jobs.submit("double", "k-" + std::to_string(i), {{"input", {{"n", i}}}});
    ASSERT_EQ(accepted.status, 202) << accepted;
    jobs.wait_final("double", accepted.body["id"]);
  }
  Answer refused = jobs.submit("double", "k-3", {{"input", {{"n", 3}}}});
  EXPECT_EQ(refused.status, 429) << refused;
  EXPECT_EQ(refused.body["type"], "urn:corral:problem:storage-quota-exceeded") << refused;
  EXPECT_EQ(refused.body["quota"], "jobs");
  EXPECT_EQ(refused.body["rule"], "tenants.acme.quotas.jobs");
  // The same submission again is still answered with the job it made.
  EXPECT_EQ(jobs.submit("double", "k-0", {{"input", {{"n", 0}}}}).status, 200);
}

// A running job names the corrald that holds its lease (--node-name), as the listening line does;
// once it has ended it names none. The run hangs in its worker until the run's 5 s timeout, while
// the job is seen running, and then fails.
TEST(JobsApi, ARunningJobNamesTheNodeRunningIt) {
  CrashingWorker worker;
  JobsApi jobs(R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
    limits: {timeout_ms: 5000}
    jobs: {max_attempts: 1}
)",
               [&] {
                 auto arguments = worker.corrald_arguments();
                 arguments.insert(arguments.end(), {"--node-name", "eu-west-1a"});
                 return arguments;
               }());
  bool listed = false;
  for (const auto& line : jobs.corrald_.log_lines())
    if (line.value("msg", "") == "listening") listed = line.value("node", "") == "eu-west-1a";
  EXPECT_TRUE(listed) << "the listening line names the node";
  worker.hang(true);
  Answer accepted = jobs.submit("double", "n-1", {{"input", {{"n", 1}}}});
  ASSERT_EQ(accepted.status, 202) << accepted;
  EXPECT_TRUE(accepted.body["node"].is_null()) << accepted;
  std::string id = accepted.body["id"];
  Answer seen;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    seen = jobs.get("/v1/tenants/acme/scripts/double/jobs/" + id);
    if (seen.body.value("state", "") != "queued") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(seen.body["state"], "running") << seen;
  EXPECT_EQ(seen.body["node"], "eu-west-1a") << seen;
  Answer done = jobs.wait_final("double", id);
  EXPECT_EQ(done.body["state"], "failed") << done;
  EXPECT_TRUE(done.body["node"].is_null()) << done;
  worker.hang(false);
}

TEST(JobsApi, CrashedRunsAreRetriedUpToMaxAttemptsAndScriptErrorsNever) {
  CrashingWorker worker;
  JobsApi jobs(R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
    circuit_breaker: {failures: 100}
    jobs: {max_attempts: 3}
)",
               worker.corrald_arguments());
  jobs.publish("failing", kFailing);
  worker.crash(true);
  Answer accepted = jobs.submit("double", "c-1", {{"input", {{"n", 1}}}});
  ASSERT_EQ(accepted.status, 202) << accepted;
  Answer done = jobs.wait_final("double", accepted.body["id"]);
  EXPECT_EQ(done.body["state"], "failed") << done;
  EXPECT_EQ(done.body["attempts"], 3);
  EXPECT_EQ(done.body["outcome"], "crashed");
  EXPECT_NE(done.body["error"].get<std::string>().find("all 3 attempts crashed"), std::string::npos)
      << done;
  EXPECT_EQ(jobs.corrald_.metric("corral_job_retries_total"), 2);

  worker.crash(false);
  Answer ok = jobs.submit("double", "c-2", {{"input", {{"n", 4}}}});
  Answer succeeded = jobs.wait_final("double", ok.body["id"]);
  EXPECT_EQ(succeeded.body["state"], "succeeded") << succeeded;
  EXPECT_EQ(succeeded.body["result"]["output"]["doubled"], 8);
  Answer error = jobs.submit("failing", "c-3", {{"input", 1}});
  Answer failed = jobs.wait_final("failing", error.body["id"]);
  EXPECT_EQ(failed.body["state"], "failed");
  EXPECT_EQ(failed.body["attempts"], 1);
  EXPECT_EQ(jobs.corrald_.metric("corral_job_retries_total"), 2)
      << "a script error is never retried";
}

TEST(JobsApi, ARunWhoseWorkerCannotStartIsQueuedAgainWithoutUsingAnAttempt) {
  CrashingWorker worker;
  // A breaker that opens at the first failure: a failed start must not count as one.
  JobsApi jobs(R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
    circuit_breaker: {failures: 1}
    jobs: {max_attempts: 1}
)",
               worker.corrald_arguments());
  worker.fail_to_start(true);
  Answer accepted = jobs.submit("double", "s-1", {{"input", {{"n", 5}}}});
  ASSERT_EQ(accepted.status, 202) << accepted;
  std::string target =
      "/v1/tenants/acme/scripts/double/jobs/" + accepted.body["id"].get<std::string>();
  Answer waiting;
  auto error_of = [](const Answer& answer) {
    const json& error = answer.body["error"];
    return error.is_string() ? error.get<std::string>() : std::string();
  };
  for (int poll = 0; poll < 1000; ++poll) {
    waiting = jobs.get(target);
    if (error_of(waiting).find("could not start a worker") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(error_of(waiting).find("corrald turned the run away for now"), std::string::npos)
      << waiting;
  EXPECT_EQ(waiting.body["state"], "queued") << waiting;
  EXPECT_EQ(waiting.body["attempts"], 0) << "its only attempt was used: " << waiting;

  worker.fail_to_start(false);
  Answer done = jobs.wait_final("double", accepted.body["id"]);
  EXPECT_EQ(done.body["state"], "succeeded") << done;
  EXPECT_EQ(done.body["result"]["output"]["doubled"], 10);
  EXPECT_EQ(jobs.corrald_.metric("corral_breaker_transitions_total{to=\"open\"}"), 0);
  EXPECT_GE(jobs.corrald_.metric("corral_worker_start_failures_total"), 1);
}

// ---- webhooks

std::string webhook_policy(const WebhookReceiver& receiver) {
  return R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
    jobs: {webhook_attempts: 3, webhook_backoff_ms: 100}
    capabilities:
      http:
        allow: [")" +
         receiver.origin() + R"("]
        allow_private: [127.0.0.1]
  globex: {}
)";
}

TEST(JobsApi, AFinishedJobIsPostedToItsCallbackSignedWithTheTenantsSecret) {
  WebhookReceiver receiver;
  JobsApi jobs(webhook_policy(receiver));
  json body = {{"input", {{"n", 5}}}, {"callback_url", receiver.url("/hooks/orders")}};

  Answer unsigned_job = jobs.submit("double", "w-1", body);
  ASSERT_EQ(unsigned_job.status, 409) << unsigned_job;
  EXPECT_EQ(unsigned_job.body["type"], "urn:corral:problem:webhook-secret-missing");
  EXPECT_NE(unsigned_job.body["hint"].get<std::string>().find("/v1/tenants/acme/webhook-secret"),
            std::string::npos);

  Answer not_admin = jobs.api_.post(jobs.tokens_["publisher"], "/v1/tenants/acme/webhook-secret");
  EXPECT_EQ(not_admin.status, 403) << not_admin;
  Answer rotated = jobs.api_.post(jobs.api_.admin(), "/v1/tenants/acme/webhook-secret");
  ASSERT_EQ(rotated.status, 201) << rotated;
  std::string secret = rotated.body["secret"];

  Answer accepted = jobs.submit("double", "w-1", body);
  ASSERT_EQ(accepted.status, 202) << accepted;
  ASSERT_TRUE(receiver.wait_for(1, std::chrono::seconds(20)));
  auto request = receiver.requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/hooks/orders");
  EXPECT_EQ(request.headers["content-type"], "application/json");
  json job = json::parse(request.body);
  EXPECT_EQ(job["id"], accepted.body["id"]);
  EXPECT_EQ(job["state"], "succeeded");
  EXPECT_EQ(job["result"]["output"]["doubled"], 10);
  std::string signature = request.headers["corral-signature"];
  std::smatch parts;
  ASSERT_TRUE(std::regex_match(signature, parts, std::regex("t=(\\d+),v1=([0-9a-f]{64})")))
      << signature;
  EXPECT_EQ(parts[2].str(), hmac_hex(secret, parts[1].str() + "." + request.body));

  // Rotating replaces the secret: what was signed before does not verify under the new one.
  Answer rotated_again = jobs.api_.post(jobs.api_.admin(), "/v1/tenants/acme/webhook-secret");
  EXPECT_NE(rotated_again.body["secret"], secret);
  EXPECT_EQ(rotated_again.body["replaced"], true);
}

TEST(JobsApi, FailedDeliveriesAreRetriedThenDeadAndListable) {
  WebhookReceiver receiver;
  JobsApi jobs(webhook_policy(receiver));
  receiver.answer("/flaky", {500, 200});
  receiver.answer("/down", {503});
  ASSERT_EQ(jobs.api_.post(jobs.api_.admin(), "/v1/tenants/acme/webhook-secret").status, 201);
  Answer flaky = jobs.submit("double", "d-1",
                             {{"input", {{"n", 1}}}, {"callback_url", receiver.url("/flaky")}});
  Answer down = jobs.submit("double", "d-2",
                            {{"input", {{"n", 2}}}, {"callback_url", receiver.url("/down")}});
  ASSERT_EQ(flaky.status, 202) << flaky;
  ASSERT_EQ(down.status, 202) << down;
  // 2 tries to /flaky and 3 to /down.
  ASSERT_TRUE(receiver.wait_for(5, std::chrono::seconds(30))) << receiver.requests().size();
  std::vector<std::chrono::steady_clock::time_point> to_down;
  for (const auto& request : receiver.requests())
    if (request.path == "/down") to_down.push_back(request.at);
  ASSERT_EQ(to_down.size(), 3u);
  EXPECT_GE(to_down[1] - to_down[0], std::chrono::milliseconds(100));
  EXPECT_GE(to_down[2] - to_down[1], std::chrono::milliseconds(200));

  Answer dead;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    dead = jobs.get("/v1/tenants/acme/deliveries?state=dead", "publisher");
    ASSERT_EQ(dead.status, 200) << dead;
    if (!dead.body["deliveries"].empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(dead.body["deliveries"].size(), 1u) << dead;
  EXPECT_EQ(dead.body["deliveries"][0]["job_id"], down.body["id"]);
  EXPECT_EQ(dead.body["deliveries"][0]["attempts"], 3);
  EXPECT_EQ(dead.body["deliveries"][0]["last_status"], 503);
  EXPECT_NE(dead.body["deliveries"][0]["last_error"].get<std::string>().find("gave up"),
            std::string::npos);
  Answer delivered = jobs.get("/v1/tenants/acme/deliveries?state=delivered", "auditor");
  ASSERT_EQ(delivered.body["deliveries"].size(), 1u) << delivered;
  EXPECT_EQ(delivered.body["deliveries"][0]["job_id"], flaky.body["id"]);
  EXPECT_EQ(delivered.body["deliveries"][0]["attempts"], 2);
  EXPECT_EQ(jobs.get("/v1/tenants/acme/deliveries").status, 403) << "not for invokers";
  EXPECT_GE(jobs.corrald_.metric(R"(corral_webhook_deliveries_total{result="dead"})"), 1);
}

TEST(JobsApi, ACallbackThePolicyDoesNotAllowIsRefusedAtSubmission) {
  WebhookReceiver receiver;
  JobsApi jobs(webhook_policy(receiver));
  ASSERT_EQ(jobs.api_.post(jobs.api_.admin(), "/v1/tenants/acme/webhook-secret").status, 201);
  Answer elsewhere = jobs.submit(
      "double", "r-1", {{"input", 1}, {"callback_url", "https://attacker.example/collect"}});
  ASSERT_EQ(elsewhere.status, 403) << elsewhere;
  EXPECT_EQ(elsewhere.body["type"], "urn:corral:problem:callback-refused");
  EXPECT_EQ(elsewhere.body["rule"], "tenants.acme.capabilities.http.allow");
  Answer metadata = jobs.submit("double", "r-2",
                                {{"input", 1}, {"callback_url", "http://169.254.169.254/latest"}});
  EXPECT_EQ(metadata.status, 403) << metadata;
  Answer listed = jobs.get("/v1/tenants/acme/scripts/double/jobs");
  EXPECT_TRUE(listed.body["jobs"].empty()) << "nothing was queued";

  // A tenant without the http grant cannot use callbacks at all.
  auto globex = jobs.api_.tenant_with_tokens("globex");
  jobs.api_.publish(globex["publisher"], "globex", "double", kDoubler);
  HttpClient client(jobs.corrald_.host(), jobs.corrald_.port());
  http::request<http::string_body> message(http::verb::post,
                                           "/v1/tenants/globex/scripts/double/jobs?version=1", 11);
  message.set(http::field::host, "127.0.0.1");
  message.set(http::field::authorization, "Bearer " + globex["publisher"]);
  message.set(http::field::content_type, "application/json");
  message.set("Idempotency-Key", "g-1");
  message.body() = json({{"input", 1}, {"callback_url", receiver.url("/hook")}}).dump();
  message.prepare_payload();
  http::write(client.socket(), message);
  auto response = client.read_response();
  ASSERT_EQ(response.result_int(), 403u) << response.body();
  json problem = json::parse(response.body());
  EXPECT_NE(problem["detail"].get<std::string>().find("no http grant"), std::string::npos)
      << problem;
  EXPECT_TRUE(problem["rule"].get<std::string>().find("capabilities.http") != std::string::npos)
      << problem;
}

// ---- customers' data in jobs (issue 26): inputs are dropped when a job ends unless the policy's
// jobs.inputs keeps them, and a submission may keep its input out of its webhook.

std::string webhook_policy_keeping_inputs(const WebhookReceiver& receiver, bool keep) {
  std::string policy = webhook_policy(receiver);
  std::string jobs = "jobs: {webhook_attempts: 3, webhook_backoff_ms: 100";
  policy.replace(policy.find(jobs), jobs.size(),
                 jobs + ", inputs: " + std::string(keep ? "true" : "false"));
  return policy;
}

TEST(JobsApi, AJobsInputIsDroppedWhenItEndsAndItsWebhookCarriesNone) {
  WebhookReceiver receiver;
  JobsApi jobs(webhook_policy_keeping_inputs(receiver, false));
  ASSERT_EQ(jobs.api_.post(jobs.api_.admin(), "/v1/tenants/acme/webhook-secret").status, 201);
  json input = {{"n", 5}, {"email", "ada@example.com"}};
  Answer accepted = jobs.submit(
      "double", "pii-1", {{"input", input}, {"callback_url", receiver.url("/hooks/orders")}});
  ASSERT_EQ(accepted.status, 202) << accepted;
  // Until it has run, the job holds its input: the runner needs it.
  EXPECT_EQ(accepted.body["input"], input) << accepted;
  EXPECT_EQ(accepted.body["input_kept"], false);

  Answer done = jobs.wait_final("double", accepted.body["id"]);
  EXPECT_EQ(done.body["state"], "succeeded") << done;
  EXPECT_EQ(done.body["result"]["output"]["doubled"], 10);
  EXPECT_TRUE(done.body["input"].is_null()) << done;
  ASSERT_TRUE(receiver.wait_for(1, std::chrono::seconds(20)));
  json announced = json::parse(receiver.requests()[0].body);
  EXPECT_EQ(announced["state"], "succeeded");
  EXPECT_TRUE(announced["input"].is_null()) << announced;
  EXPECT_EQ(receiver.requests()[0].body.find("ada@example.com"), std::string::npos);

  // A job that fails ends too: its input goes as well.
  jobs.publish("fail", kFailing);
  Answer failing = jobs.submit("fail", "pii-2", {{"input", input}});
  ASSERT_EQ(failing.status, 202) << failing;
  Answer failed = jobs.wait_final("fail", failing.body["id"]);
  EXPECT_EQ(failed.body["state"], "failed") << failed;
  EXPECT_TRUE(failed.body["input"].is_null()) << failed;
}

// Cancelled while queued (no runners: --job-threads 0) is an end like any other: the input goes.
TEST(JobsApi, ACancelledJobsInputIsDroppedToo) {
  JobsApi jobs(kQuickPolicy, {"--job-threads", "0"});
  json input = {{"n", 1}, {"email", "alan@example.com"}};
  Answer accepted = jobs.submit("double", "cancel-1", {{"input", input}});
  ASSERT_EQ(accepted.status, 202) << accepted;
  std::string path =
      "/v1/tenants/acme/scripts/double/jobs/" + accepted.body["id"].get<std::string>();
  EXPECT_EQ(jobs.get(path).body["input"], input);
  Answer cancelled = jobs.api_.del(jobs.tokens_["invoker"], path);
  ASSERT_EQ(cancelled.status, 200) << cancelled;
  EXPECT_EQ(cancelled.body["state"], "cancelled");
  EXPECT_TRUE(cancelled.body["input"].is_null()) << cancelled;
  EXPECT_TRUE(jobs.get(path).body["input"].is_null());
}

TEST(JobsApi, WithJobsInputsTheInputIsKeptAndAJobMayStillKeepItOutOfItsWebhook) {
  WebhookReceiver receiver;
  JobsApi jobs(webhook_policy_keeping_inputs(receiver, true));
  ASSERT_EQ(jobs.api_.post(jobs.api_.admin(), "/v1/tenants/acme/webhook-secret").status, 201);
  json input = {{"n", 4}, {"email", "grace@example.com"}};
  Answer kept = jobs.submit("double", "keep-1",
                            {{"input", input}, {"callback_url", receiver.url("/hooks/kept")}});
  ASSERT_EQ(kept.status, 202) << kept;
  EXPECT_EQ(kept.body["input_kept"], true);
  Answer done = jobs.wait_final("double", kept.body["id"]);
  EXPECT_EQ(done.body["input"], input) << done;
  ASSERT_TRUE(receiver.wait_for(1, std::chrono::seconds(20)));
  EXPECT_EQ(json::parse(receiver.requests()[0].body)["input"], input);

  Answer omitted = jobs.submit("double", "keep-2",
                               {{"input", input},
                                {"callback_url", receiver.url("/hooks/omitted")},
                                {"webhook_input", false}});
  ASSERT_EQ(omitted.status, 202) << omitted;
  Answer omitted_done = jobs.wait_final("double", omitted.body["id"]);
  EXPECT_EQ(omitted_done.body["input"], input) << omitted_done;
  ASSERT_TRUE(receiver.wait_for(2, std::chrono::seconds(20)));
  json announced = json::parse(receiver.requests()[1].body);
  EXPECT_EQ(announced["id"], omitted.body["id"]);
  EXPECT_TRUE(announced["input"].is_null()) << announced;
  EXPECT_EQ(receiver.requests()[1].body.find("grace@example.com"), std::string::npos);

  // The same key asking for the input in its webhook is another request.
  Answer reused = jobs.submit("double", "keep-2",
                              {{"input", input}, {"callback_url", receiver.url("/hooks/omitted")}});
  EXPECT_EQ(reused.status, 409) << reused;
  Answer malformed = jobs.submit("double", "keep-3", {{"input", input}, {"webhook_input", "no"}});
  EXPECT_EQ(malformed.status, 400) << malformed;
  EXPECT_EQ(malformed.body["field"], "webhook_input");
}

}  // namespace
}  // namespace corral::testing
