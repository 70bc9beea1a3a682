#include "pool/tenant_pool.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>

#include "invocation/cpu_lane.h"
#include "jail/jail.h"
#include "pool/worker_process.h"

namespace corral {

struct TenantPool::IdleWorker {
  std::string tenant;
  std::unique_ptr<WorkerProcess> worker;
};

// One worker to start on the spawner thread. A claimed job has a run() waiting on its promise;
// an unclaimed one is a pre-warm whose worker goes to the idle list, and which a run() of the
// same tenant may still claim, rather than starting a second worker for it.
struct TenantPool::SpawnJob {
  struct Delivery {
    std::unique_ptr<WorkerProcess> worker = nullptr;
    std::string error = {};  // why there is no worker
    bool out_of_descriptors = false;
    bool pool_stopped = false;  // not a failed start: the pool stopped before it began this one
  };
  std::string tenant;
  bool claimed = false;
  std::promise<Delivery> promise;
};

namespace {

using Clock = std::chrono::steady_clock;

// Spares are idle workers of this tenant: no real tenant is named "" (run() refuses it).
const std::string kSpare;

InvocationResult failed(const InvocationRequest& request, Outcome outcome, std::string message) {
  InvocationResult result;
  result.invocation_id = request.invocation_id;
  result.outcome = outcome;
  result.message = std::move(message);
  return result;
}

// A run that could not be given a worker: no fault of the script, so `rejected` (the server's
// 503) and not `crashed`, which would count against its version in its circuit breaker.
InvocationResult turned_away(const InvocationRequest& request, std::string message,
                             int64_t retry_after_seconds) {
  InvocationResult result = failed(request, Outcome::rejected, std::move(message));
  result.retry_after_seconds = retry_after_seconds;
  return result;
}

// A shortage that passes by itself (the pool at its cap, no descriptor free) is worth trying
// again soon; a worker that cannot start usually needs an operator, so clients come back later.
constexpr int64_t kRetryShortageSeconds = 1;
constexpr int64_t kRetryFailedStartSeconds = 5;

InvocationResult shutting_down(const InvocationRequest& request) {
  return turned_away(request, "corrald is shutting down and starts no more runs",
                     kRetryShortageSeconds);
}

InvocationResult start_failed(const InvocationRequest& request, const std::string& why,
                              bool out_of_descriptors) {
  if (out_of_descriptors) {
    return turned_away(request,
                       "corrald has no file descriptor left to start a worker (" + why +
                           "); retry later. An operator can raise corrald's descriptor limit "
                           "(ulimit -n, LimitNOFILE=) or lower --max-connections",
                       kRetryShortageSeconds);
  }
  return turned_away(request,
                     "corrald could not start a worker for this run: " + why +
                         ". The script did not run; corrald's log has every failed start, and "
                         "corrald --check lists the jail layers this machine provides",
                     kRetryFailedStartSeconds);
}

}  // namespace

TenantPool::TenantPool(Options options, WorkerFactory factory)
    : options_(options), factory_(std::move(factory)) {
  if (options_.max_workers == 0) throw std::invalid_argument("max_workers must be at least 1");
  if (!factory_) throw std::invalid_argument("a TenantPool needs a worker factory");
  spawner_ = std::thread([this] { spawner_loop(); });
  Lock lock(mutex_);
  warm_locked(kSpare, options_.spare_workers);
}

TenantPool::~TenantPool() {
  {
    Lock lock(mutex_);
    shutting_down_ = true;
  }
  jobs_changed_.notify_all();
  capacity_changed_.notify_all();
  spawner_.join();
  idle_by_tenant_.clear();
  idle_.clear();
}

size_t TenantPool::live_locked() const { return idle_.size() + busy_ + spawning_ + stopping_; }

void TenantPool::note_bound_locked() {
  ++bound_;
  recent_binds_.push_back(Clock::now());
}

// A burst of new tenants takes the spares faster than one spawner thread replaces them: as many
// spares as were bound in the last second are kept (up to kBurstSpares times spare_workers), so
// that the rest of a burst, or the next one, finds them.
size_t TenantPool::spare_target_locked() {
  constexpr auto kBurstWindow = std::chrono::seconds(1);
  constexpr size_t kBurstSpares = 8;
  if (options_.spare_workers == 0) return 0;
  auto now = Clock::now();
  while (!recent_binds_.empty() && now - recent_binds_.front() > kBurstWindow)
    recent_binds_.pop_front();
  return std::clamp(recent_binds_.size(), options_.spare_workers,
                    options_.spare_workers * kBurstSpares);
}

bool TenantPool::room_for_one_more_locked() const {
  if (live_locked() >= options_.max_workers) return false;
  return options_.memory_budget_bytes == 0 ||
         accounted_bytes_ + new_worker_cost() <= options_.memory_budget_bytes;
}

bool TenantPool::over_budget_locked() const {
  return options_.memory_budget_bytes > 0 && accounted_bytes_ > options_.memory_budget_bytes;
}

size_t TenantPool::measured_cost(const WorkerProcess& worker) const {
  size_t user = worker.anonymous_bytes();
  return options_.worker_kernel_bytes + (user > 0 ? user : options_.worker_user_bytes);
}

// Killing and reaping wait on the kernel, so they happen with the lock released; the workers
// keep their slots under the cap until they are gone, so the cap counts real processes.
void TenantPool::stop_workers(std::vector<std::unique_ptr<WorkerProcess>> workers, Lock& lock) {
  if (workers.empty()) return;
  size_t count = workers.size();
  size_t freed = 0;
  for (const auto& worker : workers) freed += worker->accounted_bytes();
  stopping_ += count;
  lock.unlock();
  workers.clear();
  lock.lock();
  stopping_ -= count;
  accounted_bytes_ -= freed;
  capacity_changed_.notify_all();
}

std::unique_ptr<WorkerProcess> TenantPool::take_idle_locked(const std::string& tenant) {
  auto found = idle_by_tenant_.find(tenant);
  if (found == idle_by_tenant_.end()) return nullptr;
  std::vector<IdleList::iterator>& mine = found->second;
  // The tenant's most recently used idle worker, except for a caller on a lane (cpu_lane.h): it
  // takes the most recent one already on its CPU, else the most recent one on no CPU in
  // particular, so that each lane settles on workers of its own instead of moving one worker
  // from CPU to CPU and away from its caches.
  size_t chosen = mine.size() - 1;
  if (int lane_cpu = lanes_pinned() ? lane_cpu_of_this_thread() : -1; lane_cpu >= 0) {
    std::optional<size_t> on_lane, unpinned;
    for (size_t i = mine.size(); i-- > 0;) {
      int cpu = mine[i]->worker->cpu();
      if (cpu == lane_cpu) {
        on_lane = i;
        break;
      }
      if (cpu < 0 && !unpinned) unpinned = i;
    }
    chosen = on_lane.value_or(unpinned.value_or(chosen));
  }
  IdleList::iterator entry = mine[chosen];
  std::unique_ptr<WorkerProcess> worker = std::move(entry->worker);
  idle_.erase(entry);
  mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(chosen));
  if (mine.empty()) idle_by_tenant_.erase(found);
  return worker;  // if it died while idle, run() finds out when it sends the invocation
}

