#include "sched/fair_queue.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace corral::sched {

namespace {

// Weight of the newest run in a mean run time: recent enough to follow a script that became
// slow within a few runs, smooth enough that one outlier does not swing the turns.
constexpr double kNewRunWeight = 0.2;

double ewma(double mean, bool measured, double sample) {
  return measured ? mean + kNewRunWeight * (sample - mean) : sample;
}

}  // namespace

std::string_view to_string(QueueRejection::Bound bound) {
  switch (bound) {
    case QueueRejection::Bound::key_depth:
      return "tenant_queue_full";
    case QueueRejection::Bound::global:
      return "overloaded";
    case QueueRejection::Bound::stopping:
      return "stopping";
  }
  return "overloaded";
}

FairQueue::FairQueue(FairQueueOptions options) : options_(std::move(options)) {
  if (options_.workers == 0 || options_.per_key_depth == 0 || options_.max_queued == 0) {
    throw std::invalid_argument(
        "a fair queue needs at least 1 worker, a per-key depth of at least 1 and a global bound "
        "of at least 1 (got workers " +
        std::to_string(options_.workers) + ", per-key depth " +
        std::to_string(options_.per_key_depth) + ", global bound " +
        std::to_string(options_.max_queued) + ")");
  }
  if (!options_.clock) options_.clock = [] { return QueueClock::now(); };
  workers_.reserve(options_.workers);
  for (unsigned i = 0; i < options_.workers; ++i) {
    workers_.emplace_back([this] {
      if (options_.on_worker_start) options_.on_worker_start();
      work();
    });
  }
}

FairQueue::~FairQueue() { shutdown(); }

std::optional<QueueRejection> FairQueue::submit(std::string_view key, Task task) {
  std::unique_lock lock(mutex_);
  auto found = keys_.find(key);
  size_t key_queued = found == keys_.end() ? 0 : found->second.queue.size();
  QueueRejection rejection{.key_queued = key_queued, .total_queued = queued_};
  if (stopping_) {
    rejection.bound = QueueRejection::Bound::stopping;
    return rejection;
  }
  if (key_queued >= options_.per_key_depth) {
    // Its head starts when this key's turn comes on a free worker: the key's share of the
    // workers is workers / keys in play.
    double keys = static_cast<double>(std::max<size_t>(keys_.size(), 1));
    rejection.bound = QueueRejection::Bound::key_depth;
    rejection.limit = options_.per_key_depth;
    rejection.retry_after_seconds =
        retry_after(mean_cost_ns(found->second) * keys / options_.workers / 1e9);
    return rejection;
  }
  if (queued_ >= options_.max_queued) {
    double mean =
        measured_any_ ? mean_cost_all_ns_ : std::chrono::nanoseconds(kDefaultCost).count();
    rejection.bound = QueueRejection::Bound::global;
    rejection.limit = options_.max_queued;
    rejection.retry_after_seconds = retry_after(mean / options_.workers / 1e9);
    return rejection;
  }
  if (found == keys_.end()) {
    found = keys_.emplace(std::string(key), Key{}).first;
    found->second.name = found->first;
  }
  Key& entry = found->second;
  if (options_.leave_one_for_others) saw(entry.name, options_.clock());
  if (entry.queue.empty()) {
    entry.virtual_ns = std::max(entry.virtual_ns, virtual_now_);
    entry.queue.push_back({std::move(task), options_.clock()});
    make_ready(entry);
  } else {
    entry.queue.push_back({std::move(task), options_.clock()});
  }
  ++queued_;
  lock.unlock();
  wake_.notify_one();
  return std::nullopt;
}

void FairQueue::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

size_t FairQueue::queued() const {
  std::lock_guard lock(mutex_);
  return queued_;
}

size_t FairQueue::queued(std::string_view key) const {
  std::lock_guard lock(mutex_);
  auto found = keys_.find(key);
  return found == keys_.end() ? 0 : found->second.queue.size();
}

size_t FairQueue::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

size_t FairQueue::tracked_keys() const {
  std::lock_guard lock(mutex_);
  return keys_.size();
}

void FairQueue::make_ready(Key& key) {
  key.order = next_order_++;
  ready_.emplace(key.virtual_ns, key.order, &key);
}

