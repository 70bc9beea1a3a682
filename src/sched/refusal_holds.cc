#include "sched/refusal_holds.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace corral::sched {

static_assert(crypto_shorthash_KEYBYTES == 16 && crypto_shorthash_BYTES == 8);

RefusalHolds::RefusalHolds(size_t max_entries) : max_entries_(std::max<size_t>(1, max_entries)) {
  if (sodium_init() < 0) {
    throw std::runtime_error("cannot start the refusal holds: libsodium failed to initialise");
  }
  randombytes_buf(siphash_key_, sizeof siphash_key_);
}

uint64_t RefusalHolds::digest(std::string_view key) const {
  unsigned char hash[crypto_shorthash_BYTES];
  crypto_shorthash(hash, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                   siphash_key_);
  uint64_t value;
  std::memcpy(&value, hash, sizeof value);
  return value;
}

bool RefusalHolds::remember(std::string_view key, Clock::time_point until, Clock::time_point now) {
  if (until <= now) return true;  // nothing to hold
  uint64_t hashed = digest(key);
  std::lock_guard lock(mutex_);
  auto found = until_.find(hashed);
  if (found != until_.end()) {
    found->second = std::max(found->second, until);
    return true;
  }
  forget_run_out_locked(now, until_.size() >= max_entries_);
  if (until_.size() >= max_entries_) return false;
  until_.emplace(hashed, until);
  entries_.store(until_.size(), std::memory_order_relaxed);
  return true;
}

void RefusalHolds::forget_run_out_locked(Clock::time_point now, bool even_if_swept_lately) {
  if (!even_if_swept_lately && now < next_sweep_) return;
  std::erase_if(until_, [now](const auto& entry) { return entry.second <= now; });
  entries_.store(until_.size(), std::memory_order_relaxed);
  next_sweep_ = now + std::chrono::seconds(1);
}

std::optional<RefusalHolds::Clock::time_point> RefusalHolds::held_until(std::string_view key,
                                                                        Clock::time_point now) {
  if (entries_.load(std::memory_order_relaxed) == 0) return std::nullopt;
  uint64_t hashed = digest(key);
  std::lock_guard lock(mutex_);
  auto found = until_.find(hashed);
  if (found != until_.end() && found->second > now) return found->second;
  if (found != until_.end()) until_.erase(found);
  forget_run_out_locked(now, false);
  entries_.store(until_.size(), std::memory_order_relaxed);
  return std::nullopt;
}

size_t RefusalHolds::size() const {
  std::lock_guard lock(mutex_);
  return until_.size();
}

}  // namespace corral::sched
