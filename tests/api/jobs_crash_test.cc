// Crash safety of jobs (issue 6, "Evidence"): 1,000 jobs are accepted by a real corrald, which is
// killed with SIGKILL while they are queued and running; a new corrald on the same data directory
// must bring every accepted job to a final state exactly once.
//
// How a loss or a duplicate would show:
//   - lost: an accepted id that is missing from the store, or not final, once all is quiet;
//   - a second result: the store counts every final write of a job (result_writes), and its
//     guard should keep that at 1;
//   - a run nobody accounted for: each run increments a kv counter keyed by the job's input and
//     returns the count, so the final result's count must be between 1 and the job's attempts,
//     and exactly 1 for a job run once.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/beast/http/write.hpp>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kJobs = 1000;

// Runs get 10 s of wall time: under a sanitizer on a loaded two-core machine a 1 s run may be cut
// short, and this test is about every job ending once, not about speed.
constexpr const char* kPolicy = R"(tenants:
  acme:
    limits: {timeout_ms: 10000}
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100, queued_jobs: 5000}
    circuit_breaker: {failures: 1000}
    jobs: {max_attempts: 5}
    capabilities:
      kv: {}
)";

// Counts its runs per job in kv, and takes a few milliseconds so that runs overlap the kill.
constexpr const char* kCounter = R"(function handle(input, ctx)
  local key = "runs:" .. input.i
  local runs = (ctx.kv.get(key) or 0) + 1
  ctx.kv.put(key, runs)
  local x = 0
  for j = 1, 200000 do x = x + j end
  return {i = input.i, runs = runs}
end)";

int post_job(HttpClient& client, const std::string& token, int i, std::string* id) {
  http::request<http::string_body> message(http::verb::post,
                                           "/v1/tenants/acme/scripts/counter/jobs", 11);
  message.set(http::field::host, "127.0.0.1");
  message.set(http::field::authorization, "Bearer " + token);
  message.set(http::field::content_type, "application/json");
  message.set("Idempotency-Key", "job-" + std::to_string(i));
  message.body() = json({{"input", {{"i", i}}}}).dump();
  message.prepare_payload();
  http::write(client.socket(), message);
  auto response = client.read_response();
  json body = json::parse(response.body(), nullptr, false);
  if (id && body.is_object() && body.contains("id")) *id = body["id"];
  return static_cast<int>(response.result_int());
}

// The tenant's jobs in a state now, page by page.
int64_t count(ApiClient& api, const std::string& token, const std::string& state) {
  int64_t total = 0;
  std::string before;
  for (;;) {
    Answer page = api.get(token, "/v1/tenants/acme/scripts/counter/jobs?limit=200&state=" + state +
                                     (before.empty() ? "" : "&before=" + before));
    EXPECT_EQ(page.status, 200) << page;
    if (page.status != 200) return total;
    total += static_cast<int64_t>(page.body["jobs"].size());
    if (page.body["next_before"].is_null()) return total;
    before = page.body["next_before"];
  }
}

struct StoredJob {
  std::string state;
  int64_t attempts = 0;
  int64_t result_writes = 0;
  json result;
  std::string error;
};

// Read behind corrald's back, once it has stopped.
std::map<std::string, StoredJob> read_jobs(const fs::path& database) {
  std::map<std::string, StoredJob> jobs;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(database.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << database;
    return jobs;
  }
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db,
                     "SELECT id, state, attempts, result_writes, coalesce(result, ''), "
                     "coalesce(error, '') FROM jobs",
                     -1, &stmt, nullptr);
  auto text = [&](int column) {
    auto value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
    return value ? std::string(value) : std::string();
  };
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    StoredJob job{text(1), sqlite3_column_int64(stmt, 2), sqlite3_column_int64(stmt, 3),
                  json::parse(text(4), nullptr, false), text(5)};
    jobs[text(0)] = job;
  }
  sqlite3_finalize(stmt);
  sqlite3_close_v2(db);
  return jobs;
}

