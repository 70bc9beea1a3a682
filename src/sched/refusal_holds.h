// Refusal holds (issue 6, noisy neighbour; docs/operations.md, "The refusal hold"): after a 429
// or 503 that told a client when to come back (Retry-After), the same credentials sending the same
// request again are not handled before then, on whichever connection they come. A client that
// honours Retry-After never notices; one that floods past its quota, over keep-alive connections
// or a new connection per request, is paced to one answer per hold per waiting connection.
//
// Contract:
// - A hold is keyed by an opaque text (the server joins the Authorization header, the method, the
//   route and the tenant and script it names) and lasts until a time given by the caller; a later
//   refusal of the same key extends it, an earlier one never shortens it.
// - Keys are not kept: each is reduced to a 64-bit SipHash under a key drawn at construction, so
//   the table holds no credentials, and a client cannot choose texts that collide with another
//   client's key.
// - Memory is bounded: at most max_entries holds. When the table is full, holds that have run
//   out are forgotten; if none has, the new refusal is not remembered (remember() says so), so a
//   flood of distinct keys costs a bounded table, never an unbounded one.
// - Holds that have run out are forgotten when next looked up, and all of them at most once a
//   second on a remember() or held_until() call, so a server with no hold in force goes back to
//   the fast path: held_until() does not take the mutex, nor hash, while the table is empty.
// - Time is a parameter, never read here. Thread-safe: one mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace corral::sched {

class RefusalHolds {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RefusalHolds(size_t max_entries = 65'536);

  // `key` was refused and may be handled again from `until` on. False if the table was full of
  // holds still in force, and this one was not remembered.
  bool remember(std::string_view key, Clock::time_point until, Clock::time_point now);

  // When a request with `key` may be handled: the end of a hold still in force at `now`, or
  // nothing if it may be handled at once.
  std::optional<Clock::time_point> held_until(std::string_view key, Clock::time_point now);

  // Whether any hold may be in force: false while the table is empty, without the mutex.
  bool any() const { return entries_.load(std::memory_order_relaxed) > 0; }

  // Holds in the table, including any that have run out and are not yet forgotten.
  size_t size() const;

 private:
  uint64_t digest(std::string_view key) const;
  void forget_run_out_locked(Clock::time_point now, bool even_if_swept_lately);

  const size_t max_entries_;
  unsigned char siphash_key_[16];
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, Clock::time_point> until_;
  Clock::time_point next_sweep_{};
  std::atomic<size_t> entries_{0};  // until_.size(), readable without the mutex
};

}  // namespace corral::sched
