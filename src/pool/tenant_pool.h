// The pool of corral-worker processes that runs every invocation (DESIGN.md, "Shape"; issue 3,
// "The pool").
//
// Contract:
// - A worker is made for one tenant by the factory and serves only that tenant until it dies:
//   an idle worker of tenant A is never handed to tenant B, not even when B is starved.
// - A worker has at most one invocation in flight.
// - At most max_workers worker processes exist at any moment, counting those being started and
//   those being stopped. When the cap is reached, an idle worker of another tenant is evicted
//   (least recently used first); when every worker is busy, run() waits until one frees up, but
//   not past the request's deadline (limits.timeout_ms): then the result is `rejected`. The
//   wait does not shorten the script's own wall-time budget, so a run may take up to twice
//   timeout_ms end to end.
// - A worker that cannot be started, or that dies or stalls before it says it is ready (it
//   jails itself and readies its runtime first), is no fault of the script: the run that
//   needed it is `rejected` with a Retry-After, never `crashed`, which would count against the
//   script's version (sched/circuit_breaker.h). A new worker is waited for until it is ready,
//   up to start_timeout_ms (or the run's timeout_ms if shorter), before the invocation is sent,
//   so its start does not eat into the script's wall time either. Failed starts are counted,
//   and reported through on_start_failure at most once per start_failure_report_ms.
// - After a run, a worker is retired unless the outcome was ok or script_error, it is still
//   alive, and it has served fewer than recycle_after invocations. A worker that died while
//   idle (killed, OOM) is found out when the invocation is sent to it (the channel is closed):
//   it is retired and the run goes to another worker once, as the run had not started; that
//   attempt checks the idle workers it is offered for life first, since what killed one often
//   killed others. If the run still finds no live worker it is `rejected`, never `crashed`.
// - With a memory budget (memory_budget_bytes > 0), every worker is counted at what it costs
//   the machine: what the kernel spends on it (worker_kernel_bytes, measured at start:
//   pool/worker_cost.h) plus its own anonymous memory, read when it is ready and again after
//   every measure_every-th run (a new one is counted at worker_user_bytes until then). A worker
//   is started only while the budget has room for one more; idle workers of every tenant are
//   kept while the pool is within its budget, and when it is over, the longest idle go first.
//   The count caps still bound the pool (descriptors, ids), as an advanced setting.
// - After serving a tenant, the pool starts replacements in the background until the tenant
//   has warm_per_tenant idle workers, as long as that needs no eviction and nobody is waiting
//   for capacity; at most max_idle workers are kept idle in all, the least recently used beyond
//   that are evicted.
// - With spare_workers > 0, the pool also keeps that many spares: workers started and jailed
//   for no tenant yet. A tenant with no idle worker of its own takes a spare and binds it for
//   life, so a new tenant's first run does not wait for a spawn. A spare has served nobody,
//   so binding it keeps the one-tenant-per-worker rule. Spares count under max_workers but
//   not under max_idle, and are started again in the background as they are taken. After a burst
//   of new tenants, as many spares as were bound in the last second are kept ready (at most
//   8 × spare_workers), so that the next ones find a spare too.
// - A caller on a CPU lane (invocation/cpu_lane.h) is served by the tenant's most recently used
//   idle worker already on its CPU, else by the most recent one on no CPU in particular, else by
//   the most recent one; the worker is pinned to the caller's CPU for the run, and let go to
//   every CPU if the run lasts longer than kLongRunMs. Other callers take the most recently used
//   idle worker and leave its CPU as it is. While a long run is in progress (lanes_pinned() is
//   false) no worker is pinned, and every caller takes the most recently used one.
// - Every worker is started on one long-lived thread owned by the pool, because a worker's
//   PR_SET_PDEATHSIG fires when the *thread* that started it exits: a worker started on a
//   caller's thread would be killed when that thread ends.
// - run() is safe to call from many threads and never throws. The pool must outlive every
//   run() call; its destructor kills all workers.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "invocation/executor.h"

namespace corral {

class WorkerProcess;

class TenantPool : public Executor {
 public:
  struct StartFailureReport {
    std::string tenant;     // "" for a spare
    std::string why;        // the latest failure
    uint64_t failures = 0;  // since the last report, this one included
  };

  struct Options {
    size_t max_workers = 64;        // global cap on live worker processes, idle + busy
    size_t warm_per_tenant = 1;     // idle workers kept ready per recently used tenant
    size_t max_idle = 32;           // total idle workers kept
    uint64_t recycle_after = 1000;  // invocations per worker before retiring it
    int64_t kill_grace_ms = 50;     // past a run's deadline before its worker is killed
    size_t spare_workers = 0;       // jailed workers kept ready for tenants that have none
    // The memory all workers together may cost (0: the count caps alone), and how a worker is
    // counted against it (see the contract above).
    size_t memory_budget_bytes = 0;
    size_t worker_kernel_bytes = 0;
    size_t worker_user_bytes = 0;
    uint64_t measure_every = 16;
    // Told that workers could not be started, at most once per start_failure_report_ms (the
    // first failure at once). Called on the thread that saw the failure, never under the
    // pool's lock; it must not call back into the pool.
    std::function<void(const StartFailureReport&)> on_start_failure = {};
    int64_t start_failure_report_ms = 10'000;
    // How long a new worker has to announce it is ready before it is killed as a failed start.
    int64_t start_timeout_ms = 5'000;
  };