std::unique_ptr<WorkerProcess> TenantPool::take_own_or_spare_locked(const std::string& tenant) {
  if (auto own = take_idle_locked(tenant)) return own;
  if (options_.spare_workers == 0) return nullptr;
  auto spare = take_idle_locked(kSpare);
  if (spare) note_bound_locked();
  return spare;
}

std::shared_ptr<TenantPool::SpawnJob> TenantPool::claim_pending_locked(const std::string& tenant) {
  auto claimable = [&](const std::shared_ptr<SpawnJob>& job) {
    return job && !job->claimed && job->tenant == tenant;
  };
  std::shared_ptr<SpawnJob> job;
  if (claimable(spawning_now_)) {
    job = spawning_now_;
  } else if (auto found = std::find_if(jobs_.begin(), jobs_.end(), claimable);
             found != jobs_.end()) {
    job = *found;
  }
  if (job) {
    job->claimed = true;
  } else if (options_.spare_workers > 0 && !tenant.empty()) {
    // A spare on its way serves this tenant sooner than a spawn queued behind it.
    if ((job = claim_pending_locked(kSpare))) note_bound_locked();
  }
  return job;
}

std::shared_ptr<TenantPool::SpawnJob> TenantPool::enqueue_locked(const std::string& tenant,
                                                                 bool claimed) {
  auto job = std::make_shared<SpawnJob>();
  job->tenant = tenant;
  job->claimed = claimed;
  jobs_.push_back(job);
  ++spawning_;
  accounted_bytes_ += new_worker_cost();
  jobs_changed_.notify_one();
  return job;
}

