#include "broker/tenant_turns.h"

namespace corral::broker {

namespace {
// Tenants remembered for when they were last served; past this the memory starts over (every
// tenant then counts as never served, which only reorders one round).
constexpr size_t kRememberedTenants = 10'000;
}  // namespace

TenantTurns::Turn::~Turn() {
  if (owner_ != nullptr) owner_->end_turn();
}

TenantTurns::Turn TenantTurns::take(const std::string& tenant) {
  std::unique_lock lock(mutex_);
  if (!busy_ && waiting_ == 0) {
    busy_ = true;
    if (last_turn_.size() >= kRememberedTenants) last_turn_.clear();
    last_turn_[tenant] = ++turns_given_;
    return Turn(this);
  }
  uint64_t ticket = next_ticket_++;
  waiting_by_tenant_[tenant].push_back(ticket);
  ++waiting_;
  granted_.wait(lock, [&] { return granted_ticket_ == ticket; });
  return Turn(this);
}

size_t TenantTurns::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_;
}

void TenantTurns::end_turn() {
  std::lock_guard lock(mutex_);
  if (waiting_ == 0) {
    busy_ = false;
    return;
  }
  // The waiting tenant served least recently goes next; never served counts as earliest.
  auto next = waiting_by_tenant_.end();
  uint64_t next_served = 0;
  for (auto it = waiting_by_tenant_.begin(); it != waiting_by_tenant_.end(); ++it) {
    auto served = last_turn_.find(it->first);
    uint64_t at = served == last_turn_.end() ? 0 : served->second;
    if (next == waiting_by_tenant_.end() || at < next_served) {
      next = it;
      next_served = at;
    }
  }
  granted_ticket_ = next->second.front();
  next->second.pop_front();
  if (last_turn_.size() >= kRememberedTenants) last_turn_.clear();
  last_turn_[next->first] = ++turns_given_;
  if (next->second.empty()) waiting_by_tenant_.erase(next);
  --waiting_;
  granted_.notify_all();  // busy_ stays true: the turn passes straight to the granted call
}

}  // namespace corral::broker
