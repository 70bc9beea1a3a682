// corral-pool-bench: measures the worker pool directly (no HTTP), with real jailed workers.
//
//   cold start   the first invocation of a brand-new tenant, two ways. With spares (corrald's
//                default, --spare-workers): the pool keeps --spares jailed workers bound to no
//                tenant, the new tenant's run binds one, and the spare is replaced in the
//                background before the next tenant arrives. Without spares: a worker is spawned
//                for the tenant on the run's path, jails itself, readies its runtime and runs a
//                trivial script. Median and p99 over --cold-tenants tenants, one at a time, with
//                room in the pool (no eviction).
//   idle memory  --idle-workers idle workers of one tenant are pre-warmed; for each worker
//                process (the children of this process) VmRSS from /proc/PID/status and Pss
//                and private pages from /proc/PID/smaps_rollup are read; the mean is reported.
//                Then the same for workers that have each run 100 invocations.
//   teardown     how long killing, reaping and un-cgrouping one worker takes (paid by the
//                run() that retires or evicts it).
//   throughput   1, 10, 100 and 1,000 tenants take turns (invocation k runs as tenant k mod T)
//                from --threads threads, on a pool sized by --memory-budget (each tenant's
//                worker started first) or of --max-workers workers, for --seconds seconds each
//                after a warm-up second; invocations/s and p50/p99 latency.
//
// Usage: corral-pool-bench [--worker PATH] [--cold-tenants 50] [--spares 2] [--idle-workers 20]
//                          [--threads 16] [--max-workers 64] [--memory-budget 25%|none]
//                          [--seconds 5]
//                          [--tenants 1,10,100,1000] [--format markdown|kv]
// --format kv prints "key value" lines (for bench/jail.sh) instead of a markdown table.
// Every layer this machine offers is used; missing layers are tolerated and listed.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "invocation/invocation.h"
#include "jail/jail.h"
#include "pool/jail_setup.h"
#include "pool/tenant_pool.h"
#include "pool/worker_cost.h"
#include "pool/worker_process.h"

#ifndef CORRAL_WORKER_PATH
#define CORRAL_WORKER_PATH "corral-worker"
#endif

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kTrivial = "function handle(input, ctx) return {ok = true} end";
constexpr const char* kTransform =
    "function handle(input) input.total = input.amount * 1.2 input.seen = true return input end";

nlohmann::json order() {
  return {{"id", 7}, {"amount", 10}, {"currency", "EUR"}, {"customer", "c-42"}, {"items", 3}};
}

