// Faults an operator meets, each injected into a real corrald (issue 26): a second corrald on the
// same data directory, workers killed while idle, SIGHUP, a full disk, a flood of refusals in the
// log, and a worker binary that never becomes ready.
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/beast/http/write.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "fake_worker.h"
#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kSum = "function handle(input, ctx) return {sum = input.a + input.b} end";

// Quotas lifted, and a breaker that three failures would open.
constexpr const char* kPolicy = R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
    circuit_breaker: {failures: 3, window_seconds: 600, cooldown_seconds: 600, probes: 1}
)";

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// What a program printed and how it ended.
struct Ran {
  int status = -1;  // exit status, or -signal
  std::string output;
};

// Runs `arguments` with stdout and stderr to one file; kills it after `limit`.
Ran run_program(const std::vector<std::string>& arguments, const fs::path& output,
                std::chrono::seconds limit) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  Ran ran;
  auto deadline = Clock::now() + limit;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ran.status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  ran.output = read_text(output);
  return ran;
}

// The processes whose parent is `parent`: corrald's workers.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = read_text(entry.path() / "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z') children.push_back(std::stoi(name));
  }
  return children;
}

// Until no worker is being started or stopped and `idle` are idle (at most 20 s).
void wait_for_a_settled_pool(const CorraldProcess& corrald, double idle) {
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    if (corrald.metric("corral_workers{state=\"starting\"}") == 0 &&
        corrald.metric("corral_workers{state=\"stopping\"}") == 0 &&
        corrald.metric("corral_workers{state=\"idle\"}") >= idle)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "the worker pool did not settle";
}

std::vector<json> json_lines(const fs::path& file) {
  std::vector<json> lines;
  std::istringstream text(read_text(file));
  for (std::string line; std::getline(text, line);) lines.push_back(json::parse(line));
  return lines;
}

