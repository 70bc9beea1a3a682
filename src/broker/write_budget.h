// Each tenant's budget of bytes its scripts may write to the store (policy
// quotas.store_write_bytes_per_minute): the store has one writer, and a tenant writing as fast as
// its other quotas let it would hold that writer in front of every other tenant's writes
// (docs/performance.md, "The two floods that do real work"). A bucket per tenant holding up to a
// minute's worth, refilled continuously.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace corral::broker {

class WriteBudget {
 public:
  using Clock = std::chrono::steady_clock;

  // Takes `bytes` from the tenant's budget of `per_minute`. When there is not enough, takes
  // nothing and returns the seconds until there will be (infinity for a write larger than a
  // whole minute's budget).
  std::optional<double> take(const std::string& tenant, int64_t bytes, int64_t per_minute,
                             Clock::time_point now);

 private:
  struct Bucket {
    double bytes = 0;
    Clock::time_point refilled;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace corral::broker
