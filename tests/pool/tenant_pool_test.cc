// The pool's promises: a worker serves only the tenant it was made for, is reused while healthy,
// is retired when it may be damaged, and the number of worker processes never passes the cap,
// however many tenants take turns.
#include "pool/tenant_pool.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "cpus_of.h"
#include "fake_worker.h"
#include "invocation/cpu_lane.h"
#include "pool/worker_process.h"

namespace corral {
namespace {

using namespace std::chrono_literals;

constexpr const char* kEcho = "function handle(input, ctx) return input end";

InvocationRequest request_for(const std::string& tenant, const std::string& source = kEcho,
                              nlohmann::json limits = nullptr) {
  InvocationRequest request;
  request.invocation_id = new_invocation_id();
  request.tenant = tenant;
  request.source = source;
  request.input = {{"tenant", tenant}};
  request.limits = LimitsPolicy{}.resolve(limits);
  return request;
}

// What the factory saw: which tenant each worker was made for, and on which threads.
struct FactoryLog {
  std::mutex mutex;
  std::map<pid_t, std::string> made_for;
  std::set<std::thread::id> threads;

  void record(pid_t pid, const std::string& tenant) {
    std::lock_guard lock(mutex);
    made_for[pid] = tenant;
    threads.insert(std::this_thread::get_id());
  }
  std::string tenant_of(pid_t pid) {
    std::lock_guard lock(mutex);
    auto found = made_for.find(pid);
    return found == made_for.end() ? "" : found->second;
  }
};

TenantPool::WorkerFactory real_workers(std::shared_ptr<FactoryLog> log = nullptr,
                                       int64_t long_run_ms = kLongRunMs) {
  return [log, long_run_ms](const std::string& tenant) {
    WorkerSpec spec;
    spec.worker_path = CORRAL_WORKER_PATH;
    spec.long_run_ms = long_run_ms;
    auto worker = std::make_unique<WorkerProcess>(spec);
    if (log) log->record(worker->pid(), tenant);
    return worker;
  };
}

// Workers that answer with the tenant they were started for and their pid (tagging_worker.lua),
// so a result shows which worker served it. The tenant is passed as the last argument, after
// whatever the jail adds.
TenantPool::WorkerFactory tagging_workers(std::shared_ptr<FactoryLog> log,
                                          const std::filesystem::path& wrapper) {
  std::ofstream(wrapper) << "#!/bin/sh\n"
                         << "for tenant; do :; done\n"
                         << "exec " << CORRAL_LUA_PATH << " " << CORRAL_SOURCE_DIR
                         << "/tests/pool/tagging_worker.lua \"$tenant\" \"$$\" <&3 >&3 3>&- 4>&-\n";
  chmod(wrapper.c_str(), 0700);
  return [log, path = wrapper.string()](const std::string& tenant) {
    WorkerSpec spec;
    spec.worker_path = path;
    spec.arguments = {tenant};
    auto worker = std::make_unique<WorkerProcess>(spec);
    log->record(worker->pid(), tenant);
    return worker;
  };
}

// Counts this process's children from /proc, independently of the pool's own bookkeeping.
size_t child_processes() {
  size_t count = 0;
  std::string self = std::to_string(getpid());
  DIR* proc = opendir("/proc");
  while (dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces, so read from its closing parenthesis.
    auto after_comm = line.rfind(')');
    if (after_comm == std::string::npos) continue;
    std::istringstream fields(line.substr(after_comm + 1));
    std::string state, ppid;
    fields >> state >> ppid;
    if (ppid == self) ++count;
  }
  closedir(proc);
  return count;
}

// Polls until the condition holds; the long limit is for a loaded machine (sanitizers, other
// tests): starting a jailed worker there can take far longer than the few ms it usually does.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds limit = 20s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

bool is_zombie(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto after_comm = line.rfind(')');
  return after_comm != std::string::npos && line.substr(after_comm + 2, 1) == "Z";
}

TEST(TenantPool, RunsAScriptInAWorkerOfTheTenant) {
  TenantPool pool({}, real_workers());
  auto result = pool.run(request_for("acme"));
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  EXPECT_EQ(result.output, nlohmann::json({{"tenant", "acme"}}));
}

TEST(TenantPool, NeverLendsAWorkerToAnotherTenant) {
  ASSERT_STRNE(CORRAL_LUA_PATH, "") << "lua5.4 was not found when configuring; "
                                       "scripts/install-deps.sh installs it";
  auto log = std::make_shared<FactoryLog>();
  // A small cap makes tenants fight over slots, so eviction and reuse both happen often.
  auto wrapper = std::filesystem::temp_directory_path() /
                 ("corral-tagging-worker-" + std::to_string(getpid()));
  TenantPool pool({.max_workers = 3, .warm_per_tenant = 1, .max_idle = 3},
                  tagging_workers(log, wrapper));
  auto run_checked = [&](const std::string& tenant) -> pid_t {
    // More callers than workers: some wait for room, so a slow machine needs a long deadline.
    auto result = pool.run(request_for(tenant, kEcho, {{"timeout_ms", 10'000}}));
    EXPECT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
    if (result.outcome != Outcome::ok) return -1;
    auto pid = result.output["pid"].get<pid_t>();
    EXPECT_EQ(result.output["tenant"], tenant);
    EXPECT_EQ(log->tenant_of(pid), tenant);
    return pid;
  };
  const std::vector<std::string> tenants = {"a", "b", "c"};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) run_checked(tenants[(t + i) % tenants.size()]);
    });
  }
  for (auto& thread : threads) thread.join();
  // Then, deterministically: a new tenant at the cap takes an evicted slot, and its worker is
  // the one that serves it next.
  auto evicted_before = pool.stats().evicted;
  pid_t first = run_checked("d");
  EXPECT_GT(pool.stats().evicted, evicted_before);
  EXPECT_EQ(run_checked("d"), first);
  for (const auto& tenant : tenants) run_checked(tenant);
  EXPECT_LE(pool.stats().live, 3u);
  std::filesystem::remove(wrapper);  // no worker is started after this point
}

// Spares: jailed workers started for no tenant yet, bound to the first tenant that has none.

std::filesystem::path tagging_wrapper_path(const std::string& test) {
  return std::filesystem::temp_directory_path() /
         ("corral-tagging-" + test + "-" + std::to_string(getpid()));
}

TEST(TenantPool, BindsASpareToANewTenantInsteadOfWaitingForASpawn) {
  auto log = std::make_shared<FactoryLog>();
  auto wrapper = tagging_wrapper_path("spare-bind");
  TenantPool pool({.max_workers = 8, .spare_workers = 2}, tagging_workers(log, wrapper));
  ASSERT_TRUE(eventually([&] { return pool.stats().spare == 2; })) << "the spares never started";

  auto first = pool.run(request_for("a"));
  ASSERT_EQ(first.outcome, Outcome::ok) << to_json(first).dump();
  auto pid_a = first.output["pid"].get<pid_t>();
  EXPECT_EQ(log->tenant_of(pid_a), "") << "tenant a's first run should be served by a spare";
  EXPECT_EQ(pool.stats().bound, 1u);
  // The spare taken is replaced in the background, and a's worker stays a's.
  ASSERT_TRUE(eventually([&] { return pool.stats().spare == 2; })) << "no replacement spare";
  EXPECT_EQ(pool.run(request_for("a")).output["pid"], pid_a);
  auto pid_b = pool.run(request_for("b")).output["pid"].get<pid_t>();
  EXPECT_NE(pid_b, pid_a);
  EXPECT_EQ(log->tenant_of(pid_b), "");
  EXPECT_EQ(pool.run(request_for("b")).output["pid"], pid_b);
  EXPECT_EQ(pool.run(request_for("a")).output["pid"], pid_a);
  std::filesystem::remove(wrapper);
}

// A burst of new tenants takes spares faster than one spawner replaces them: afterwards the pool
// keeps as many ready as the burst took, so that the next new tenants find one.
TEST(TenantPool, KeepsMoreSparesReadyAfterABurstOfNewTenants) {
  TenantPool pool({.max_workers = 32, .spare_workers = 2}, real_workers());
  ASSERT_TRUE(eventually([&] { return pool.stats().spare == 2; })) << "the spares never started";
  auto started = std::chrono::steady_clock::now();
  for (int tenant = 0; tenant < 6; ++tenant)
    ASSERT_EQ(pool.run(request_for("burst-" + std::to_string(tenant))).outcome, Outcome::ok);
  auto took = std::chrono::steady_clock::now() - started;
  // Each new tenant took a spare, ready or still starting, rather than a start of its own.
  EXPECT_EQ(pool.stats().bound, 6u);
  if (took > 900ms) GTEST_SKIP() << "the burst took longer than the pool's one-second window";
  EXPECT_TRUE(eventually([&] { return pool.stats().spare >= 6; }))
      << "spares after the burst: " << pool.stats().spare;
  EXPECT_LE(pool.stats().spare, 16u) << "at most eight times --spare-workers";
}

TEST(TenantPool, ABoundSpareNeverServesAnotherTenant) {
  ASSERT_STRNE(CORRAL_LUA_PATH, "");
  auto log = std::make_shared<FactoryLog>();
  auto wrapper = tagging_wrapper_path("spare-loyal");
  TenantPool pool({.max_workers = 4, .warm_per_tenant = 1, .max_idle = 2, .spare_workers = 2},
                  tagging_workers(log, wrapper));
  std::mutex mutex;
  std::map<pid_t, std::string> served_by;  // each worker's first tenant
  const std::vector<std::string> tenants = {"a", "b", "c", "d"};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        const auto& tenant = tenants[(t + i) % tenants.size()];
        auto result = pool.run(request_for(tenant, kEcho, {{"timeout_ms", 10'000}}));
        EXPECT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
        if (result.outcome != Outcome::ok) continue;
        auto pid = result.output["pid"].get<pid_t>();
        std::lock_guard lock(mutex);
        auto [entry, first_time] = served_by.emplace(pid, tenant);
        EXPECT_EQ(entry->second, tenant) << "worker " << pid << " served two tenants";
        std::string made_for = log->tenant_of(pid);
        EXPECT_TRUE(made_for.empty() || made_for == tenant) << made_for << " vs " << tenant;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_GT(pool.stats().bound, 0u);
  EXPECT_LE(pool.stats().live, 4u);
  std::filesystem::remove(wrapper);
}

TEST(TenantPool, SparesDoNotCountAgainstMaxIdle) {
  TenantPool pool({.max_workers = 8, .max_idle = 1, .spare_workers = 2}, real_workers());
  ASSERT_TRUE(eventually([&] { return pool.stats().spare == 2; }));
  for (const char* tenant : {"a", "b", "c"}) {
    ASSERT_EQ(pool.run(request_for(tenant)).outcome, Outcome::ok);
  }
  // Three spares bound within a second may leave three ready after them (a burst).
  ASSERT_TRUE(eventually([&] { return pool.stats().spare >= 2 && pool.stats().starting == 0; }));
  auto stats = pool.stats();
  EXPECT_EQ(stats.idle - stats.spare, 1u) << "one bound idle worker, as max_idle says";
  EXPECT_EQ(pool.idle_for("c"), 1u);
  EXPECT_EQ(stats.bound, 3u);
}

TEST(TenantPool, RefusesARunThatNamesNoTenant) {
  TenantPool pool({.spare_workers = 1}, real_workers());
  auto result = pool.run(request_for(""));
  EXPECT_EQ(result.outcome, Outcome::invalid);
  EXPECT_NE(result.message.find("names no tenant"), std::string::npos) << result.message;
}

TEST(TenantPool, ReusesAnIdleWorkerOfTheSameTenant) {
  TenantPool pool({}, real_workers());
  ASSERT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok);
  ASSERT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok);
  auto stats = pool.stats();
  EXPECT_EQ(stats.spawned, 1u);
  EXPECT_EQ(stats.idle, 1u);
  EXPECT_EQ(stats.live, 1u);
  EXPECT_EQ(pool.idle_for("acme"), 1u);
}

TEST(TenantPool, EvictsTheLeastRecentlyUsedIdleWorkerAtTheCap) {
  TenantPool pool({.max_workers = 2}, real_workers());
  ASSERT_EQ(pool.run(request_for("a")).outcome, Outcome::ok);
  ASSERT_EQ(pool.run(request_for("b")).outcome, Outcome::ok);
  ASSERT_EQ(pool.run(request_for("c")).outcome, Outcome::ok);  // a is the oldest
  EXPECT_EQ(pool.idle_for("a"), 0u);
  EXPECT_EQ(pool.idle_for("b"), 1u);
  EXPECT_EQ(pool.idle_for("c"), 1u);
  ASSERT_EQ(pool.run(request_for("b")).outcome, Outcome::ok);  // now c is the oldest
  ASSERT_EQ(pool.run(request_for("a")).outcome, Outcome::ok);
  EXPECT_EQ(pool.idle_for("c"), 0u);
  EXPECT_EQ(pool.idle_for("b"), 1u);
  EXPECT_EQ(pool.idle_for("a"), 1u);
  auto stats = pool.stats();
  EXPECT_EQ(stats.spawned, 4u);
  EXPECT_EQ(stats.evicted, 2u);
  EXPECT_EQ(stats.live, 2u);
}

TEST(TenantPool, KeepsAtMostMaxIdleWorkers) {
  TenantPool pool({.max_workers = 8, .max_idle = 2}, real_workers());
  for (const char* tenant : {"a", "b", "c", "d"}) {
    ASSERT_EQ(pool.run(request_for(tenant)).outcome, Outcome::ok);
  }
  auto stats = pool.stats();
  EXPECT_EQ(stats.idle, 2u);
  EXPECT_EQ(stats.evicted, 2u);
  EXPECT_EQ(pool.idle_for("c") + pool.idle_for("d"), 2u);
}

// With a memory budget for five workers and count caps far above it, the five most recently
// served tenants keep an idle worker each and the longest idle go first.
TEST(TenantPool, KeepsIdleWorkersOfEveryTenantWhileTheMemoryBudgetAllows) {
  // Far above a worker's own memory (a sanitizer build's is tens of MiB), so that the count the
  // budget allows is five whatever the worker's heap is; the budget is only counted, not spent.
  constexpr size_t kKernelShare = size_t{1} << 30;
  TenantPool pool({.max_workers = 100,
                   .max_idle = 100,
                   .memory_budget_bytes = 5 * kKernelShare + kKernelShare * 9 / 10,
                   .worker_kernel_bytes = kKernelShare,
                   .worker_user_bytes = 1 << 20,
                   .measure_every = 1},
                  real_workers());
  for (int tenant = 0; tenant < 8; ++tenant) {
    ASSERT_EQ(pool.run(request_for("t" + std::to_string(tenant))).outcome, Outcome::ok);
    EXPECT_LE(pool.stats().live, 5u);
  }
  for (int tenant = 0; tenant < 3; ++tenant)
    EXPECT_EQ(pool.idle_for("t" + std::to_string(tenant)), 0u) << tenant;
  for (int tenant = 3; tenant < 8; ++tenant)
    EXPECT_EQ(pool.idle_for("t" + std::to_string(tenant)), 1u) << tenant;
  auto stats = pool.stats();
  EXPECT_EQ(stats.idle, 5u);
  EXPECT_EQ(stats.evicted, 3u);
  EXPECT_GT(stats.accounted_bytes, 5 * kKernelShare);
  EXPECT_LE(stats.accounted_bytes, stats.memory_budget_bytes);
  // Serving an old tenant again makes room by evicting the one idle longest (t3).
  ASSERT_EQ(pool.run(request_for("t0")).outcome, Outcome::ok);
  EXPECT_EQ(pool.idle_for("t3"), 0u);
  EXPECT_EQ(pool.idle_for("t4"), 1u);
  EXPECT_EQ(pool.idle_for("t0"), 1u);
}

// A worker is counted at its kernel share plus the anonymous memory it really holds, read from
// the kernel after its runs, not at a guess.
TEST(TenantPool, CountsAWorkerAtWhatItReallyHolds) {
  constexpr size_t kKernelShare = 300 << 10;
  auto log = std::make_shared<FactoryLog>();
  TenantPool pool({.max_workers = 4,
                   .memory_budget_bytes = 1ull << 30,
                   .worker_kernel_bytes = kKernelShare,
                   .worker_user_bytes = 1,
                   .measure_every = 1},
                  real_workers(log));
  ASSERT_EQ(pool.run(request_for("a")).outcome, Outcome::ok);
  ASSERT_EQ(log->made_for.size(), 1u);
  pid_t pid = log->made_for.begin()->first;
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  size_t size = 0, resident = 0, shared = 0;
  ASSERT_TRUE(statm >> size >> resident >> shared);
  size_t anonymous = (resident - shared) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_GT(anonymous, size_t{64} << 10) << "a Lua worker holds more than that of its own";
  EXPECT_EQ(pool.stats().accounted_bytes, kKernelShare + anonymous);
}

TEST(TenantPool, RejectsWhenTheMemoryBudgetIsSpentOnBusyWorkers) {
  TenantPool pool({.max_workers = 10,
                   .memory_budget_bytes = 100 << 20,
                   .worker_kernel_bytes = 60 << 20,
                   .worker_user_bytes = 1 << 20},
                  real_workers());
  InvocationResult long_result;
  std::thread busy([&] {
    long_result = pool.run(request_for("slow", "function handle() while true do end end",
                                       {{"fuel", 1'000'000'000}, {"timeout_ms", 2000}}));
  });
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  auto rejected = pool.run(request_for("other", kEcho, {{"timeout_ms", 100}}));
  busy.join();
  EXPECT_EQ(rejected.outcome, Outcome::rejected);
  EXPECT_NE(rejected.message.find("memory budget of 100 MiB (1 workers)"), std::string::npos)
      << rejected.message;
  EXPECT_NE(rejected.message.find("--worker-memory-budget"), std::string::npos) << rejected.message;
  EXPECT_EQ(pool.run(request_for("other")).outcome, Outcome::ok);
}

TEST(TenantPool, AThousandTenantsTakingTurnsStayUnderTheCap) {
  constexpr size_t kCap = 8;
  constexpr int kTenants = 1000;
  constexpr int kThreads = 4;
  TenantPool pool({.max_workers = kCap}, real_workers());
  std::atomic<bool> done{false};
  std::atomic<size_t> most_live{0}, most_children{0};
  std::thread monitor([&] {
    while (!done) {
      most_live = std::max(most_live.load(), pool.stats().live);
      most_children = std::max(most_children.load(), child_processes());
      std::this_thread::sleep_for(5ms);
    }
  });
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int tenant = t; tenant < kTenants; tenant += kThreads) {
        // A generous deadline: on a loaded machine a run may wait a while for a slot.
        auto request =
            request_for("tenant-" + std::to_string(tenant), kEcho, {{"timeout_ms", 20'000}});
        auto result = pool.run(request);
        if (result.outcome == Outcome::ok && result.output == request.input) {
          ++ok;
        } else {
          ADD_FAILURE() << to_json(result).dump();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  done = true;
  monitor.join();
  EXPECT_EQ(ok.load(), kTenants);
  EXPECT_LE(most_live.load(), kCap);
  EXPECT_LE(most_children.load(), kCap);
  EXPECT_GT(most_children.load(), 0u);  // the monitor did see the workers
  auto stats = pool.stats();
  EXPECT_EQ(stats.spawned, static_cast<uint64_t>(kTenants));
  EXPECT_GE(stats.evicted, static_cast<uint64_t>(kTenants - kCap));
  EXPECT_EQ(stats.busy, 0u);
}

TEST(TenantPool, RecyclesAWorkerAfterRecycleAfterInvocations) {
  TenantPool pool({.recycle_after = 3}, real_workers());
  for (int i = 0; i < 7; ++i) ASSERT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok);
  auto stats = pool.stats();
  EXPECT_EQ(stats.spawned, 3u);  // 3 + 3 + 1 invocations
  EXPECT_EQ(stats.retired, 2u);
  EXPECT_EQ(stats.live, 1u);
}

TEST(TenantPool, RetiresAWorkerAfterALimitAndWarmsAReplacement) {
  auto log = std::make_shared<FactoryLog>();
  TenantPool pool({}, real_workers(log));
  auto limited =
      pool.run(request_for("acme", "function handle() while true do end end", {{"fuel", 100000}}));
  ASSERT_EQ(limited.outcome, Outcome::limit_exceeded) << to_json(limited).dump();
  EXPECT_EQ(limited.limit, LimitKind::fuel);
  EXPECT_EQ(pool.stats().retired, 1u);
  EXPECT_TRUE(eventually([&] { return pool.idle_for("acme") == 1; }));
  ASSERT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok);
  auto stats = pool.stats();
  EXPECT_EQ(stats.spawned, 2u);
  EXPECT_EQ(stats.live, 1u);
  EXPECT_EQ(child_processes(), 1u);  // the limited worker is gone, not just forgotten
  EXPECT_EQ(log->threads.size(), 1u);
}

TEST(TenantPool, KeepsAWorkerAfterAScriptError) {
  TenantPool pool({}, real_workers());
  EXPECT_EQ(pool.run(request_for("acme", "function handle() error('no') end")).outcome,
            Outcome::script_error);
  EXPECT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok);
  EXPECT_EQ(pool.stats().spawned, 1u);
}

TEST(TenantPool, DiscardsAnIdleWorkerKilledFromOutside) {
  auto log = std::make_shared<FactoryLog>();
  TenantPool pool({}, real_workers(log));
  ASSERT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok);
  ASSERT_EQ(log->made_for.size(), 1u);
  pid_t pid = log->made_for.begin()->first;
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return is_zombie(pid); }));
  auto result = pool.run(request_for("acme"));
  EXPECT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  auto stats = pool.stats();
  EXPECT_EQ(stats.spawned, 2u);
  EXPECT_EQ(stats.retired, 1u);
  EXPECT_FALSE(is_zombie(pid));  // reaped
}

TEST(TenantPool, RejectsWhenAtTheCapWithEveryWorkerBusy) {
  TenantPool pool({.max_workers = 1}, real_workers());
  InvocationResult long_result;
  // The busy run holds the only worker for 2 s (its 1e9 fuel lasts longer than that), far past
  // the other run's 100 ms deadline, so that a loaded machine cannot free the worker before that
  // deadline, nor make a rejection at the deadline look like one that waited for the worker.
  std::thread busy([&] {
    long_result = pool.run(request_for("slow", "function handle() while true do end end",
                                       {{"fuel", 1'000'000'000}, {"timeout_ms", 2000}}));
  });
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  auto started = std::chrono::steady_clock::now();
  auto rejected = pool.run(request_for("other", kEcho, {{"timeout_ms", 100}}));
  auto waited = std::chrono::steady_clock::now() - started;
  busy.join();
  EXPECT_EQ(rejected.outcome, Outcome::rejected);
  EXPECT_EQ(rejected.retry_after_seconds, 1);
  EXPECT_NE(rejected.message.find("cap of 1 worker,"), std::string::npos) << rejected.message;
  EXPECT_NE(rejected.message.find("retry later"), std::string::npos) << rejected.message;
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 1000ms) << "rejected well after its own deadline";
  EXPECT_EQ(long_result.outcome, Outcome::limit_exceeded);
  EXPECT_EQ(pool.run(request_for("other")).outcome, Outcome::ok);
}

TEST(TenantPool, WaitsForAWorkerToFreeUpWithinTheDeadline) {
  TenantPool pool({.max_workers = 1}, real_workers());
  std::thread busy([&] {
    pool.run(request_for("slow", "function handle() while true do end end",
                         {{"fuel", 1'000'000'000}, {"timeout_ms", 150}}));
  });
  ASSERT_TRUE(eventually([&] { return pool.stats().busy == 1; }));
  auto result = pool.run(request_for("other", kEcho, {{"timeout_ms", 3000}}));
  busy.join();
  EXPECT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
}

TEST(TenantPool, RejectsARunWhoseWorkerCannotBeStartedAndReportsTheFailure) {
  std::vector<TenantPool::StartFailureReport> reports;
  TenantPool pool(
      {.on_start_failure =
           [&](const TenantPool::StartFailureReport& report) { reports.push_back(report); },
       .start_failure_report_ms = 60'000},
      [](const std::string& tenant) -> std::unique_ptr<WorkerProcess> {
        throw std::runtime_error("no jail for " + tenant);
      });
  for (int run = 0; run < 3; ++run) {
    auto result = pool.run(request_for("acme"));
    // Not `crashed`: that would count against the script's version, which never ran.
    EXPECT_EQ(result.outcome, Outcome::rejected) << result.message;
    EXPECT_EQ(result.retry_after_seconds, 5);
    EXPECT_NE(result.message.find("could not start a worker for this run: no jail for acme"),
              std::string::npos)
        << result.message;
    EXPECT_NE(result.message.find("The script did not run"), std::string::npos) << result.message;
  }
  auto stats = pool.stats();
  EXPECT_EQ(stats.live, 0u);
  EXPECT_EQ(stats.start_failures, 3u);
  // Reports are throttled: the first at once, the rest in the next report, a minute later.
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].tenant, "acme");
  EXPECT_EQ(reports[0].why, "no jail for acme");
  EXPECT_EQ(reports[0].failures, 1u);
}

TEST(TenantPool, ReportsEveryFailedStartOnceItsIntervalHasPassed) {
  std::vector<TenantPool::StartFailureReport> reports;
  TenantPool pool(
      {.on_start_failure =
           [&](const TenantPool::StartFailureReport& report) { reports.push_back(report); },
       .start_failure_report_ms = 500},
      [](const std::string&) -> std::unique_ptr<WorkerProcess> {
        throw std::runtime_error("no cgroup");
      });
  // The first two well within the interval (the factory fails at once), the third past it.
  pool.run(request_for("acme"));
  pool.run(request_for("acme"));
  std::this_thread::sleep_for(600ms);
  pool.run(request_for("acme"));
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].failures, 1u);
  EXPECT_EQ(reports[1].failures, 2u) << "the failure held back, and the one that was reported";
}

// Workers that say they announce ready (as corral-worker does), and never do.
TenantPool::WorkerFactory never_ready_workers(const FakeWorker& fake) {
  return [path = fake.path()](const std::string&) {
    WorkerSpec spec;
    spec.worker_path = path;
    spec.announces_ready = true;
    return std::make_unique<WorkerProcess>(spec);
  };
}

TEST(TenantPool, RejectsARunWhoseWorkerDiesBeforeItIsReady) {
  // As corral-worker does when it cannot jail itself: it exits before its ready frame.
  FakeWorker fake("dies-unready", "exit 70");
  // No pre-warm after the failure, which would fail again and count.
  TenantPool pool({.warm_per_tenant = 0}, never_ready_workers(fake));
  auto result = pool.run(request_for("acme"));
  EXPECT_EQ(result.outcome, Outcome::rejected) << result.message;
  EXPECT_NE(result.message.find("exited with status 70 before it was ready"), std::string::npos)
      << result.message;
  auto stats = pool.stats();
  EXPECT_EQ(stats.start_failures, 1u);
  EXPECT_EQ(stats.retired, 1u);
  EXPECT_EQ(stats.live, 0u);
}

TEST(TenantPool, RejectsARunWhoseWorkerIsNotReadyWithinTheRunsTimeout) {
  FakeWorker fake("stalls-unready", "exec /bin/sleep 30");
  TenantPool pool({.warm_per_tenant = 0}, never_ready_workers(fake));
  auto started = std::chrono::steady_clock::now();
  auto result = pool.run(request_for("acme", kEcho, {{"timeout_ms", 200}}));
  auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(result.outcome, Outcome::rejected) << result.message;
  EXPECT_NE(result.message.find("did not announce it was ready within 200 ms"), std::string::npos)
      << result.message;
  EXPECT_GE(waited, 200ms);
  EXPECT_LT(waited, 5s) << "the stalled worker was waited for well past the run's timeout";
  EXPECT_EQ(pool.stats().start_failures, 1u);
}

TEST(TenantPool, PrewarmsInTheBackground) {
  TenantPool pool({}, real_workers());
  pool.prewarm("acme", 3);
  ASSERT_TRUE(eventually([&] { return pool.idle_for("acme") == 3; }));
  ASSERT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok);
  auto stats = pool.stats();
  EXPECT_EQ(stats.spawned, 3u);
  EXPECT_EQ(stats.idle, 3u);
}

TEST(TenantPool, StartsEveryWorkerOnItsOwnLongLivedThread) {
  // A worker's PR_SET_PDEATHSIG fires when the thread that started it ends, so no worker may be
  // started on a caller's thread, which may end at any time.
  auto log = std::make_shared<FactoryLog>();
  TenantPool pool({.recycle_after = 1}, real_workers(log));
  std::set<std::thread::id> callers;
  for (int i = 0; i < 3; ++i) {
    std::thread caller(
        [&, i] { EXPECT_EQ(pool.run(request_for("t" + std::to_string(i))).outcome, Outcome::ok); });
    callers.insert(caller.get_id());
    caller.join();
  }
  ASSERT_EQ(log->threads.size(), 1u);
  EXPECT_EQ(callers.count(*log->threads.begin()), 0u);
  EXPECT_NE(*log->threads.begin(), std::this_thread::get_id());
}

TEST(TenantPool, ServesConcurrentCallers) {
  TenantPool pool({.max_workers = 4}, real_workers());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        auto request =
            request_for("tenant-" + std::to_string((t + i) % 3), kEcho, {{"timeout_ms", 10'000}});
        request.input["n"] = t * 100 + i;
        auto result = pool.run(request);
        if (result.outcome == Outcome::ok && result.output == request.input) {
          ++ok;
        } else {
          ADD_FAILURE() << to_json(result).dump();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 80);
  auto stats = pool.stats();
  EXPECT_LE(stats.live, 4u);
  EXPECT_EQ(stats.busy, 0u);
}

// Runs `work` on a new thread pinned to `cpu` as a lane's thread is.
template <typename Work>
void on_lane(int cpu, Work work) {
  std::thread lane([&] {
    ASSERT_TRUE(pin_this_thread_to(cpu));
    work();
  });
  lane.join();
}

TEST(TenantPool, RunsAWorkerOnItsCallersLaneCpuAndLetsALongRunGoToEveryCpu) {
  const auto& allowed = allowed_cpus();
  if (allowed.size() < 2) GTEST_SKIP() << "needs two CPUs to tell one CPU from all of them";
  std::set<int> every_cpu(allowed.begin(), allowed.end());
  int lane = allowed.back();
  auto log = std::make_shared<FactoryLog>();
  // Runs longer than 100 ms are long here, so that a short run stays short on a loaded machine.
  TenantPool pool({}, real_workers(log, 100));

  on_lane(lane, [&] { EXPECT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok); });
  ASSERT_EQ(log->made_for.size(), 1u);
  pid_t worker = log->made_for.begin()->first;
  // On a machine loaded by other tests (and sanitizers) even a short run can pass 100 ms, and is
  // then let go like a long one: a few more runs on the lane, and one stays short.
  auto run_on_lane_until_one_is_short = [&] {
    for (int again = 0; again < 5 && cpus_of(worker) != std::set<int>{lane}; ++again) {
      on_lane(lane, [&] { EXPECT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok); });
    }
  };
  run_on_lane_until_one_is_short();
  EXPECT_EQ(cpus_of(worker), std::set<int>{lane})
      << "a lane's run should keep its worker on its CPU";

  // A (short) run from a thread on no lane leaves the worker where it is.
  bool ran_short = false;
  for (int attempt = 0; attempt < 5 && !ran_short; ++attempt) {
    auto started = std::chrono::steady_clock::now();
    EXPECT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok);
    ran_short = std::chrono::steady_clock::now() - started < std::chrono::milliseconds(100);
    if (!ran_short) run_on_lane_until_one_is_short();
  }
  ASSERT_TRUE(ran_short) << "no run took less than 100 ms: the machine is too busy for this test";
  EXPECT_EQ(cpus_of(worker), std::set<int>{lane});

  // A run past the worker's long_run_ms is let go to every CPU while it runs.
  // So is every lane thread, the caller's included (cpu_lane.h).
  // The watcher reads both placements until both are let go, or until the run has returned:
  // only readings taken before then count, whenever the run got going (a fixed wait could read
  // them before a loaded machine had begun the run, or had let them go at 100 ms).
  std::set<int> during_long_run, caller_during_long_run;
  std::atomic<pid_t> caller{0};
  std::atomic<bool> run_returned{false};
  std::thread watcher([&] {
    for (;;) {
      pid_t caller_tid = caller.load();
      std::set<int> worker_cpus = cpus_of(worker);
      std::set<int> caller_cpus = caller_tid ? cpus_of(caller_tid) : std::set<int>{};
      if (run_returned) break;  // these readings may be from after the run
      during_long_run = worker_cpus;
      caller_during_long_run = caller_cpus;
      if (worker_cpus == every_cpu && caller_cpus == every_cpu) break;
      std::this_thread::sleep_for(1ms);
    }
  });
  on_lane(lane, [&] {
    caller = gettid();
    // 0.6 s of CPU, with room in its wall-time limit for a machine busy with other tests.
    auto result = pool.run(request_for(
        "acme", "function handle() local t = os.clock() while os.clock() - t < 0.6 do end end",
        {{"timeout_ms", 10'000}, {"fuel", 1'000'000'000}}));
    run_returned = true;
    EXPECT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  });
  watcher.join();
  EXPECT_EQ(during_long_run, every_cpu);
  EXPECT_EQ(caller_during_long_run, every_cpu);
  EXPECT_TRUE(lanes_pinned()) << "the long run has ended";

  // Its next (short) run on the lane brings it back.
  on_lane(lane, [&] { EXPECT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok); });
  run_on_lane_until_one_is_short();
  EXPECT_EQ(cpus_of(worker), std::set<int>{lane});
  EXPECT_EQ(log->made_for.size(), 1u) << "every run should have been served by the one worker";
}

TEST(TenantPool, EachLaneSettlesOnIdleWorkersOfItsOwn) {
  const auto& allowed = allowed_cpus();
  if (allowed.size() < 2) GTEST_SKIP() << "needs two CPUs for two lanes";
  int lane_a = allowed[0], lane_b = allowed[1];
  auto log = std::make_shared<FactoryLog>();
  // No run here is long (1 s), however loaded the machine: each stays on its lane's CPU.
  TenantPool pool({.warm_per_tenant = 0}, real_workers(log, 1000));
  pool.prewarm("acme", 2);
  ASSERT_TRUE(eventually([&] { return pool.idle_for("acme") == 2; }));

  // Taking turns, the lanes would move the most recently used worker back and forth if they
  // did not prefer their own: each would end on the last lane, and one worker would stay idle.
  for (int turn = 0; turn < 3; ++turn) {
    on_lane(lane_a, [&] { EXPECT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok); });
    on_lane(lane_b, [&] { EXPECT_EQ(pool.run(request_for("acme")).outcome, Outcome::ok); });
  }
  ASSERT_EQ(log->made_for.size(), 2u);
  std::multiset<std::set<int>> placed;
  for (const auto& [pid, tenant] : log->made_for) placed.insert(cpus_of(pid));
  EXPECT_EQ(placed, (std::multiset<std::set<int>>{{lane_a}, {lane_b}}));
}

TEST(TenantPool, KillsItsWorkersWhenDestroyed) {
  {
    TenantPool pool({}, real_workers());
    pool.prewarm("acme", 2);
    ASSERT_TRUE(eventually([&] { return pool.idle_for("acme") == 2; }));
    EXPECT_EQ(child_processes(), 2u);
  }
  EXPECT_EQ(child_processes(), 0u);
}

}  // namespace
}  // namespace corral