// A run that needs room beats a pre-warm that has not started yet.
bool TenantPool::cancel_unclaimed_locked() {
  auto found = std::find_if(jobs_.rbegin(), jobs_.rend(),
                            [](const std::shared_ptr<SpawnJob>& job) { return !job->claimed; });
  if (found == jobs_.rend()) return false;
  jobs_.erase(std::next(found).base());
  --spawning_;
  accounted_bytes_ -= new_worker_cost();
  return true;
}

void TenantPool::make_idle_locked(const std::string& tenant, std::unique_ptr<WorkerProcess> worker,
                                  Lock& lock) {
  idle_by_tenant_[tenant].push_back(idle_.insert(idle_.end(), {tenant, std::move(worker)}));
  std::vector<std::unique_ptr<WorkerProcess>> evicted;
  auto spares = [&] { return idle_for_locked(kSpare); };
  // Past the idle cap or over the memory budget, the longest idle of the tenants' workers go.
  while (idle_.size() > spares() &&
         (idle_.size() - spares() > options_.max_idle || over_budget_locked())) {
    evict_oldest_bound_locked(evicted);
  }
  capacity_changed_.notify_all();
  stop_workers(std::move(evicted), lock);
}

void TenantPool::evict_oldest_bound_locked(std::vector<std::unique_ptr<WorkerProcess>>& evicted) {
  auto oldest = std::find_if(idle_.begin(), idle_.end(),
                             [](const IdleWorker& idle) { return idle.tenant != kSpare; });
  if (oldest == idle_.end()) oldest = idle_.begin();
  // The tenant's least recently used entry, the first of its list.
  auto theirs = idle_by_tenant_.find(oldest->tenant);
  theirs->second.erase(std::find(theirs->second.begin(), theirs->second.end(), oldest));
  if (theirs->second.empty()) idle_by_tenant_.erase(theirs);
  evicted.push_back(std::move(oldest->worker));
  idle_.erase(oldest);
  ++evicted_;
}

// Pre-warming only uses free capacity: it never evicts another tenant's worker and yields to
// runs already waiting for room, so it cannot make the pool slower for anyone.
void TenantPool::warm_locked(const std::string& tenant, size_t want) {
  if (tenant != kSpare) want = std::min(want, options_.max_idle);
  if (shutting_down_ || want == 0) return;
  size_t have = idle_for_locked(tenant);
  auto pending_for_tenant = [&](const std::shared_ptr<SpawnJob>& job) {
    return job && !job->claimed && job->tenant == tenant;
  };
  have += static_cast<size_t>(std::count_if(jobs_.begin(), jobs_.end(), pending_for_tenant));
  if (pending_for_tenant(spawning_now_)) ++have;
  while (have < want && waiters_ == 0 && room_for_one_more_locked()) {
    enqueue_locked(tenant, false);
    ++have;
  }
}

void TenantPool::prewarm(const std::string& tenant, size_t count) {
  Lock lock(mutex_);
  warm_locked(tenant, count);
}

