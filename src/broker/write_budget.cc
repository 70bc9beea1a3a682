#include "broker/write_budget.h"

#include <algorithm>
#include <iterator>
#include <limits>

namespace corral::broker {

namespace {
// Past this many tenants remembered, those whose buckets have refilled are forgotten (a full
// bucket is what a tenant not remembered gets anyway).
constexpr size_t kRememberedTenants = 100'000;
}  // namespace

double WriteBudget::burst_bytes(int64_t per_minute) {
  const double quota = static_cast<double>(per_minute);
  return std::max(quota / 6, std::min(quota, 64.0 * 1024));
}

std::optional<double> WriteBudget::take(const std::string& tenant, int64_t bytes,
                                        int64_t per_minute, Clock::time_point now) {
  const double per_second = static_cast<double>(per_minute) / 60.0;
  const double capacity = burst_bytes(per_minute);
  std::lock_guard lock(mutex_);
  auto refill = [&](Bucket& bucket) {
    double seconds = std::chrono::duration<double>(now - bucket.refilled).count();
    bucket.bytes = std::min(capacity, bucket.bytes + std::max(0.0, seconds) * per_second);
    bucket.refilled = now;
  };
  if (buckets_.size() >= kRememberedTenants && !buckets_.contains(tenant)) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      refill(it->second);
      it = it->second.bytes >= capacity ? buckets_.erase(it) : std::next(it);
    }
  }
  auto [found, fresh] = buckets_.try_emplace(tenant, Bucket{capacity, now});
  Bucket& bucket = found->second;
  if (!fresh) refill(bucket);
  // A policy that lowered the quota takes effect at once.
  bucket.bytes = std::min(bucket.bytes, capacity);
  const double wanted = static_cast<double>(bytes);
  if (wanted > capacity) return std::numeric_limits<double>::infinity();
  if (wanted > bucket.bytes) return (wanted - bucket.bytes) / per_second;
  bucket.bytes -= wanted;
  return std::nullopt;
}

}  // namespace corral::broker
