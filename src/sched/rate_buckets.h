// Rates per key, counted per minute: a token bucket per key holding ten seconds' worth (at least
// one), refilled continuously. Used for the publishes of a tenant (policy
// quotas.publishes_per_minute: each publish runs the new version's top level in a worker, so
// besides counting against the tenant's invocation quotas, admission.h, it has a rate of its own)
// and for the denials a client can repeat at will (bad tokens, other tenants' paths: api/server.h,
// denials_per_client_per_minute).
//
// Contract:
// - take() consumes one, or answers how many seconds until one is available (at least 1).
// - Time is a parameter; thread-safe (one mutex, O(1) per call except a sweep).
// - Bounded: a key whose bucket is full again is forgotten at the next sweep (at no cost: a fresh
//   bucket is full), and at most max_keys buckets are kept; past it, the fullest go.
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

class RateBuckets {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  explicit RateBuckets(size_t max_keys = 100'000) : max_keys_(max_keys) {}

  // nullopt: admitted. Otherwise the seconds to wait (Retry-After).
  std::optional<int64_t> take(std::string_view key, int64_t per_minute, TimePoint now);

  static double burst_of(int64_t per_minute);

 private:
  struct Bucket {
    double tokens = 0;
    TimePoint refilled;
  };
  void sweep(TimePoint now, int64_t per_minute);

  const size_t max_keys_;
  std::mutex mutex_;
  std::map<std::string, Bucket, std::less<>> buckets_;
  TimePoint last_sweep_{};
};

}  // namespace corral::sched
