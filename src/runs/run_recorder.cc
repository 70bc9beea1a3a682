#include "runs/run_recorder.h"

#include <spdlog/spdlog.h>

#include <map>

namespace corral::runs {

RunRecorder::RunRecorder(store::Store& store, size_t max_pending)
    : store_(store), max_pending_(max_pending), writer_([this] { write_loop(); }) {}

RunRecorder::~RunRecorder() {
  flush();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

void RunRecorder::record(store::StoredRun run, int64_t keep, int64_t tenant_keep) {
  if (keep <= 0) return;
  {
    std::lock_guard lock(mutex_);
    if (pending_.size() >= max_pending_) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    pending_.push_back({std::move(run), keep, tenant_keep});
    ++queued_total_;
  }
}

void RunRecorder::flush() {
  std::unique_lock lock(mutex_);
  uint64_t target = queued_total_;
  flush_wanted_ = true;
  wake_.notify_all();
  written_cv_.wait(lock, [&] { return settled_total_ >= target; });
}

void RunRecorder::write_loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait_for(lock, kFlushInterval, [&] { return stopping_ || flush_wanted_; });
    flush_wanted_ = false;
    if (pending_.empty()) {
      if (stopping_) return;
      continue;
    }
    std::deque<Pending> batch;
    batch.swap(pending_);
    lock.unlock();
    // One transaction per distinct keep: the policy may give tenants different ones.
    std::map<std::pair<int64_t, int64_t>, std::vector<store::StoredRun>> by_keep;
    for (auto& pending : batch)
      by_keep[{pending.keep, pending.tenant_keep}].push_back(std::move(pending.run));
    uint64_t failed = 0;
    for (auto& [keeps, runs] : by_keep) {
      try {
        store_.insert_runs(runs, keeps.first, keeps.second);
        written_.fetch_add(runs.size(), std::memory_order_relaxed);
      } catch (const std::exception& error) {
        failed += runs.size();
        spdlog::warn(
            "{} stored run(s) were not written: {}; they will not be listed or "
            "replayable",
            runs.size(), error.what());
      }
    }
    dropped_.fetch_add(failed, std::memory_order_relaxed);
    lock.lock();
    settled_total_ += batch.size();
    written_cv_.notify_all();
  }
}

}  // namespace corral::runs