InvocationResult TenantPool::run(const InvocationRequest& request) {
  try {
    if (request.tenant.empty()) {
      return failed(request, Outcome::invalid,
                    "the invocation names no tenant; every run needs one to pick its worker");
    }
    auto deadline = Clock::now() + std::chrono::milliseconds(request.limits.timeout_ms);
    // An idle worker is not checked for life before it is handed out (a system call on every
    // run): one found gone when its invocation is sent is retired, and the run goes to another.
    for (int attempt = 1;; ++attempt) {
      std::unique_ptr<WorkerProcess> worker;
      std::future<SpawnJob::Delivery> spawned;
      {
        Lock lock(mutex_);
        for (;;) {
          if (shutting_down_) return shutting_down(request);
          if ((worker = take_own_or_spare_locked(request.tenant))) {
            if (attempt > 1 && worker->exited()) {
              ++retired_;
              std::vector<std::unique_ptr<WorkerProcess>> dead;
              dead.push_back(std::move(worker));
              stop_workers(std::move(dead), lock);
              continue;
            }
            ++busy_;
            break;
          }
          if (auto job = claim_pending_locked(request.tenant)) {
            spawned = job->promise.get_future();
            break;
          }
          if (room_for_one_more_locked()) {
            spawned = enqueue_locked(request.tenant, true)->promise.get_future();
            break;
          }
          if (!idle_.empty()) {
            // No idle worker of this tenant (nor a spare) is left, so the oldest idle one is
            // another tenant's.
            std::vector<std::unique_ptr<WorkerProcess>> evicted;
            evict_oldest_bound_locked(evicted);
            stop_workers(std::move(evicted), lock);
            continue;
          }
          if (cancel_unclaimed_locked()) continue;
          if (Clock::now() >= deadline) {
            size_t cap = options_.max_workers;
            bool memory_binds = live_locked() < cap;
            std::string limit =
                memory_binds
                    ? "its memory budget of " + std::to_string(options_.memory_budget_bytes >> 20) +
                          " MiB (" + std::to_string(live_locked()) + " workers)"
                    : "its cap of " + std::to_string(cap) + (cap == 1 ? " worker" : " workers");
            return turned_away(request,
                               "the worker pool is at " + limit +
                                   ", all busy, and none freed up within the request's " +
                                   std::to_string(request.limits.timeout_ms) +
                                   " ms deadline; retry later, or ask the operator to raise " +
                                   (memory_binds ? "--worker-memory-budget" : "--max-workers"),
                               kRetryShortageSeconds);
          }
          ++waiters_;
          capacity_changed_.wait_until(lock, deadline);
          --waiters_;
        }
      }
      if (spawned.valid()) {
        SpawnJob::Delivery delivery = spawned.get();
        if (!delivery.worker) {
          if (delivery.pool_stopped) return shutting_down(request);
          return start_failed(request, delivery.error, delivery.out_of_descriptors);
        }
        worker = std::move(delivery.worker);
      }

      InvocationResult result;
      bool trusted = true;
      // Returns at once for a worker seen ready before (every warm one).
      std::string not_ready = worker->wait_until_ready(std::chrono::milliseconds(
          std::min(options_.start_timeout_ms, request.limits.timeout_ms)));
      if (!not_ready.empty()) {
        note_start_failure(request.tenant, not_ready);
        result = start_failed(request, not_ready, false);
        trusted = false;
      } else {
        try {
          worker->join_tenant(request.tenant);  // a spare, once; at once for any other
          if (!lanes_pinned()) {
            worker->run_on_cpu(-1);  // a long run is in progress: no lane keeps its CPU
          } else if (int lane_cpu = lane_cpu_of_this_thread(); lane_cpu >= 0) {
            worker->run_on_cpu(lane_cpu);
          }
          result = worker->invoke(request, std::chrono::milliseconds(options_.kill_grace_ms));
        } catch (const std::exception& error) {
          result = failed(request, Outcome::crashed,
                          std::string("cannot pass the invocation to the worker: ") + error.what());
          trusted = false;
        }
      }
      // Only a run that ended normally leaves the worker in a state worth reusing: after a limit,
      // a crash or a protocol error it may be damaged or compromised.
      bool keep = trusted && worker->alive() && !worker->worn_out() &&
                  (result.outcome == Outcome::ok || result.outcome == Outcome::script_error) &&
                  worker->invocations() < options_.recycle_after;
      bool run_not_started = trusted && worker->gone_before_invocation();
      // A worker's heap may have grown with the run: count it anew now and then (reading /proc
      // after every run would cost the warm path).
      bool remeasure =
          keep && options_.memory_budget_bytes > 0 &&
          (options_.measure_every <= 1 || worker->invocations() % options_.measure_every == 1);
      size_t cost = remeasure ? measured_cost(*worker) : 0;
      Lock lock(mutex_);
      --busy_;
      if (remeasure) {
        accounted_bytes_ = accounted_bytes_ - worker->accounted_bytes() + cost;
        worker->set_accounted_bytes(cost);
      }
      if (keep) {
        make_idle_locked(request.tenant, std::move(worker), lock);
      } else {
        ++retired_;
        std::vector<std::unique_ptr<WorkerProcess>> retired;
        retired.push_back(std::move(worker));
        stop_workers(std::move(retired), lock);
      }
      warm_locked(request.tenant, options_.warm_per_tenant);
      // Spares taken are replaced only now: starting a worker forks this process, which slows
      // every thread of it for a moment, and the run that took the spare should not pay for that.
      warm_locked(kSpare, spare_target_locked());
      constexpr int kAttemptsPastGoneWorkers = 2;
      if (!run_not_started) return result;
      if (attempt < kAttemptsPastGoneWorkers && Clock::now() < deadline) continue;
      return turned_away(
          request,
          "the workers given this run had died before taking it (the last: " + result.message +
              "); the script did not run. Retry; corrald's log and "
              "corral_workers_retired_total show whether workers keep dying",
          kRetryShortageSeconds);
    }
  } catch (const std::exception& error) {
    return failed(request, Outcome::crashed,
                  std::string("the worker pool failed: ") + error.what());
  }
}