struct Settings {
  std::string worker = CORRAL_WORKER_PATH;
  size_t cold_tenants = 50;
  size_t spares = 2;
  size_t idle_workers = 20;
  size_t threads = 16;
  size_t max_workers = 64;
  // corrald's default: the throughput pools are sized by memory, each worker counted at what it
  // costs (measured once); "none" gives them the count caps alone (--max-workers, idle 32).
  std::string memory_budget = "25%";
  uint64_t memory_budget_bytes = 0;
  corral::WorkerCost worker_cost;
  double seconds = 5;
  std::vector<size_t> tenant_counts = {1, 10, 100, 1000};
  bool kv = false;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Nearest-rank percentile of an unsorted sample.
double percentile(std::vector<double> values, double p) {
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

double mean(const std::vector<double>& values) {
  if (values.empty()) return NAN;
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

// The worker ceilings corrald applies with its default limits policy, so that the bench's
// workers are the ones corrald would start.
corral::jail::Ceilings corrald_ceilings() { return corral::ceilings_for(corral::LimitsPolicy{}); }

corral::InvocationRequest request_for(const std::string& tenant, const char* source) {
  corral::InvocationRequest request;
  request.invocation_id = corral::new_invocation_id();
  request.tenant = tenant;
  request.source = source;
  request.input = order();
  request.limits = corral::LimitsPolicy{}.defaults;
  return request;
}

// Every child process of this process, over all its threads (workers are children of the
// pool's spawner thread).
std::set<pid_t> children() {
  std::set<pid_t> pids;
  DIR* tasks = opendir("/proc/self/task");
  if (!tasks) return pids;
  while (dirent* task = readdir(tasks)) {
    if (task->d_name[0] == '.') continue;
    std::ifstream list(std::string("/proc/self/task/") + task->d_name + "/children");
    pid_t pid;
    while (list >> pid) pids.insert(pid);
  }
  closedir(tasks);
  return pids;
}

// Busy and total jiffies of all CPUs, from /proc/stat, to tell CPU-bound from latency-bound runs.
std::pair<double, double> cpu_jiffies() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  double busy = user + nice + system + irq + softirq + steal;
  return {busy, busy + idle + iowait};
}

// A "Key:   123 kB" field of a /proc file, in KiB; -1 when absent or unreadable.
long proc_kib(const std::string& path, const std::string& key) {
  std::ifstream file(path);
  std::string line;
  while (std::getline(file, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream fields(line.substr(key.size() + 1));
      long kib = -1;
      fields >> kib;
      return kib;
    }
  }
  return -1;
}

// A factory making jailed workers the way corrald does, timing each spawn.
struct Factory {
  const corral::JailSetup& jail;
  std::string worker_path;
  std::mutex mutex;
  std::vector<double> spawn_ms;  // time in WorkerProcess's constructor (clone .. exec)

  corral::TenantPool::WorkerFactory make() {
    return [this](const std::string& tenant) {
      auto started = Clock::now();
      auto worker = std::make_unique<corral::WorkerProcess>(jail.spec_for(worker_path, tenant));
      double took = ms_since(started);
      std::lock_guard lock(mutex);
      spawn_ms.push_back(took);
      return worker;
    };
  }
  std::vector<double> take_spawn_times() {
    std::lock_guard lock(mutex);
    return std::exchange(spawn_ms, {});
  }
};

struct Report {
  std::vector<std::pair<std::string, std::string>> kv;  // for --format kv
  std::vector<std::array<std::string, 3>> rows;         // measure, value, notes
  void add(const std::string& key, double value, const char* format = "%.2f") {
    char text[64];
    std::snprintf(text, sizeof text, format, value);
    kv.emplace_back(key, text);
  }
  void row(std::string measure, std::string value, std::string notes = "") {
    rows.push_back({std::move(measure), std::move(value), std::move(notes)});
  }
};

std::string fmt(const char* format, double a, double b = 0, double c = 0) {
  char text[160];
  std::snprintf(text, sizeof text, format, a, b, c);
  return text;
}

int failures_to_stderr(const corral::InvocationResult& result, const std::string& what) {
  if (result.outcome == corral::Outcome::ok) return 0;
  static std::atomic<int> printed{0};
  if (printed++ < 5) {
    std::fprintf(stderr, "corral-pool-bench: %s: %s\n", what.c_str(),
                 corral::describe_failure(result).c_str());
  }
  return 1;
}

void measure_cold(const Settings& settings, const corral::JailSetup& jail, Report& report) {
  Factory factory{jail, settings.worker, {}, {}};
  // Room for every tenant's worker and no background pre-warming: each run below starts
  // exactly one worker, and nothing else runs while it is timed.
  corral::TenantPool pool({.max_workers = settings.cold_tenants + 4,
                           .warm_per_tenant = 0,
                           .max_idle = settings.cold_tenants + 4},
                          factory.make());
  // One untimed run first, so that page cache and lazily-created cgroup parents are warm.
  failures_to_stderr(pool.run(request_for("cold-warmup", kTrivial)), "cold warm-up");
  factory.take_spawn_times();

  std::vector<double> first, second;
  int errors = 0;
  for (size_t i = 0; i < settings.cold_tenants; ++i) {
    std::string tenant = "cold-" + std::to_string(i);
    auto started = Clock::now();
    auto result = pool.run(request_for(tenant, kTrivial));
    first.push_back(ms_since(started));
    errors += failures_to_stderr(result, "cold start of " + tenant);
    started = Clock::now();
    result = pool.run(request_for(tenant, kTrivial));
    second.push_back(ms_since(started));
    errors += failures_to_stderr(result, "second run of " + tenant);
  }
  auto spawn = factory.take_spawn_times();
  size_t n = settings.cold_tenants;
  report.add("cold_tenants", static_cast<double>(n), "%.0f");
  report.add("cold_p50_ms", percentile(first, 0.5), "%.3f");
  report.add("cold_p99_ms", percentile(first, 0.99), "%.3f");
  report.add("cold_mean_ms", mean(first), "%.3f");
  report.add("cold_spawn_p50_ms", percentile(spawn, 0.5), "%.3f");
  report.add("warm_single_p50_ms", percentile(second, 0.5), "%.3f");
  report.add("cold_errors", errors, "%.0f");
  report.row(
      fmt("cold start: first invocation of a new tenant, %.0f tenants", static_cast<double>(n)),
      fmt("p50 %.2f ms, p99 %.2f ms", percentile(first, 0.5), percentile(first, 0.99)),
      fmt("of which spawn (clone3 .. exec) p50 %.2f ms; mean %.2f ms", percentile(spawn, 0.5),
          mean(first)));
  report.row("same tenant's second invocation (warm worker, one caller)",
             fmt("p50 %.3f ms, p99 %.3f ms", percentile(second, 0.5), percentile(second, 0.99)),
             errors ? fmt("%.0f failed runs", errors) : "");
}

// A new tenant's first run when the pool has a spare ready: the run binds it. The spare taken is
// replaced in the background; the next tenant comes once it is, and the time that takes is the
// pace at which new tenants can arrive and all find a spare.
void measure_cold_with_spares(const Settings& settings, const corral::JailSetup& jail,
                              Report& report) {
  if (settings.spares == 0) return;
  Factory factory{jail, settings.worker, {}, {}};
  corral::TenantPool pool({.max_workers = settings.cold_tenants + settings.spares + 4,
                           .warm_per_tenant = 0,
                           .max_idle = settings.cold_tenants + 4,
                           .spare_workers = settings.spares},
                          factory.make());
  auto spares_ready = [&] {
    auto until = Clock::now() + std::chrono::seconds(10);
    while (pool.stats().spare < settings.spares && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  };
  spares_ready();
  failures_to_stderr(pool.run(request_for("spare-warmup", kTrivial)), "spare warm-up");
  std::vector<double> first, refill;
  int errors = 0;
  for (size_t i = 0; i < settings.cold_tenants; ++i) {
    auto waited = Clock::now();
    spares_ready();
    refill.push_back(ms_since(waited));
    std::string tenant = "spare-" + std::to_string(i);
    auto started = Clock::now();
    auto result = pool.run(request_for(tenant, kTrivial));
    first.push_back(ms_since(started));
    errors += failures_to_stderr(result, "first run of " + tenant + " on a spare");
  }
  auto bound = pool.stats().bound;
  report.add("cold_spare_p50_ms", percentile(first, 0.5), "%.3f");
  report.add("cold_spare_p99_ms", percentile(first, 0.99), "%.3f");
  report.add("cold_spare_refill_p50_ms", percentile(refill, 0.5), "%.3f");
  report.add("cold_spare_bound", static_cast<double>(bound), "%.0f");
  report.add("cold_spare_errors", errors, "%.0f");
  report.row(fmt("cold start with %.0f spares: first invocation of a new tenant, %.0f tenants",
                 static_cast<double>(settings.spares), static_cast<double>(settings.cold_tenants)),
             fmt("p50 %.3f ms, p99 %.3f ms", percentile(first, 0.5), percentile(first, 0.99)),
             fmt("%.0f runs bound a spare; waited p50 %.2f ms for the spare to be replaced",
                 static_cast<double>(bound), percentile(refill, 0.5)) +
                 (errors ? fmt(", %.0f failed runs", errors) : std::string()));
}

// What a caller of TenantPool::run() waits for when its worker is retired or another idle
// worker is evicted on its way out: killing, reaping and removing the worker's cgroups.
void measure_teardown(const Settings& settings, const corral::JailSetup& jail, Report& report) {
  std::vector<double> teardown;
  size_t n = std::min<size_t>(settings.cold_tenants, 30);
  for (size_t i = 0; i < n; ++i) {
    auto worker =
        std::make_unique<corral::WorkerProcess>(jail.spec_for(settings.worker, "teardown"));
    failures_to_stderr(
        worker->invoke(request_for("teardown", kTrivial), std::chrono::milliseconds(50)),
        "teardown run");
    auto started = Clock::now();
    worker.reset();
    teardown.push_back(ms_since(started));
  }
  report.add("teardown_p50_ms", percentile(teardown, 0.5), "%.3f");
  report.add("teardown_p99_ms", percentile(teardown, 0.99), "%.3f");
  report.row(
      fmt("worker teardown (kill, reap, remove cgroups), %.0f workers", static_cast<double>(n)),
      fmt("p50 %.2f ms, p99 %.2f ms", percentile(teardown, 0.5), percentile(teardown, 0.99)),
      "paid by the run() that retires or evicts a worker, before it returns");
}

void measure_idle_memory(const Settings& settings, const corral::JailSetup& jail, Report& report) {
  std::set<pid_t> before = children();
  Factory factory{jail, settings.worker, {}, {}};
  corral::TenantPool pool({.max_workers = settings.idle_workers + 4,
                           .warm_per_tenant = settings.idle_workers,
                           .max_idle = settings.idle_workers},
                          factory.make());
  pool.prewarm("idle", settings.idle_workers);
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (pool.idle_for("idle") < settings.idle_workers && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let them settle in their read()

  std::vector<double> rss, pss, priv;
  for (pid_t pid : children()) {
    if (before.contains(pid)) continue;
    std::string dir = "/proc/" + std::to_string(pid);
    long vm_rss = proc_kib(dir + "/status", "VmRSS");
    long pss_kib = proc_kib(dir + "/smaps_rollup", "Pss");
    long clean = proc_kib(dir + "/smaps_rollup", "Private_Clean");
    long dirty = proc_kib(dir + "/smaps_rollup", "Private_Dirty");
    if (vm_rss >= 0) rss.push_back(static_cast<double>(vm_rss));
    if (pss_kib >= 0) pss.push_back(static_cast<double>(pss_kib));
    if (clean >= 0 && dirty >= 0) priv.push_back(static_cast<double>(clean + dirty));
  }
  if (rss.empty()) {
    std::fprintf(stderr,
                 "corral-pool-bench: found no worker processes among this process's children\n");
  }
  report.add("idle_workers", static_cast<double>(rss.size()), "%.0f");
  report.add("idle_rss_kib", mean(rss), "%.0f");
  report.add("idle_rss_max_kib", rss.empty() ? NAN : *std::max_element(rss.begin(), rss.end()),
             "%.0f");
  report.add("idle_pss_kib", mean(pss), "%.0f");
  report.add("idle_private_kib", mean(priv), "%.0f");
  report.row(fmt("idle worker resident memory, mean of %.0f pre-warmed workers",
                 static_cast<double>(rss.size())),
             fmt("VmRSS %.2f MiB", mean(rss) / 1024),
             fmt("Pss %.2f MiB, private (USS) %.2f MiB", mean(pss) / 1024, mean(priv) / 1024) +
                 (pss.empty() ? " (smaps_rollup unreadable)" : ""));

  // The same, for workers that have served traffic: each runs the JSON transformation 100 times.
  std::vector<std::unique_ptr<corral::WorkerProcess>> used;
  std::vector<double> used_rss, used_pss;
  for (size_t i = 0; i < settings.idle_workers; ++i) {
    used.push_back(std::make_unique<corral::WorkerProcess>(jail.spec_for(settings.worker, "used")));
    for (int k = 0; k < 100; ++k) {
      failures_to_stderr(
          used.back()->invoke(request_for("used", kTransform), std::chrono::milliseconds(50)),
          "memory run");
    }
  }
  for (auto& worker : used) {
    std::string dir = "/proc/" + std::to_string(worker->pid());
    long vm_rss = proc_kib(dir + "/status", "VmRSS");
    long pss_kib = proc_kib(dir + "/smaps_rollup", "Pss");
    if (vm_rss >= 0) used_rss.push_back(static_cast<double>(vm_rss));
    if (pss_kib >= 0) used_pss.push_back(static_cast<double>(pss_kib));
  }
  report.add("used_rss_kib", mean(used_rss), "%.0f");
  report.add("used_pss_kib", mean(used_pss), "%.0f");
  report.row(fmt("idle worker resident memory after 100 invocations each, mean of %.0f",
                 static_cast<double>(used_rss.size())),
             fmt("VmRSS %.2f MiB", mean(used_rss) / 1024),
             fmt("Pss %.2f MiB", mean(used_pss) / 1024));
}

void measure_throughput(const Settings& settings, const corral::JailSetup& jail, size_t tenants,
                        Report& report) {
  Factory factory{jail, settings.worker, {}, {}};
  corral::TenantPool::Options options{.max_workers = settings.max_workers};  // corrald's others
  if (settings.memory_budget_bytes > 0) {
    options.max_workers = settings.memory_budget_bytes / corral::kLeastWorkerBytes;
    options.max_idle = options.max_workers;
    options.memory_budget_bytes = settings.memory_budget_bytes;
    options.worker_kernel_bytes = settings.worker_cost.kernel_bytes;
    options.worker_user_bytes = settings.worker_cost.user_bytes;
  }
  corral::TenantPool pool(options, factory.make());
  std::vector<std::string> names;
  for (size_t t = 0; t < tenants; ++t)
    names.push_back("tp" + std::to_string(tenants) + "-" + std::to_string(t));

  if (settings.memory_budget_bytes > 0) {
    // A node whose tenants have all run before: each has its idle worker when the round starts
    // (within the budget), instead of the round measuring their first starts.
    // Starts slow down as workers accumulate (10,000 took minutes here): wait for all of them,
    // saying how far it got, so that the round measures warm workers and not the last starts.
    for (const auto& name : names) pool.prewarm(name, 1);
    auto deadline = Clock::now() + std::chrono::minutes(30);
    auto next_report = Clock::now() + std::chrono::seconds(10);
    while (pool.stats().starting > 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (Clock::now() >= next_report) {
        next_report += std::chrono::seconds(10);
        auto now = pool.stats();
        std::fprintf(stderr, "pool bench: %zu of %zu tenants' workers started, %zu starting\n",
                     now.idle, tenants, now.starting);
      }
    }
    if (pool.stats().starting > 0)
      std::fprintf(stderr, "pool bench: gave up waiting for the workers to start after 30 min\n");
  }
  std::atomic<uint64_t> next{0};
  std::atomic<bool> measuring{false}, stop{false};
  std::atomic<uint64_t> errors{0};
  std::vector<std::vector<double>> latencies(settings.threads);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < settings.threads; ++i) {
    threads.emplace_back([&, i] {
      while (!stop.load()) {
        uint64_t k = next.fetch_add(1);
        bool counted = measuring.load();
        auto started = Clock::now();
        auto result = pool.run(request_for(names[k % tenants], kTransform));
        double took = ms_since(started);
        if (!counted || stop.load()) continue;  // only runs that began and ended inside the window
        latencies[i].push_back(took);
        if (failures_to_stderr(result, "throughput run")) ++errors;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // warm-up: not counted
  auto before = pool.stats();
  factory.take_spawn_times();
  auto cpu_before = cpu_jiffies();
  auto started = Clock::now();
  measuring = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(settings.seconds));
  stop = true;
  double elapsed_s = ms_since(started) / 1000;
  auto after = pool.stats();
  auto cpu_after = cpu_jiffies();
  double busy = 100 * (cpu_after.first - cpu_before.first) /
                std::max(1.0, cpu_after.second - cpu_before.second);
  for (auto& thread : threads) thread.join();

  std::vector<double> all;
  for (auto& per_thread : latencies) all.insert(all.end(), per_thread.begin(), per_thread.end());
  double rate = static_cast<double>(all.size()) / elapsed_s;
  double spawned = static_cast<double>(after.spawned - before.spawned);
  std::string key = "tp" + std::to_string(tenants);
  report.add(key + "_rps", rate, "%.0f");
  report.add(key + "_p50_ms", percentile(all, 0.5), "%.3f");
  report.add(key + "_p99_ms", percentile(all, 0.99), "%.3f");
  report.add(key + "_spawned", spawned, "%.0f");
  report.add(key + "_errors", static_cast<double>(errors.load()), "%.0f");
  report.add(key + "_cpu_busy_pct", busy, "%.0f");
  report.row(
      fmt("throughput, %.0f tenant(s) taking turns, %.0f threads", static_cast<double>(tenants),
          static_cast<double>(settings.threads)),
      fmt("%.0f inv/s, p50 %.2f ms, p99 %.2f ms", rate, percentile(all, 0.5),
          percentile(all, 0.99)),
      fmt("%.0f invocations in %.1f s; %.0f workers spawned", static_cast<double>(all.size()),
          elapsed_s, spawned) +
          fmt(", %.0f evicted, %.0f errors", static_cast<double>(after.evicted - before.evicted),
              static_cast<double>(errors.load())) +
          fmt("; all CPUs %.0f%% busy", busy));
}

std::vector<size_t> parse_counts(const std::string& list) {
  std::vector<size_t> counts;
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) counts.push_back(std::stoul(item));
  return counts;
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  if (const char* configured = std::getenv("CORRAL_WORKER")) settings.worker = configured;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "corral-pool-bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--worker")
      settings.worker = value();
    else if (arg == "--cold-tenants")
      settings.cold_tenants = std::stoul(value());
    else if (arg == "--spares")
      settings.spares = std::stoul(value());
    else if (arg == "--idle-workers")
      settings.idle_workers = std::stoul(value());
    else if (arg == "--threads")
      settings.threads = std::stoul(value());
    else if (arg == "--max-workers")
      settings.max_workers = std::stoul(value());
    else if (arg == "--seconds")
      settings.seconds = std::stod(value());
    else if (arg == "--memory-budget")
      settings.memory_budget = value();
    else if (arg == "--tenants")
      settings.tenant_counts = parse_counts(value());
    else if (arg == "--format")
      settings.kv = value() == "kv";
    else {
      std::fprintf(stderr,
                   "usage: corral-pool-bench [--worker PATH] [--cold-tenants N] [--spares N] "
                   "[--idle-workers N] [--threads N]\n"
                   "                         [--max-workers N] [--memory-budget 25%%|4G|none] "
                   "[--seconds S]\n"
                   "                         [--tenants 1,10,100,1000]\n"
                   "                         [--format markdown|kv]\n");
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  if (access(settings.worker.c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "corral-pool-bench: the worker '%s' is not executable; pass --worker PATH\n",
                 settings.worker.c_str());
    return 1;
  }

  corral::JailSetup::Options options;
  options.ceilings = corrald_ceilings();
  corral::JailSetup jail(corral::JailSetup::accept_any_missing(options));
  if (settings.memory_budget != "none") {
    try {
      settings.memory_budget_bytes = corral::parse_memory_amount(
          settings.memory_budget, corral::machine_memory_bytes(), "--memory-budget");
    } catch (const std::invalid_argument& bad) {
      std::fprintf(stderr, "corral-pool-bench: %s, or none\n", bad.what());
      return 2;
    }
    settings.worker_cost = corral::measure_worker_cost(jail, settings.worker);
  }

  Report report;
  measure_cold_with_spares(settings, jail, report);
  measure_cold(settings, jail, report);
  measure_teardown(settings, jail, report);
  measure_idle_memory(settings, jail, report);
  for (size_t tenants : settings.tenant_counts) measure_throughput(settings, jail, tenants, report);

  if (settings.kv) {
    std::printf("layers %s\n", jail.active().to_string().c_str());
    for (auto& [key, value] : report.kv) std::printf("%s %s\n", key.c_str(), value.c_str());
    return 0;
  }
  std::printf("jail layers: %s\n", jail.active().to_string().c_str());
  if (settings.memory_budget_bytes > 0) {
    std::printf(
        "throughput pools: memory budget %s (%.0f MiB), a worker counted at %.0f KiB of the "
        "kernel's and %.0f KiB of its own (measured)\n",
        settings.memory_budget.c_str(), static_cast<double>(settings.memory_budget_bytes >> 20),
        static_cast<double>(settings.worker_cost.kernel_bytes >> 10),
        static_cast<double>(settings.worker_cost.user_bytes >> 10));
  } else {
    std::printf("throughput pools: --max-workers %zu, 32 idle\n", settings.max_workers);
  }
  std::printf("\n");
  std::printf("| measure | value | notes |\n| --- | --- | --- |\n");
  for (auto& row : report.rows)
    std::printf("| %s | %s | %s |\n", row[0].c_str(), row[1].c_str(), row[2].c_str());
  return 0;
}
