// The store on SQLite against the store on PostgreSQL, side by side in one run on this machine:
// audit appends/s (each one chained to the last, under the store's write lock), kv puts and
// reads/s, and jobs claimed and finished/s, with one "node" (one store object, as one corrald
// holds) and, on PostgreSQL, three nodes on one database. Each node runs `threads` callers.
// PostgreSQL is a server of the bench's own (support/postgres_server.h: unix socket, fsync off,
// as in the tests), so the figures compare the store's code paths and the databases' locking,
// not disks. Usage: corral-store-bench [seconds-per-figure] [threads-per-node]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "audit/audit.h"
#include "store/sqlite_fixture.h"
#include "store/store.h"
#include "support/postgres_server.h"

namespace {

using namespace corral;
using Clock = std::chrono::steady_clock;

struct Backend {
  std::string name;
  std::function<std::unique_ptr<store::Store>()> open;
};

// Calls `work(node, thread, i)` from every thread of every node for `seconds`; operations/s.
double rate(std::vector<std::unique_ptr<store::Store>>& nodes, int threads, double seconds,
            const std::function<bool(store::Store&, int, int64_t)>& work) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> done{0};
  std::atomic<int> running{0};
  std::vector<std::thread> callers;
  auto start = Clock::now();
  for (size_t node = 0; node < nodes.size(); ++node) {
    for (int t = 0; t < threads; ++t) {
      ++running;
      callers.emplace_back([&, node, t] {
        int caller = static_cast<int>(node) * threads + t;
        for (int64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
          if (!work(*nodes[node], caller, i)) break;
          done.fetch_add(1, std::memory_order_relaxed);
        }
        --running;
      });
    }
  }
  // Until the time is up, or every caller has run out of work.
  auto until =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < until && running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop = true;
  for (auto& caller : callers) caller.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  return static_cast<double>(done.load()) / elapsed;
}

void measure(const Backend& backend, int node_count, int threads, double seconds) {
  std::vector<std::unique_ptr<store::Store>> nodes;
  for (int n = 0; n < node_count; ++n) nodes.push_back(backend.open());
  std::string tenant = nodes[0]->create_tenant("bench", store::now_ms()).id;
  std::vector<std::unique_ptr<audit::AuditTrail>> trails;
  for (auto& node : nodes) trails.push_back(std::make_unique<audit::AuditTrail>(*node));

  double appends = rate(nodes, threads, seconds, [&](store::Store&, int caller, int64_t i) {
    trails[static_cast<size_t>(caller / threads)]->record("tok", "bench", "bench.append",
                                                          "/v1/bench/" + std::to_string(i),
                                                          audit::Decision::allow, "a bench entry");
    return true;
  });
  double puts = rate(nodes, threads, seconds, [&](store::Store& node, int caller, int64_t i) {
    node.put_kv(tenant, "ns", "k" + std::to_string(caller) + "-" + std::to_string(i % 1000),
                {std::string(64, 's'), 64}, {1'000'000, 1ll << 30});
    return true;
  });
  double reads = rate(nodes, threads, seconds, [&](store::Store& node, int caller, int64_t i) {
    node.find_kv(tenant, "ns", "k" + std::to_string(caller) + "-" + std::to_string(i % 1000));
    return true;
  });
  // Jobs: submitted first, then claimed and finished by every node until none is left.
  constexpr int kJobs = 3000;
  for (int j = 0; j < kJobs; ++j) {
    nodes[0]->submit_job({.tenant_id = tenant,
                          .script = "s",
                          .version = 1,
                          .idempotency_key = "job-" + std::to_string(j),
                          .request_sha256 = "h",
                          .input = "{}",
                          .created_by = "tok",
                          .created_at = store::now_ms()},
                         1'000'000, 1'000'000);
  }
  std::atomic<int64_t> finished{0};
  double jobs = rate(nodes, threads, 600, [&](store::Store& node, int caller, int64_t) {
    auto job = node.claim_job(store::now_ms(), "node-" + std::to_string(caller), 30'000);
    if (!job) return false;
    node.finish_job({.id = job->id,
                     .lease_token = job->lease_token,
                     .state = store::JobState::succeeded,
                     .outcome = "ok",
                     .status = 200,
                     .result = "{}",
                     .at = store::now_ms()});
    ++finished;
    return true;
  });
  std::printf("%-16s %5d %7d %14.0f %10.0f %10.0f %12.0f\n", backend.name.c_str(), node_count,
              threads, appends, puts, reads, jobs);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::stod(argv[1]) : 3.0;
  int threads = argc > 2 ? std::stoi(argv[2]) : 2;
  if (auto why = corral::testing::PostgresServer::unavailable()) {
    std::fprintf(stderr, "corral-store-bench: %s\n", why->c_str());
    return 1;
  }
  corral::testing::TempDir dir;
  // PostgreSQL as durable as corral runs SQLite (synchronous=FULL: an fsync per commit), and, for
  // comparison, as the tests run it (fsync off).
  corral::testing::PostgresServer durable(true), unsynced(false);
  int databases = 0;
  Backend sqlite{"sqlite", [&] { return store::open_sqlite_store(dir.path() / "data"); }};
  auto postgres = [&](corral::testing::PostgresServer& server, const std::string& name) {
    std::string database = "bench" + std::to_string(++databases);
    server.create_database(database);
    std::string url = server.url(database);
    return Backend{name, [url] { return store::open_postgres_store(url); }};
  };
  std::printf("%-16s %5s %7s %14s %10s %10s %12s\n", "store", "nodes", "threads", "audit appends/s",
              "kv puts/s", "kv reads/s", "jobs/s");
  measure(sqlite, 1, threads, seconds);
  measure(postgres(durable, "postgresql"), 1, threads, seconds);
  measure(postgres(durable, "postgresql"), 3, threads, seconds);
  measure(postgres(unsynced, "pg, fsync off"), 1, threads, seconds);
  measure(postgres(unsynced, "pg, fsync off"), 3, threads, seconds);
  return 0;
}
