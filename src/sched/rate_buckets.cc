#include "sched/rate_buckets.h"

#include <algorithm>
#include <cmath>

namespace corral::sched {

// Ten seconds' worth at once (at least one): a minute's worth in one burst would let a key spend
// its whole minute in the first second.
double RateBuckets::burst_of(int64_t per_minute) {
  return std::ceil(static_cast<double>(std::max<int64_t>(per_minute, 1)) / 6.0);
}

std::optional<int64_t> RateBuckets::take(std::string_view key, int64_t per_minute, TimePoint now) {
  const double capacity = burst_of(per_minute);
  const double per_second = static_cast<double>(std::max<int64_t>(per_minute, 1)) / 60.0;
  std::lock_guard lock(mutex_);
  auto found = buckets_.find(key);
  if (found == buckets_.end()) {
    // Only a newcomer makes room: a key's own bucket is never swept from under it.
    if (now - last_sweep_ >= std::chrono::minutes(1) || buckets_.size() >= max_keys_)
      sweep(now, per_minute);
    found = buckets_.emplace(std::string(key), Bucket{capacity, now}).first;
  }
  Bucket& bucket = found->second;
  double elapsed = std::chrono::duration<double>(now - bucket.refilled).count();
  bucket.tokens = std::min(capacity, bucket.tokens + std::max(0.0, elapsed) * per_second);
  bucket.refilled = now;
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return std::nullopt;
  }
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1 - bucket.tokens) / per_second)));
}

void RateBuckets::sweep(TimePoint now, int64_t per_minute) {
  last_sweep_ = now;
  // A bucket refilled by now is the same as a fresh one. (Keys whose rate differs are
  // judged by this call's rate: forgetting one early only grants it a fresh bucket.)
  const double per_second = static_cast<double>(std::max<int64_t>(per_minute, 1)) / 60.0;
  const double capacity = burst_of(per_minute);
  std::erase_if(buckets_, [&](const auto& entry) {
    double elapsed = std::chrono::duration<double>(now - entry.second.refilled).count();
    return entry.second.tokens + elapsed * per_second >= capacity;
  });
  while (buckets_.size() >= max_keys_) {
    auto fullest = std::max_element(
        buckets_.begin(), buckets_.end(),
        [](const auto& a, const auto& b) { return a.second.tokens < b.second.tokens; });
    buckets_.erase(fullest);
  }
}

}  // namespace corral::sched