void TenantPool::spawner_loop() {
  Lock lock(mutex_);
  for (;;) {
    jobs_changed_.wait(lock, [&] { return shutting_down_ || !jobs_.empty(); });
    if (shutting_down_) break;
    auto next = std::find_if(jobs_.begin(), jobs_.end(),
                             [](const std::shared_ptr<SpawnJob>& job) { return job->claimed; });
    if (next == jobs_.end()) next = jobs_.begin();
    std::shared_ptr<SpawnJob> job = *next;
    jobs_.erase(next);
    spawning_now_ = job;
    lock.unlock();

    // The error travels as text: an exception_ptr shared across threads would also work, but
    // its reference count is invisible to ThreadSanitizer and buries real reports in false ones.
    SpawnJob::Delivery spawned;
    try {
      spawned.worker = factory_(job->tenant);
      if (!spawned.worker) {
        spawned.error = "the worker factory returned no worker";
      } else if (job->tenant == kSpare) {
        // A spare is only worth keeping once it can serve at once; one that fails to get
        // there is dropped like a failed pre-warm (or its failure goes to the run that
        // claimed it).
        std::string problem =
            spawned.worker->wait_until_ready(std::chrono::milliseconds(options_.start_timeout_ms));
        if (!problem.empty()) {
          spawned.worker.reset();
          spawned.error = problem;
        }
      }
    } catch (const jail::SystemCallFailure& failure) {
      spawned.error = failure.what();
      spawned.out_of_descriptors = failure.out_of_descriptors();
    } catch (const std::exception& error) {
      spawned.error = error.what();
    } catch (...) {
      spawned.error = "the worker factory failed with an unknown error";
    }

    if (!spawned.worker) note_start_failure(job->tenant, spawned.error);

    lock.lock();
    spawning_now_.reset();
    --spawning_;
    bool made = spawned.worker != nullptr;
    if (made) {
      ++spawned_;
      spawned.worker->set_accounted_bytes(new_worker_cost());
    } else {
      accounted_bytes_ -= new_worker_cost();
    }
    if (job->claimed) {
      if (made) {
        ++busy_;
      } else {
        capacity_changed_.notify_all();
      }
      job->promise.set_value(std::move(spawned));
    } else if (made) {
      make_idle_locked(job->tenant, std::move(spawned.worker), lock);
    } else {
      // A failed pre-warm is dropped (it was counted and reported above): the next run of the
      // tenant meets the same failure and is turned away with it.
      capacity_changed_.notify_all();
    }
  }
  for (auto& job : jobs_) {
    if (job->claimed) job->promise.set_value({.pool_stopped = true});
  }
  spawning_ -= jobs_.size();
  accounted_bytes_ -= jobs_.size() * new_worker_cost();
  jobs_.clear();
}

void TenantPool::note_start_failure(const std::string& tenant, const std::string& why) {
  std::lock_guard guard(start_failures_mutex_);
  ++start_failures_;
  ++unreported_start_failures_;
  auto now = Clock::now();
  if (!options_.on_start_failure ||
      (last_start_failure_report_ &&
       now - *last_start_failure_report_ <
           std::chrono::milliseconds(options_.start_failure_report_ms))) {
    return;
  }
  last_start_failure_report_ = now;
  StartFailureReport report{tenant, why, unreported_start_failures_};
  unreported_start_failures_ = 0;
  options_.on_start_failure(report);
}

TenantPool::Stats TenantPool::stats() const {
  uint64_t start_failures = 0;
  {
    std::lock_guard guard(start_failures_mutex_);
    start_failures = start_failures_;
  }
  Lock lock(mutex_);
  return Stats{.live = live_locked(),
               .idle = idle_.size(),
               .busy = busy_,
               .spawned = spawned_,
               .retired = retired_,
               .evicted = evicted_,
               .spare = idle_for_locked(kSpare),
               .starting = spawning_,
               .stopping = stopping_,
               .bound = bound_,
               .start_failures = start_failures,
               .accounted_bytes = accounted_bytes_,
               .memory_budget_bytes = options_.memory_budget_bytes};
}

size_t TenantPool::idle_for(const std::string& tenant) const {
  Lock lock(mutex_);
  return idle_for_locked(tenant);
}

size_t TenantPool::idle_for_locked(const std::string& tenant) const {
  auto found = idle_by_tenant_.find(tenant);
  return found == idle_by_tenant_.end() ? 0 : found->second.size();
}

}  // namespace corral
