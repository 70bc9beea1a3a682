// The rate of publishes per tenant (policy quotas.publishes_per_minute). Each publish runs the new
// version's top level in a worker, so besides counting against the tenant's invocation quotas
// (admission.h) it has a rate of its own: a token bucket per tenant holding a minute's worth,
// refilled continuously.
//
// Contract:
// - take() consumes one publish, or answers how many seconds until one is available (at least 1).
// - Time is a parameter; thread-safe (one mutex, O(1) per call except a sweep).
// - Bounded: a tenant whose bucket is full again is forgotten at the next sweep (at no cost: a
//   fresh bucket is full), and at most max_tenants buckets are kept; past it, the fullest go.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace corral::sched {

class PublishRate {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  explicit PublishRate(size_t max_tenants = 100'000) : max_tenants_(max_tenants) {}

  // nullopt: admitted. Otherwise the seconds to wait (Retry-After).
  std::optional<int64_t> take(std::string_view tenant, int64_t per_minute, TimePoint now);

 private:
  struct Bucket {
    double tokens = 0;
    TimePoint refilled;
  };
  void sweep(TimePoint now, int64_t per_minute);

  const size_t max_tenants_;
  std::mutex mutex_;
  std::map<std::string, Bucket, std::less<>> buckets_;
  TimePoint last_sweep_{};
};

}  // namespace corral::sched