void FairQueue::unready(Key& key) { ready_.erase({key.virtual_ns, key.order, &key}); }

double FairQueue::mean_cost_ns(const Key& key) const {
  if (key.measured) return key.mean_cost_ns;
  if (measured_any_) return mean_cost_all_ns_;
  return static_cast<double>(std::chrono::nanoseconds(kDefaultCost).count());
}

int64_t FairQueue::retry_after(double seconds) const {
  if (!std::isfinite(seconds) || seconds <= 1) return 1;
  if (seconds >= static_cast<double>(kMaxRetryAfter)) return kMaxRetryAfter;
  return static_cast<int64_t>(std::ceil(seconds));
}

void FairQueue::saw(const std::string& key, QueueClock::time_point now) {
  if (recent_[0].first == key) {
    recent_[0].second = now;
  } else {
    recent_[1] = std::move(recent_[0]);
    recent_[0] = {key, now};
  }
}

bool FairQueue::may_start(const Key& key, QueueClock::time_point now) const {
  if (!options_.leave_one_for_others || stopping_ || options_.workers < 2) return true;
  if (key.running + 1 < options_.workers) return true;
  // An entry never set has the clock's epoch: long past any window. ("" is a key: the queue of
  // requests that name no tenant.)
  for (const auto& [name, when] : recent_) {
    if (name != key.name && now - when < options_.others_window) return false;
  }
  return true;
}

FairQueue::Key* FairQueue::next_key(QueueClock::time_point now) {
  for (const auto& [virtual_ns, order, key] : ready_) {
    if (may_start(*key, now)) return key;
  }
  return nullptr;
}

void FairQueue::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    Key* next = nullptr;
    // A key held back to leave a worker for others is looked at again when work comes or ends,
    // or once the window may have passed.
    while (!(next = next_key(options_.clock())) && !(stopping_ && ready_.empty())) {
      if (ready_.empty()) {
        wake_.wait(lock);
      } else {
        wake_.wait_for(lock, options_.others_window);
      }
    }
    // Stopping drains: a worker leaves only once nothing is queued.
    if (next == nullptr) return;
    Key& key = *next;
    if (options_.leave_one_for_others) saw(key.name, options_.clock());
    unready(key);
    Entry entry = std::move(key.queue.front());
    key.queue.pop_front();
    --queued_;
    virtual_now_ = std::max(virtual_now_, key.virtual_ns);
    // Charged now, so that other free workers see this key's turn taken; settled at the end.
    auto charged = static_cast<int64_t>(std::llround(mean_cost_ns(key)));
    key.virtual_ns += charged;
    ++key.running;
    ++running_;
    if (!key.queue.empty()) make_ready(key);
    auto position = keys_.find(key.name);

    lock.unlock();
    auto started = options_.clock();
    try {
      entry.task(std::chrono::duration_cast<std::chrono::nanoseconds>(started - entry.queued_at));
    } catch (...) {
      // A task owns its errors; one that escapes must not take a worker (and the server) down.
    }
    auto cost = options_.clock() - started;
    // What the task holds (a connection, a work guard) is released outside the lock.
    entry.task = nullptr;
    lock.lock();
    finished(position, charged, cost);
  }
}

void FairQueue::finished(Keys::iterator position, int64_t charged_ns, QueueClock::duration cost) {
  Key& key = position->second;
  --key.running;
  --running_;
  // A key held back at its share may start again: another waiting worker may take it.
  if (options_.leave_one_for_others && !ready_.empty()) wake_.notify_one();
  double cost_ns = std::max(
      0.0, static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(cost).count()));
  bool ready = !key.queue.empty();
  if (ready) unready(key);
  key.virtual_ns += static_cast<int64_t>(std::llround(cost_ns)) - charged_ns;
  if (ready) make_ready(key);
  key.mean_cost_ns = ewma(key.mean_cost_ns, key.measured, cost_ns);
  key.measured = true;
  mean_cost_all_ns_ = ewma(mean_cost_all_ns_, measured_any_, cost_ns);
  measured_any_ = true;
  forget_if_idle(position);
}

void FairQueue::forget_if_idle(Keys::iterator position) {
  if (position->second.queue.empty() && position->second.running == 0) keys_.erase(position);
}

}  // namespace corral::sched
