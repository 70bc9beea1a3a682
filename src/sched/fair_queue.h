// Fair, bounded queueing of work in front of a fixed set of worker threads (issue 6, "Quotas and
// fairness"): one FIFO per key (corrald's key is the tenant named in the path), so that a key
// with a long queue cannot make another key's work wait behind all of it.
//
// Contract:
// - Bounds: a key holds at most `per_key_depth` queued tasks, and all keys together at most
//   `max_queued`. submit() either queues the task or returns a QueueRejection saying which bound
//   was hit, with the figures; a refused task is dropped (not run, not kept).
// - Fairness is start-time fair queuing over measured run time. Each key has a virtual time: the
//   run time it has been served so far in this busy period. A free worker takes the head task of
//   the key with the least virtual time (ties: the key that has waited longest), so a key whose
//   tasks are slow gets fewer turns, and a key arriving while another has 1,000 tasks queued
//   runs as soon as a worker frees: it waits for at most one task of the busy key per worker.
//   Because a task's cost is known only when it ends, the key is charged its recent mean run
//   time when the task starts, and the difference when it ends.
// - A key joining (or rejoining) takes the virtual time of the last task started, or keeps its
//   own if that is later, so idle time cannot be saved up as credit and a busy key's debt stands.
// - FIFO within a key: its tasks are taken in the order submitted (with several workers, two
//   taken one after the other may begin in either order).
// - Memory is bounded: a key with nothing queued and nothing running is forgotten, with its
//   virtual time (as deficit round robin resets a queue's deficit when it empties). So at most
//   max_queued + workers keys are tracked.
// - retry_after_seconds is an honest estimate, never below 1, never above kMaxRetryAfter: for a
//   full key, when its head task should start (its mean run time, times the keys sharing the
//   workers, over the workers); for the global bound, when any worker should free (the mean run
//   time of all keys over the workers). Mean run times are exponentially weighted; before any
//   task has run they are kDefaultCost.
// - shutdown(): stops accepting (submit() answers `stopping`), lets the workers run every task
//   already queued to completion, then joins them. The destructor calls it.
// - A task gets how long it waited in the queue. A task that throws is contained: the worker
//   goes on (the exception is swallowed; tasks should not throw).
// - A worker for others (`leave_one_for_others`): while another key has had work within
//   `others_window`, a key runs on at most workers - 1 workers at once, so that a key whose tasks
//   are long cannot hold every worker while another key keeps coming; a key alone may use them
//   all. Without it, a key arriving when every worker is taken waits for one task to end.
// - Time comes from `clock` (steady_clock by default), so tests can make tasks look slow or fast
//   without sleeping.
// - Thread-safe: one mutex guards all state, held for O(log keys) per call, never while a task
//   runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

namespace corral::sched {

using QueueClock = std::chrono::steady_clock;

inline constexpr std::chrono::milliseconds kDefaultCost{1};
inline constexpr int64_t kMaxRetryAfter = 3600;

struct FairQueueOptions {
  unsigned workers = 4;
  size_t per_key_depth = 64;
  size_t max_queued = 1024;
  std::function<QueueClock::time_point()> clock = [] { return QueueClock::now(); };
  // Called first on each worker thread (corrald pins a lane's threads to the lane's CPU).
  std::function<void()> on_worker_start = nullptr;
  // See the contract above; off by default, corrald turns it on.
  bool leave_one_for_others = false;
  std::chrono::milliseconds others_window{1000};
};

struct QueueRejection {
  enum class Bound {
    key_depth,  // the key's own queue holds per_key_depth tasks
    global,     // all keys together hold max_queued tasks
    stopping,   // shutdown() has begun
  };
  Bound bound = Bound::key_depth;
  size_t key_queued = 0;  // tasks queued for this key at the refusal
  size_t total_queued = 0;
  size_t limit = 0;  // the bound that was hit: per_key_depth or max_queued (0 when stopping)
  int64_t retry_after_seconds = 1;
};

// "tenant_queue_full", "overloaded" or "stopping": the reason in metrics and docs.
std::string_view to_string(QueueRejection::Bound bound);

class FairQueue {
 public:
  using Task = std::function<void(std::chrono::nanoseconds waited)>;

  // Throws std::invalid_argument if workers, per_key_depth or max_queued is 0.
  explicit FairQueue(FairQueueOptions options);
  ~FairQueue();
  FairQueue(const FairQueue&) = delete;
  FairQueue& operator=(const FairQueue&) = delete;

  // Queues `task` under `key`, or says why not (the task is then dropped).
  std::optional<QueueRejection> submit(std::string_view key, Task task);

  // Stops accepting, runs what is queued, joins the workers. Idempotent; not from a task.
  void shutdown();

  size_t queued() const;
  size_t queued(std::string_view key) const;
  size_t running() const;
  size_t tracked_keys() const;
  const FairQueueOptions& options() const { return options_; }

 private:
  struct Entry {
    Task task;
    QueueClock::time_point queued_at;
  };
  struct Key {
    std::string name;
    std::deque<Entry> queue;
    size_t running = 0;
    int64_t virtual_ns = 0;
    double mean_cost_ns = 0;
    bool measured = false;  // mean_cost_ns holds at least one run
    uint64_t order = 0;     // position among keys of equal virtual time
  };
  using Keys = std::map<std::string, Key, std::less<>>;
  // Keys with something queued, least virtual time first.
  using Ready = std::set<std::tuple<int64_t, uint64_t, Key*>>;

  void work();
  // The ready key that may start a task now (least virtual time first), or nullptr.
  Key* next_key(QueueClock::time_point now);
  bool may_start(const Key& key, QueueClock::time_point now) const;
  void saw(const std::string& key, QueueClock::time_point now);
  void make_ready(Key& key);
  void unready(Key& key);
  void finished(Keys::iterator key, int64_t charged_ns, QueueClock::duration cost);
  void forget_if_idle(Keys::iterator key);
  double mean_cost_ns(const Key& key) const;
  int64_t retry_after(double seconds) const;

  FairQueueOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  Keys keys_;
  Ready ready_;
  size_t queued_ = 0;
  size_t running_ = 0;
  int64_t virtual_now_ = 0;
  uint64_t next_order_ = 0;
  double mean_cost_all_ns_ = 0;
  bool measured_any_ = false;
  bool stopping_ = false;
  // The two keys that had work most recently, and when: enough to tell whether any key other than
  // a given one had work within others_window.
  std::pair<std::string, QueueClock::time_point> recent_[2];
  std::vector<std::thread> workers_;
};

}  // namespace corral::sched
