// Stored runs (issue 6, "Stored runs"): the last results of each script, kept so that they can be
// listed and replayed against another version.
//
// Writing each run to the store on the invocation's path would add a synchronous, fsynced SQLite
// transaction to every invocation, so record() only queues the run; one thread writes what is
// queued in batches (one transaction each, store::Store::insert_runs), at the latest
// kFlushInterval after a run was queued.
//
// Contract:
// - Stored runs are for inspection and replay, not a ledger: when max_pending runs are already
//   waiting (the store is slower than the invocations), a new run is dropped and counted in
//   dropped(), rather than slowing invocations or growing without bound. A corrald killed with
//   -9 loses at most the runs of the last kFlushInterval.
// - keep (the policy's runs.keep, per tenant) is applied at each write; 0 stores nothing.
// - flush() returns once every run queued before it has been written (or failed to be: a store
//   error is logged and those runs counted in dropped()). The destructor flushes.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>

#include "store/store.h"

namespace corral::runs {

inline constexpr std::chrono::milliseconds kFlushInterval{200};
inline constexpr size_t kDefaultMaxPending = 10'000;

class RunRecorder {
 public:
  explicit RunRecorder(store::Store& store, size_t max_pending = kDefaultMaxPending);
  ~RunRecorder();
  RunRecorder(const RunRecorder&) = delete;
  RunRecorder& operator=(const RunRecorder&) = delete;

  // Queues `run`; its script keeps its newest `keep` runs, its tenant its newest `tenant_keep`.
  void record(store::StoredRun run, int64_t keep,
              int64_t tenant_keep = std::numeric_limits<int64_t>::max());
  void flush();
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }

 private:
  struct Pending {
    store::StoredRun run;
    int64_t keep = 0;
    int64_t tenant_keep = 0;
  };
  void write_loop();

  store::Store& store_;
  const size_t max_pending_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable written_cv_;
  std::deque<Pending> pending_;
  uint64_t queued_total_ = 0;   // runs ever accepted by record()
  uint64_t settled_total_ = 0;  // of those, written or failed
  bool stopping_ = false;
  bool flush_wanted_ = false;
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> written_{0};
  std::thread writer_;
};

}  // namespace corral::runs