  // Starts a worker for a tenant, or a spare for no tenant yet when the name is empty; how it
  // is confined is the factory's business. Called only on the pool's spawner thread. Throws to say
  // it cannot: the message becomes the detail of the `rejected` result of the run that needed
  // the worker.
  using WorkerFactory = std::function<std::unique_ptr<WorkerProcess>(const std::string& tenant)>;

  struct Stats {
    size_t live = 0;  // workers that exist or are being started or stopped: at most max_workers
    size_t idle = 0;
    size_t busy = 0;              // serving a run
    uint64_t spawned = 0;         // workers the factory made
    uint64_t retired = 0;         // stopped after a run, or found dead while idle
    uint64_t evicted = 0;         // idle workers stopped to make room
    size_t spare = 0;             // idle workers bound to no tenant yet (counted in idle too)
    size_t starting = 0;          // being started, or queued to be
    size_t stopping = 0;          // being killed and reaped
    uint64_t bound = 0;           // spares handed to a tenant
    uint64_t start_failures = 0;  // workers that could not be started or never got ready
    size_t accounted_bytes = 0;   // what the live workers are counted at against the budget
    size_t memory_budget_bytes = 0;
  };

  TenantPool(Options options, WorkerFactory factory);
  ~TenantPool() override;
  TenantPool(const TenantPool&) = delete;
  TenantPool& operator=(const TenantPool&) = delete;

  InvocationResult run(const InvocationRequest& request) override;

  // Asks for `count` idle workers of `tenant` (at most max_idle) to be started in the
  // background, within free capacity; returns at once.
  void prewarm(const std::string& tenant, size_t count);

  Stats stats() const;
  size_t idle_for(const std::string& tenant) const;

 private:
  struct IdleWorker;
  struct SpawnJob;
  using Lock = std::unique_lock<std::mutex>;

  size_t live_locked() const;
  // Whether one more worker fits under the count cap and the memory budget.
  bool room_for_one_more_locked() const;
  bool over_budget_locked() const;
  size_t new_worker_cost() const {
    return options_.worker_kernel_bytes + options_.worker_user_bytes;
  }
  // Counts a worker at its kernel share plus its anonymous memory now; call without mutex_.
  size_t measured_cost(const WorkerProcess& worker) const;
  size_t idle_for_locked(const std::string& tenant) const;
  std::unique_ptr<WorkerProcess> take_idle_locked(const std::string& tenant);
  std::unique_ptr<WorkerProcess> take_own_or_spare_locked(const std::string& tenant);
  void evict_oldest_bound_locked(std::vector<std::unique_ptr<WorkerProcess>>& evicted);
  void note_bound_locked();      // a spare was handed to a tenant
  size_t spare_target_locked();  // spares to keep ready now
  std::shared_ptr<SpawnJob> claim_pending_locked(const std::string& tenant);
  std::shared_ptr<SpawnJob> enqueue_locked(const std::string& tenant, bool claimed);
  bool cancel_unclaimed_locked();
  void make_idle_locked(const std::string& tenant, std::unique_ptr<WorkerProcess> worker,
                        Lock& lock);
  void warm_locked(const std::string& tenant, size_t want);
  void stop_workers(std::vector<std::unique_ptr<WorkerProcess>> workers, Lock& lock);
  void spawner_loop();
  // Counts a failed start, and reports it when the last report is old enough. Call without mutex_.
  void note_start_failure(const std::string& tenant, const std::string& why);

  const Options options_;
  const WorkerFactory factory_;

  mutable std::mutex mutex_;
  std::condition_variable capacity_changed_;  // a worker was freed, stopped, or made idle
  std::condition_variable jobs_changed_;      // for the spawner: new job, or stopping
  using IdleList = std::list<IdleWorker>;
  // Least recently used first; a tenant takes its most recently used worker.
  IdleList idle_;
  // Each tenant's entries of idle_, least recently used first: a run finds its tenant's workers
  // without walking every other tenant's (with 10,000 tenants idle, a walk of idle_ under mutex_
  // cost every run ten thousand comparisons).
  std::unordered_map<std::string, std::vector<IdleList::iterator>> idle_by_tenant_;
  std::deque<std::shared_ptr<SpawnJob>> jobs_;
  std::shared_ptr<SpawnJob> spawning_now_;
  size_t busy_ = 0;
  size_t spawning_ = 0;         // jobs queued or in progress; each holds a slot under the cap
  size_t stopping_ = 0;         // workers being killed and reaped; each still holds its slot
  size_t waiters_ = 0;          // run() calls waiting for capacity
  size_t accounted_bytes_ = 0;  // live workers and queued starts, as the budget counts them
  uint64_t spawned_ = 0;
  uint64_t retired_ = 0;
  uint64_t evicted_ = 0;
  uint64_t bound_ = 0;
  std::deque<std::chrono::steady_clock::time_point> recent_binds_;  // within the last second
  bool shutting_down_ = false;

  mutable std::mutex start_failures_mutex_;  // apart from mutex_: held while on_start_failure runs
  uint64_t start_failures_ = 0;
  uint64_t unreported_start_failures_ = 0;
  std::optional<std::chrono::steady_clock::time_point> last_start_failure_report_;

  std::thread spawner_;  // last: started once everything above exists
};

}  // namespace corral
