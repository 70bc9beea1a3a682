// Turns at the store for capability calls, by tenant. The store takes one write at a time, so a
// tenant whose runs write as fast as its quotas allow (events, kv) would otherwise keep a queue
// in front of every other tenant's call: each of them waits behind all of that tenant's calls
// already waiting. Here, when a call ends, the next turn goes to the waiting tenant served least
// recently, so another tenant's call waits for at most the call in progress (docs/performance.md,
// "Floods of denials and stored data").
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace corral::broker {

class TenantTurns {
 public:
  class Turn {
   public:
    ~Turn();
    Turn(Turn&& other) noexcept : owner_(other.owner_) { other.owner_ = nullptr; }
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;
    Turn& operator=(Turn&&) = delete;

   private:
    friend class TenantTurns;
    explicit Turn(TenantTurns* owner) : owner_(owner) {}
    TenantTurns* owner_;
  };

  // Waits for `tenant`'s turn; the turn lasts as long as the Turn does.
  Turn take(const std::string& tenant);
  // Calls waiting for a turn now (for tests).
  size_t waiting() const;

 private:
  void end_turn();

  mutable std::mutex mutex_;
  std::condition_variable granted_;
  bool busy_ = false;
  uint64_t next_ticket_ = 1;
  uint64_t granted_ticket_ = 0;
  uint64_t turns_given_ = 0;
  size_t waiting_ = 0;
  std::map<std::string, std::deque<uint64_t>> waiting_by_tenant_;  // tickets, oldest first
  std::map<std::string, uint64_t> last_turn_;  // tenant → turns_given_ at its last turn
};

}  // namespace corral::broker