// Until a line of `file` has msg `message` (at most 10 s); that line, or null.
json wait_for_line(const fs::path& file, const std::string& message, size_t nth = 1) {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    size_t seen = 0;
    for (const auto& line : json_lines(file)) {
      if (line.value("msg", "") == message && ++seen == nth) return line;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return nullptr;
}

// ---- Two corrald on one data directory -----------------------------------------------------

TEST(OperatorFaults, ASecondCorraldOnTheSameDataDirectoryRefusesToStartNamingTheFirst) {
  // The first runs no jobs, so that a job it accepted stays queued: a second corrald that
  // started would take it as left by a crash and run it.
  CorraldProcess first({"--job-threads", "0"});
  ApiClient api(first);
  ASSERT_EQ(api.put(api.admin(), "/v1/policy", {{"document", kPolicy}}).status, 201);
  auto tokens = api.tenant_with_tokens("acme");
  int64_t version = api.publish(tokens["publisher"], "acme", "sum", kSum);
  api.approve(tokens["reviewer"], "acme", "sum", version);
  api.set_alias(tokens["reviewer"], "acme", "sum", "live", version);
  Answer job = api.call(tokens["invoker"], http::verb::post, "/v1/tenants/acme/scripts/sum/jobs",
                        {{"input", {{"a", 1}, {"b", 2}}}}, {{"Idempotency-Key", "order-1"}});
  ASSERT_EQ(job.status, 202) << job;
  std::string job_path = "/v1/tenants/acme/scripts/sum/jobs/" + job.body["id"].get<std::string>();

  Ran second = run_program({CORRALD_PATH, "--listen", "127.0.0.1:0", "--data-dir",
                            first.data_dir().string(), "--worker", CORRAL_WORKER_PATH},
                           first.directory() / "second.out", std::chrono::seconds(30));
  EXPECT_EQ(second.status, 1) << second.output;
  EXPECT_NE(
      second.output.find("is in use by another corrald (pid " + std::to_string(first.pid()) + ")"),
      std::string::npos)
      << second.output;
  EXPECT_NE(second.output.find("Stop that process first, or give this one another --data-dir"),
            std::string::npos)
      << second.output;

  // The first is untouched: still serving, its job still queued, nothing recovered by another.
  Answer after = api.get(tokens["invoker"], job_path);
  ASSERT_EQ(after.status, 200) << after;
  EXPECT_EQ(after.body["state"], "queued") << after;
  EXPECT_EQ(
      api.post(api.admin(), "/v1/run", {{"source", kSum}, {"input", {{"a", 1}, {"b", 1}}}}).status,
      200);
  EXPECT_EQ(first.terminate_and_wait(), 0);

  // Once the first has stopped, the lock is free again (a stale lock file keeps no one out).
  CorraldProcess next({}, first.directory());
  EXPECT_EQ(ApiClient(next).get(tokens["invoker"], job_path).status, 200);
}

// ---- A worker that died while idle ---------------------------------------------------------

TEST(OperatorFaults, AWorkerKilledWhileIdleNeitherFailsTheNextRunNorCountsAgainstTheScript) {
  CorraldProcess corrald({"--spare-workers", "2"});
  ApiClient api(corrald);
  ASSERT_EQ(api.put(api.admin(), "/v1/policy", {{"document", kPolicy}}).status, 201);
  auto tokens = api.tenant_with_tokens("acme");
  int64_t version = api.publish(tokens["publisher"], "acme", "sum", kSum);
  api.approve(tokens["reviewer"], "acme", "sum", version);
  api.set_alias(tokens["reviewer"], "acme", "sum", "live", version);
  auto invoke = [&] {
    return api.post(tokens["invoker"], "/v1/tenants/acme/scripts/sum/invoke",
                    {{"input", {{"a", 2}, {"b", 3}}}});
  };
  ASSERT_EQ(invoke().status, 200);
  // Six times, more than the breaker's three failures: every idle worker (the tenant's own and
  // the spares) is killed, as the OOM killer or an operator might, and the next run is served.
  for (int round = 0; round < 6; ++round) {
    wait_for_a_settled_pool(corrald, 1);
    auto workers = children_of(corrald.pid());
    ASSERT_FALSE(workers.empty());
    for (pid_t worker : workers) kill(worker, SIGKILL);
    for (pid_t worker : workers) {
      auto deadline = Clock::now() + std::chrono::seconds(5);
      while (fs::exists("/proc/" + std::to_string(worker) + "/stat") &&
             read_text("/proc/" + std::to_string(worker) + "/stat").find(") Z") ==
                 std::string::npos &&
             Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    Answer served = invoke();
    ASSERT_EQ(served.status, 200) << "round " << round << ": " << served;
    EXPECT_EQ(served.body["output"]["sum"], 5);
  }
  EXPECT_EQ(corrald.metric("corral_invocations_total{outcome=\"crashed\"}"), 0);
  EXPECT_EQ(corrald.metric("corral_breakers_open"), 0);
  EXPECT_EQ(invoke().status, 200);
}

// ---- SIGHUP ----------------------------------------------------------------------------------

TEST(OperatorFaults, SighupReopensTheLogAndReloadsThePolicyWhileServing) {
  fs::path dir = fs::temp_directory_path() / ("corral-sighup-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::path policy_file = dir / "policy.yaml";
  fs::path log_file = dir / "corrald.log";
  write_file(policy_file, kPolicy);
  CorraldProcess corrald({"--policy", policy_file.string(), "--log-file", log_file.string()});
  ApiClient api(corrald);
  Answer before = api.get(api.admin(), "/v1/policy");
  ASSERT_EQ(before.status, 200) << before;
  int64_t version_before = before.body["version"];

  // A request in flight: its headers and half its body are sent before the signal.
  std::string body = json({{"source", kSum}, {"input", {{"a", 20}, {"b", 22}}}}).dump();
  HttpClient in_flight(corrald.host(), corrald.port());
  std::string head =
      "POST /v1/run HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + corrald.admin_token() +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body.substr(0, body.size() / 2);
  boost::asio::write(in_flight.socket(), boost::asio::buffer(head));

  // logrotate moves the log away, the policy file changes, and corrald is told.
  fs::rename(log_file, dir / "corrald.log.1");
  std::string changed = std::string(kPolicy) + "  globex:\n    quotas: {concurrency: 7}\n";
  write_file(policy_file, changed);
  ASSERT_EQ(kill(corrald.pid(), SIGHUP), 0);
  json reloaded = wait_for_line(log_file, "policy reloaded");
  ASSERT_FALSE(reloaded.is_null()) << read_text(log_file);
  EXPECT_EQ(reloaded["stored_as_new_version"], true);
  EXPECT_EQ(reloaded["policy_version"], version_before + 1);

  boost::asio::write(in_flight.socket(), boost::asio::buffer(body.substr(body.size() / 2)));
  auto answer = in_flight.read_response();
  EXPECT_EQ(answer.result_int(), 200) << answer.body();
  EXPECT_EQ(json::parse(answer.body())["output"]["sum"], 42);

  Answer after = api.get(api.admin(), "/v1/policy");
  EXPECT_EQ(after.body["version"], version_before + 1);
  EXPECT_EQ(after.body["document"], changed);
  Answer audited = api.get(api.admin(), "/v1/audit?action=policy.update");
  EXPECT_NE(audited.raw.find("on SIGHUP"), std::string::npos) << audited;

  // A file that is not valid is refused, said in the log, and the policy in force stays.
  write_file(policy_file, "tenants:\n  acme:\n    quotas: {concurrency: -1}\n");
  ASSERT_EQ(kill(corrald.pid(), SIGHUP), 0);
  json refused =
      wait_for_line(log_file, "the policy file is not valid; the policy in force is kept");
  ASSERT_FALSE(refused.is_null()) << read_text(log_file);
  EXPECT_EQ(refused["policy_version_kept"], version_before + 1);
  EXPECT_NE(refused.dump().find("policy.yaml:3:"), std::string::npos) << refused;
  EXPECT_EQ(api.get(api.admin(), "/v1/policy").body["version"], version_before + 1);
  EXPECT_EQ(
      api.post(api.admin(), "/v1/run", {{"source", kSum}, {"input", {{"a", 1}, {"b", 1}}}}).status,
      200);

  // The old file kept what was written before the signal, and nothing after it.
  EXPECT_EQ(read_text(dir / "corrald.log.1").find("policy reloaded"), std::string::npos);
  EXPECT_NE(read_text(dir / "corrald.log.1").find("\"listening\""), std::string::npos);
  EXPECT_EQ(corrald.terminate_and_wait(), 0);
  EXPECT_FALSE(wait_for_line(log_file, "stopped").is_null());
  fs::remove_all(dir);
}

TEST(OperatorFaults, SighupWithNoLogFileNorPolicyFileKeepsServing) {
  CorraldProcess corrald;
  // One at a time: signals of one kind sent together may be delivered once.
  for (size_t i = 1; i <= 3; ++i) {
    ASSERT_EQ(kill(corrald.pid(), SIGHUP), 0);
    ASSERT_FALSE(wait_for_line(corrald.log_path(),
                               "SIGHUP: reopened the log and reloading the policy file", i)
                     .is_null());
  }
  EXPECT_EQ(
      corrald.client().post_json({{"source", kSum}, {"input", {{"a", 1}, {"b", 1}}}}).result_int(),
      200);
  EXPECT_EQ(corrald.terminate_and_wait(), 0);
}

// ---- A full disk -------------------------------------------------------------------------

// A tmpfs of its own for the data directory, so that the test fills a disk and nothing else.
class SmallDisk {
 public:
  explicit SmallDisk(const fs::path& where) : where_(where) {
    fs::create_directories(where_);
    if (mount("tmpfs", where_.c_str(), "tmpfs", 0, "size=16m,mode=0700") != 0)
      why_not_ = std::string("cannot mount a tmpfs: ") + std::strerror(errno);
  }
  ~SmallDisk() {
    if (why_not_.empty()) umount2(where_.c_str(), MNT_DETACH);
  }
  const std::string& why_not() const { return why_not_; }

  // Writes a file until the disk has no room left.
  void fill() {
    int fd = open((where_ / "filler").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ASSERT_GE(fd, 0);
    std::string block(4096, 'x');
    while (write(fd, block.data(), block.size()) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC);
    close(fd);
  }
  void free_space() { fs::remove(where_ / "filler"); }

 private:
  fs::path where_;
  std::string why_not_;
};

// corrald's store writes into the room its log already holds once the log has started over, so a
// write right after the disk fills may still fit: the log is emptied first (a checkpoint that
// truncates it, from a connection of the test's own), so that the next write needs room the disk
// no longer has.
void empty_the_log(const fs::path& database) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(database.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  // A connection sees the log only once it has read the database.
  EXPECT_EQ(sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  int in_log = -1;
  int copied = -1;
  EXPECT_EQ(sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &in_log, &copied),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  EXPECT_EQ(in_log, 0) << "the log was not emptied";
  sqlite3_close_v2(db);
}

constexpr const char* kKvPolicy = R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
    capabilities:
      kv: {}
)";

constexpr const char* kKvWriter =
    "function handle(input, ctx) ctx.kv.put(input.key, string.rep('v', 2000)) return {put = "
    "input.key} end";

void expect_storage_full(const Answer& answer, const std::string& path_not_to_show) {
  EXPECT_EQ(answer.status, 507) << answer;
  EXPECT_EQ(answer.body.value("type", ""), "urn:corral:problem:storage-full") << answer;
  EXPECT_EQ(answer.body.value("retry_after", 0), 30) << answer;
  auto retry = answer.response.find("Retry-After");
  EXPECT_TRUE(retry != answer.response.end() && retry->value() == "30") << answer;
  EXPECT_EQ(answer.raw.find(path_not_to_show), std::string::npos) << answer;
  EXPECT_EQ(answer.raw.find("corral.db"), std::string::npos) << answer;
  EXPECT_EQ(answer.raw.find("SQLite"), std::string::npos) << answer;
}

TEST(OperatorFaults, OnAFullDiskWritesAre507AndReadsServedAndCorraldStillStarts) {
  struct RemovedAtTheEnd {
    fs::path path;
    ~RemovedAtTheEnd() { fs::remove_all(path); }
  } directory{fs::temp_directory_path() / ("corral-full-disk-" + std::to_string(getpid()))};
  const fs::path& dir = directory.path;
  fs::remove_all(dir);
  fs::create_directories(dir);
  SmallDisk disk(dir / "disk");  // unmounted before the directory is removed
  if (!disk.why_not().empty()) GTEST_SKIP() << disk.why_not() << " (the test needs root)";
  // The data directory is on the small disk; corrald's log beside it, on the ordinary one.
  fs::create_directory_symlink(dir / "disk", dir / "data");
  std::string disk_path = (dir / "disk").string();

  std::map<std::string, std::string> tokens;
  {
    CorraldProcess corrald({}, dir);
    ApiClient api(corrald);
    ASSERT_EQ(api.put(api.admin(), "/v1/policy", {{"document", kKvPolicy}}).status, 201);
    tokens = api.tenant_with_tokens("acme");
    int64_t sum = api.publish(tokens["publisher"], "acme", "sum", kSum);
    api.approve(tokens["reviewer"], "acme", "sum", sum);
    api.set_alias(tokens["reviewer"], "acme", "sum", "live", sum);
    Answer writer = api.post(tokens["publisher"], "/v1/tenants/acme/scripts/writer/versions",
                             {{"source", kKvWriter}, {"manifest", manifest({"kv"})}});
    ASSERT_EQ(writer.status, 201) << writer;
    api.approve(tokens["reviewer"], "acme", "writer", writer.body["version"]);
    api.set_alias(tokens["reviewer"], "acme", "writer", "live", writer.body["version"]);
    ASSERT_EQ(api.post(tokens["invoker"], "/v1/tenants/acme/scripts/writer/invoke",
                       {{"input", {{"key", "before"}}}})
                  .status,
              200);

    empty_the_log(dir / "data" / "corral.db");
    disk.fill();
    // Writes: a publish, a job, a token, and a script's kv put are refused as corral's failure.
    expect_storage_full(
        api.post(tokens["publisher"], "/v1/tenants/acme/scripts/sum/versions",
                 {{"source", std::string(kSum) + "\n-- v2"}, {"manifest", manifest()}}),
        disk_path);
    expect_storage_full(
        api.call(tokens["invoker"], http::verb::post, "/v1/tenants/acme/scripts/sum/jobs",
                 {{"input", {{"a", 1}, {"b", 2}}}}, {{"Idempotency-Key", "full-1"}}),
        disk_path);
    expect_storage_full(api.post(api.admin(), "/v1/tenants/acme/tokens",
                                 {{"role", "invoker"}, {"subject", "late"}}),
                        disk_path);
    Answer put = api.post(tokens["invoker"], "/v1/tenants/acme/scripts/writer/invoke",
                          {{"input", {{"key", std::string(200, 'k')}}}});
    expect_storage_full(put, disk_path);
    EXPECT_EQ(put.body.value("outcome", ""), "rejected") << put;
    EXPECT_EQ(corrald.metric("corral_invocations_total{outcome=\"script_error\"}"), 0);
    // No token is still 401, and reads and runs that store nothing are served.
    EXPECT_EQ(api.get("", "/v1/tenants").status, 401);
    EXPECT_EQ(api.get("corral_" + std::string(64, '0'), "/v1/tenants").status, 401);
    EXPECT_EQ(api.get(api.admin(), "/v1/tenants").status, 200);
    EXPECT_EQ(api.get(tokens["auditor"], "/v1/tenants/acme/scripts/sum/versions/1").status, 200);
    Answer ran = api.post(tokens["invoker"], "/v1/tenants/acme/scripts/sum/invoke",
                          {{"input", {{"a", 2}, {"b", 2}}}});
    EXPECT_EQ(ran.status, 200) << ran;
    // The cause is in the log, with the database's path, for the operator.
    bool cause_logged = false;
    for (const auto& line : corrald.log_lines_settled()) {
      if (line.value("msg", "") != "cannot write to the store: the disk is full") continue;
      cause_logged = line.value("error", "").find(disk_path) != std::string::npos ||
                     line.value("error", "").find((dir / "data").string()) != std::string::npos;
    }
    EXPECT_TRUE(cause_logged) << read_text(corrald.log_path());
    // Refusals with Retry-After, not errors of their own: summarised, not an access line each.
    for (const auto& line : corrald.log_lines()) {
      EXPECT_FALSE(line.value("msg", "") == "request" && line.value("status", 0) == 507) << line;
    }
    EXPECT_EQ(corrald.terminate_and_wait(), 0);
  }

  // A corrald stopped while the disk had room leaves no write-ahead log: one starting on the disk
  // full then needs room for SQLite's shared-memory index, which its space reserve gives back.
  disk.free_space();
  {
    CorraldProcess clean({}, dir);
    EXPECT_EQ(clean.terminate_and_wait(), 0);
  }
  ASSERT_FALSE(fs::exists(dir / "data" / "corral.db-shm"));
  ASSERT_TRUE(fs::exists(dir / "data" / "corrald.reserve"));
  disk.fill();
  {
    // Started again on the disk full: it starts, serves reads, and refuses writes.
    CorraldProcess again({}, dir);
    bool reserve_given_back = false;
    for (const auto& line : again.log_lines())
      reserve_given_back |= line.value("msg", "").starts_with(
          "the disk of the data directory is full: gave back corrald's space reserve");
    EXPECT_TRUE(reserve_given_back) << read_text(again.log_path());
    ApiClient api(again);
    EXPECT_EQ(api.get(api.admin(), "/v1/tenants").status, 200);
    // The reserve given back lets some writes through; once that room is gone too, writes are
    // refused and reads still served.
    disk.fill();
    expect_storage_full(
        api.post(tokens["publisher"], "/v1/tenants/acme/scripts/sum/versions",
                 {{"source", std::string(kSum) + "\n-- v3"}, {"manifest", manifest()}}),
        disk_path);
    EXPECT_EQ(api.get(tokens["auditor"], "/v1/tenants/acme/scripts/sum/versions/1").status, 200);
    // Space freed: writes succeed again, without a restart.
    disk.free_space();
    Answer published =
        api.post(tokens["publisher"], "/v1/tenants/acme/scripts/sum/versions",
                 {{"source", std::string(kSum) + "\n-- v3"}, {"manifest", manifest()}});
    EXPECT_EQ(published.status, 201) << published;
  }
}

// ---- Load shedding in the log -------------------------------------------------------------

// Holds the only invocation thread for about 3 s of CPU time (the same under ASan).
const json kHold = {
    {"source",
     "function handle() local t = os.clock() while os.clock() - t < 3 do end return 'held' end"},
    {"limits", {{"fuel", 1'000'000'000}, {"timeout_ms", 30'000}}}};

// A request written now, answered later on its own connection.
std::unique_ptr<HttpClient> send_now(const CorraldProcess& corrald, const json& body) {
  auto client = std::make_unique<HttpClient>(corrald.host(), corrald.port());
  std::string text = body.dump();
  std::string message =
      "POST /v1/run HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + corrald.admin_token() +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(text.size()) +
      "\r\n\r\n" + text;
  boost::asio::write(client->socket(), boost::asio::buffer(message));
  return client;
}

void wait_for_metric(const CorraldProcess& corrald, const std::string& series, double value) {
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (corrald.metric(series) != value) {
    ASSERT_LT(Clock::now(), deadline) << series << " never reached " << value;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST(OperatorFaults, AFloodOfRefusalsIsCountedAndLoggedAFewTimesNotOnceEach) {
  CorraldProcess corrald({"--lanes", "1", "--invocation-threads", "1", "--tenant-queue-depth", "1",
                          "--max-queued", "1", "--refusal-hold-ms", "0"});
  auto hold = send_now(corrald, kHold);
  wait_for_metric(corrald, "corral_invocations_in_flight", 1);
  auto queued = send_now(corrald, {{"source", kSum}, {"input", {{"a", 1}, {"b", 1}}}});
  wait_for_metric(corrald, "corral_requests_queued", 1);

  constexpr int kRefusals = 300;
  HttpClient flood = corrald.client();
  int refused = 0;
  for (int i = 0; i < kRefusals; ++i) {
    auto answer = flood.post_json({{"source", kSum}, {"input", {{"a", 1}, {"b", 1}}}});
    refused += answer.result_int() == 503;
  }
  // The hold lasts seconds of CPU time: every one of them found the queue full.
  ASSERT_EQ(refused, kRefusals);
  EXPECT_EQ(corrald.metric(R"(corral_http_requests_total{route="/v1/run",code="503"})"), kRefusals);
  EXPECT_EQ(hold->read_response().result_int(), 200);
  EXPECT_EQ(queued->read_response().result_int(), 200);

  ASSERT_EQ(corrald.terminate_and_wait(), 0);
  int refusal_lines = 0, counted = 0;
  for (const auto& line : corrald.log_lines()) {
    EXPECT_NE(line.value("level", ""), "error") << line;
    EXPECT_FALSE(line.value("msg", "") == "request" && line.value("status", 0) == 503) << line;
    if (line.value("msg", "") != "requests refused") continue;
    ++refusal_lines;
    counted += line.value("count", 0);
    EXPECT_EQ(line["level"], "warn");
    EXPECT_TRUE(line["kind"] == "queue-full" || line["kind"] == "overloaded") << line;
    EXPECT_EQ(line["route"], "/v1/run");
  }
  // The first at once, the rest counted into one line per 10 s (written at the latest at stop).
  EXPECT_GE(refusal_lines, 2);
  EXPECT_LE(refusal_lines, 6);
  EXPECT_EQ(counted, kRefusals);
}

// ---- A worker binary that never becomes ready ------------------------------------------------

TEST(OperatorFaults, AWorkerThatNeverBecomesReadyIsGivenUpOnWithinTheStartTimeout) {
  FakeWorker fake("never-ready", "exec /bin/sleep 600");
  CorraldProcess corrald({"--worker", fake.path(), "--worker-start-timeout-ms", "1000"});
  HttpClient client = corrald.client();
  auto started = Clock::now();
  // The run's own timeout is the default (seconds more than the start's): it is not waited out.
  auto response = client.post_json({{"source", kSum}, {"input", {{"a", 1}, {"b", 1}}}});
  auto waited = std::chrono::duration<double>(Clock::now() - started).count();
  ASSERT_EQ(response.result_int(), 503) << response.body();
  EXPECT_EQ(response["Retry-After"], "5");
  json body = json::parse(response.body());
  EXPECT_EQ(body["type"], "urn:corral:problem:no-worker");
  std::string detail = body["detail"];
  EXPECT_NE(detail.find("did not announce it was ready within 1000 ms (--worker-start-timeout-ms)"),
            std::string::npos)
      << detail;
  // Before, a start was waited for up to the run's timeout (30 s at most); a spare's start
  // already in progress may add one more start timeout.
  EXPECT_LT(waited, 15) << "the 503 took " << waited << " s";
  EXPECT_EQ(corrald.metric("corral_invocations_total{outcome=\"crashed\"}"), 0);
}

}  // namespace
}  // namespace corral::testing
