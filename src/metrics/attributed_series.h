// Invocation figures per key (a tenant, or a tenant's script) with a bounded label set, for the
// per-tenant and per-script series of GET /metrics (docs/observability.md).
//
// At most `max_labelled` keys ever get series of their own; every other key is counted in one
// series, "other". A key keeps its series once given, so that series never flap between a name
// and "other". Which keys get one:
//   - the first max_labelled / 2 keys seen, at once: a deployment with fewer tenants than that
//     sees every one of them by name;
//   - the rest go to keys that prove busy: a space-saving counter (Metwally et al.) of
//     4 * max_labelled candidates counts the keys without series (a new key replaces the least
//     counted of 8 candidates sampled, not of all), and a key whose guaranteed count (its count
//     less the count it may have inherited) reaches `busy_after` is given one.
//     A flood of distinct keys, each seen a few times, inherits counts but guarantees none, so it
//     fills no series; a key invoked steadily does.
// Once every series is given, the candidates are dropped and a key without a series costs one
// hash lookup.
//
// Thread-safe. figures_for() holds one mutex for a hash lookup (and, while series remain to be
// given, a candidate update); the figures themselves are atomics updated after it is released.
// It allocates only when a key becomes a candidate or gets a series.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "invocation/invocation.h"

namespace corral::metrics {

// Upper bounds, in seconds, of the invocation latency histograms' buckets.
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
inline constexpr size_t kOutcomes = static_cast<size_t>(Outcome::crashed) + 1;

// What one key's invocations added up to. Lock-free.
struct InvocationFigures {
  std::array<std::atomic<uint64_t>, kOutcomes> invocations{};
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size()> latency_buckets{};  // not cumulative
  std::atomic<uint64_t> latency_count{0};
  std::atomic<uint64_t> latency_sum_micros{0};
  std::atomic<uint64_t> fuel{0};
  std::atomic<uint64_t> cpu_micros{0};
  std::atomic<uint64_t> memory_peak_bytes_sum{0};
  std::atomic<uint64_t> memory_peak_bytes_max{0};

  // seconds: nullopt for an invocation refused before it ran (not in the histogram, as in the
  // global one). stats: nullptr when nothing ran (a refusal, a cached result).
  void record(Outcome outcome, std::optional<double> seconds, const Stats* stats);
};

class AttributedSeries {
 public:
  static constexpr size_t kDefaultMaxLabelled = 100;
  static constexpr uint64_t kDefaultBusyAfter = 20;

  explicit AttributedSeries(size_t max_labelled = kDefaultMaxLabelled,
                            uint64_t busy_after = kDefaultBusyAfter);

  // The figures `key` is counted in: its own, or "other"'s. The reference stays valid for the
  // life of this object.
  InvocationFigures& figures_for(std::string_view key);

  // Calls `visit` for every key with a series of its own, in key order, and then for "other"
  // with an empty key.
  void for_each(
      const std::function<void(std::string_view key, const InvocationFigures&)>& visit) const;

  size_t labelled() const;
  size_t max_labelled() const { return max_labelled_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  using Index = std::unordered_map<std::string, size_t, Hash, std::equal_to<>>;

  // Counts `key` as a candidate; true when it has proved busy. Under mutex_.
  bool count_candidate(std::string_view key);
  uint64_t next_random();
  void forget_candidate(size_t slot);
  InvocationFigures& give_series(std::string_view key);

  const size_t max_labelled_;
  const uint64_t busy_after_;
  const size_t candidate_capacity_;

  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<InvocationFigures>, Hash, std::equal_to<>>
      labelled_;
  InvocationFigures other_;
  // The space-saving counter: parallel arrays, so that finding the smallest count scans one
  // contiguous vector.
  Index candidate_slots_;
  std::vector<std::string> candidate_keys_;
  std::vector<uint64_t> candidate_counts_;
  std::vector<uint64_t> candidate_errors_;
  static constexpr int kEvictionProbes = 8;
  uint64_t random_state_ = 0x9e3779b97f4a7c15;
};

}  // namespace corral::metrics