TEST(JobsCrashTest, EveryAcceptedJobReachesAFinalStateExactlyOnceAfterKill9) {
  auto started = Clock::now();
  fs::path directory =
      fs::temp_directory_path() / ("corral-jobs-crash-" + std::to_string(getpid()));
  fs::remove_all(directory);
  std::vector<std::string> flags = {"--job-threads", "4"};
  std::string invoker;
  std::map<int, std::string> accepted;  // input i → job id
  int64_t unfinished_at_kill = 0;
  {
    CorraldProcess first(flags, directory);
    ApiClient api(first);
    ASSERT_EQ(api.put(api.admin(), "/v1/policy", {{"document", kPolicy}}).status, 201);
    auto tokens = api.tenant_with_tokens("acme");
    invoker = tokens["invoker"];
    Answer published =
        api.post(tokens["publisher"], "/v1/tenants/acme/scripts/counter/versions",
                 {{"source", kCounter}, {"manifest", manifest(json::array({"kv"}))}});
    ASSERT_EQ(published.status, 201) << published;
    api.approve(tokens["reviewer"], "acme", "counter", 1);
    api.set_alias(tokens["reviewer"], "acme", "counter", "live", 1);

    // Four submitters, so that accepting 1,000 jobs is quick next to running them.
    std::mutex mutex;
    std::vector<std::thread> submitters;
    for (int t = 0; t < 4; ++t) {
      submitters.emplace_back([&, t] {
        HttpClient client(first.host(), first.port());
        for (int i = t; i < kJobs; i += 4) {
          std::string id;
          int status = post_job(client, invoker, i, &id);
          if (status == 202) {
            std::lock_guard lock(mutex);
            accepted[i] = id;
          } else {
            ADD_FAILURE() << "job " << i << " answered " << status;
          }
        }
      });
    }
    for (auto& submitter : submitters) submitter.join();
    ASSERT_EQ(accepted.size(), static_cast<size_t>(kJobs));
    unfinished_at_kill = count(api, invoker, "queued") + count(api, invoker, "running");
    kill(first.pid(), SIGKILL);
    EXPECT_EQ(first.wait(), -SIGKILL);
  }
  auto killed_at = Clock::now();
  EXPECT_GT(unfinished_at_kill, 0) << "the kill came after every job had finished: the test "
                                      "proved nothing; make the script slower";

  {
    CorraldProcess second(flags, directory);
    ApiClient api(second);
    // A client retrying its submissions after the crash gets the same jobs back.
    HttpClient client(second.host(), second.port());
    for (int i = 0; i < 10; ++i) {
      std::string id;
      EXPECT_EQ(post_job(client, invoker, i, &id), 200);
      EXPECT_EQ(id, accepted[i]);
    }
    auto deadline = Clock::now() + std::chrono::seconds(90);
    for (;;) {
      Answer queued =
          api.get(invoker, "/v1/tenants/acme/scripts/counter/jobs?state=queued&limit=1");
      Answer running =
          api.get(invoker, "/v1/tenants/acme/scripts/counter/jobs?state=running&limit=1");
      if (queued.body["jobs"].empty() && running.body["jobs"].empty()) break;
      ASSERT_LT(Clock::now(), deadline) << "jobs still unfinished after 90 s";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(second.terminate_and_wait(), 0);
  }
  auto finished_at = Clock::now();

  auto stored = read_jobs(directory / "data" / "corral.db");
  int succeeded = 0, recovered = 0, run_twice = 0, lost = 0, duplicates = 0, miscounted = 0;
  for (const auto& [i, id] : accepted) {
    auto found = stored.find(id);
    if (found == stored.end()) {
      ++lost;
      continue;
    }
    const StoredJob& job = found->second;
    if (job.state != "succeeded") {
      ADD_FAILURE() << "job " << id << " (input " << i << ") ended " << job.state << ": "
                    << job.error;
      continue;
    }
    ++succeeded;
    if (job.result_writes != 1) ++duplicates;
    if (job.attempts > 1) ++recovered;
    json output =
        job.result.is_object() && job.result.contains("output") && job.result["output"].is_object()
            ? job.result["output"]
            : json::object();
    int64_t runs = output.value("runs", int64_t{0});
    if (runs > 1) ++run_twice;
    if (output.value("i", -1) != i || runs < 1 || runs > job.attempts ||
        (job.attempts == 1 && runs != 1)) {
      ++miscounted;
      ADD_FAILURE() << "job " << id << " (input " << i << "): " << job.attempts
                    << " attempts, result " << job.result.dump();
    }
  }
  EXPECT_EQ(stored.size(), accepted.size()) << "the store holds jobs nobody accepted";
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(duplicates, 0);
  EXPECT_EQ(miscounted, 0);
  EXPECT_EQ(succeeded, kJobs);
  auto seconds = [](auto duration) { return std::chrono::duration<double>(duration).count(); };
  std::printf(
      "crash test: %zu accepted, %d final (succeeded), %lld unfinished at kill -9, %d recovered "
      "(run again after the restart), %d ran twice (interrupted mid-run), %d lost, %d duplicate "
      "results; %.1f s to the kill, %.1f s after it, %.1f s in all\n",
      accepted.size(), succeeded, static_cast<long long>(unfinished_at_kill), recovered, run_twice,
      lost, duplicates, seconds(killed_at - started), seconds(finished_at - killed_at),
      seconds(finished_at - started));
  RecordProperty("accepted", static_cast<int>(accepted.size()));
  RecordProperty("recovered", recovered);
  fs::remove_all(directory);
}

}  // namespace
}  // namespace corral::testing
