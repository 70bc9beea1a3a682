// Each tenant's budget of bytes its scripts may write to the store (policy
// quotas.store_write_bytes_per_minute): the store has one writer, and a tenant writing as fast as
// its other quotas let it would hold that writer in front of every other tenant's writes
// (docs/performance.md, "The two floods that do real work"). A bucket per tenant, refilled
// continuously at the quota's rate, holding ten seconds' worth (or the whole quota up to 64 KiB,
// so that a small quota still takes a write of some size): a minute's worth at once would let a
// tenant hold the writer for most of a minute before the quota slowed it.
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
  // nothing and returns the seconds until there will be (infinity for a write larger than the
  // bucket).
  std::optional<double> take(const std::string& tenant, int64_t bytes, int64_t per_minute,
                             Clock::time_point now);

  // What a full bucket holds for a quota.
  static double burst_bytes(int64_t per_minute);

 private:
  struct Bucket {
    double bytes = 0;
    Clock::time_point refilled;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace corral::broker
