#include "metrics/attributed_series.h"

#include <algorithm>
#include <cmath>

namespace corral::metrics {

void InvocationFigures::record(Outcome outcome, std::optional<double> seconds, const Stats* stats) {
  invocations[static_cast<size_t>(outcome)].fetch_add(1, std::memory_order_relaxed);
  if (seconds) {
    for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
      if (*seconds <= kLatencyBuckets[i]) {
        latency_buckets[i].fetch_add(1, std::memory_order_relaxed);
        break;
      }
    }
    latency_count.fetch_add(1, std::memory_order_relaxed);
    latency_sum_micros.fetch_add(static_cast<uint64_t>(std::llround(std::max(*seconds, 0.0) * 1e6)),
                                 std::memory_order_relaxed);
  }
  if (!stats) return;
  fuel.fetch_add(static_cast<uint64_t>(std::max<int64_t>(stats->fuel_used, 0)),
                 std::memory_order_relaxed);
  cpu_micros.fetch_add(static_cast<uint64_t>(std::llround(std::max(stats->cpu_ms, 0.0) * 1e3)),
                       std::memory_order_relaxed);
  auto peak = static_cast<uint64_t>(std::max<int64_t>(stats->memory_peak_bytes, 0));
  memory_peak_bytes_sum.fetch_add(peak, std::memory_order_relaxed);
  uint64_t highest = memory_peak_bytes_max.load(std::memory_order_relaxed);
  while (peak > highest &&
         !memory_peak_bytes_max.compare_exchange_weak(highest, peak, std::memory_order_relaxed)) {
  }
}

AttributedSeries::AttributedSeries(size_t max_labelled, uint64_t busy_after)
    : max_labelled_(max_labelled),
      busy_after_(std::max<uint64_t>(busy_after, 1)),
      candidate_capacity_(4 * max_labelled) {}

InvocationFigures& AttributedSeries::figures_for(std::string_view key) {
  std::lock_guard lock(mutex_);
  if (auto found = labelled_.find(key); found != labelled_.end()) return *found->second;
  if (labelled_.size() >= max_labelled_) return other_;
  if (labelled_.size() < max_labelled_ / 2 || count_candidate(key)) {
    InvocationFigures& given = give_series(key);
    if (labelled_.size() >= max_labelled_) {
      // No series is left to give: nothing needs counting any more.
      Index().swap(candidate_slots_);
      std::vector<std::string>().swap(candidate_keys_);
      std::vector<uint64_t>().swap(candidate_counts_);
      std::vector<uint64_t>().swap(candidate_errors_);
    }
    return given;
  }
  return other_;
}

bool AttributedSeries::count_candidate(std::string_view key) {
  size_t slot;
  if (auto found = candidate_slots_.find(key); found != candidate_slots_.end()) {
    slot = found->second;
    ++candidate_counts_[slot];
  } else if (candidate_keys_.size() < candidate_capacity_) {
    slot = candidate_keys_.size();
    candidate_keys_.emplace_back(key);
    candidate_counts_.push_back(1);
    candidate_errors_.push_back(0);
    candidate_slots_.emplace(candidate_keys_.back(), slot);
  } else {
    // The key replaces the one counted least among a few picked at random, and inherits its count
    // as a possible error (so what it guarantees is still only what it was counted since). A
    // sample rather than all: a flood of distinct keys costs a few probes a call, not a scan of
    // every candidate. Its map node is reused, so a key no longer than the one it replaces
    // allocates nothing.
    slot = next_random() % candidate_counts_.size();
    for (int probe = 1; probe < kEvictionProbes; ++probe) {
      size_t other = next_random() % candidate_counts_.size();
      if (candidate_counts_[other] < candidate_counts_[slot]) slot = other;
    }
    auto node = candidate_slots_.extract(candidate_keys_[slot]);
    candidate_keys_[slot].assign(key);
    node.key().assign(key);
    candidate_slots_.insert(std::move(node));
    candidate_errors_[slot] = candidate_counts_[slot];
    ++candidate_counts_[slot];
  }
  if (candidate_counts_[slot] - candidate_errors_[slot] < busy_after_) return false;
  forget_candidate(slot);
  return true;
}

uint64_t AttributedSeries::next_random() {
  // xorshift64: cheap, and good enough to pick candidates to compare.
  random_state_ ^= random_state_ << 13;
  random_state_ ^= random_state_ >> 7;
  random_state_ ^= random_state_ << 17;
  return random_state_;
}

void AttributedSeries::forget_candidate(size_t slot) {
  size_t last = candidate_keys_.size() - 1;
  candidate_slots_.erase(candidate_keys_[slot]);
  if (slot != last) {
    candidate_slots_.erase(candidate_keys_[last]);
    candidate_keys_[slot] = std::move(candidate_keys_[last]);
    candidate_counts_[slot] = candidate_counts_[last];
    candidate_errors_[slot] = candidate_errors_[last];
    candidate_slots_.emplace(candidate_keys_[slot], slot);
  }
  candidate_keys_.pop_back();
  candidate_counts_.pop_back();
  candidate_errors_.pop_back();
}

InvocationFigures& AttributedSeries::give_series(std::string_view key) {
  if (auto found = candidate_slots_.find(key); found != candidate_slots_.end())
    forget_candidate(found->second);
  auto [entry, added] = labelled_.emplace(std::string(key), std::make_unique<InvocationFigures>());
  return *entry->second;
}

void AttributedSeries::for_each(
    const std::function<void(std::string_view key, const InvocationFigures&)>& visit) const {
  std::vector<std::pair<std::string_view, const InvocationFigures*>> series;
  {
    std::lock_guard lock(mutex_);
    series.reserve(labelled_.size());
    // Keys and figures are never removed, so they outlive the lock.
    for (const auto& [key, figures] : labelled_) series.emplace_back(key, figures.get());
  }
  std::sort(series.begin(), series.end());
  for (const auto& [key, figures] : series) visit(key, *figures);
  visit({}, other_);
}

size_t AttributedSeries::labelled() const {
  std::lock_guard lock(mutex_);
  return labelled_.size();
}

}  // namespace corral::metrics
