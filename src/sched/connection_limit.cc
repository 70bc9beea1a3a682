#include "sched/connection_limit.h"

#include <utility>

namespace corral::sched {

ConnectionLimit::Slot::Slot(Slot&& other) noexcept
    : limit_(std::exchange(other.limit_, nullptr)), client_(std::move(other.client_)) {}

ConnectionLimit::Slot& ConnectionLimit::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    release();
    limit_ = std::exchange(other.limit_, nullptr);
    client_ = std::move(other.client_);
  }
  return *this;
}

ConnectionLimit::Slot::~Slot() { release(); }

void ConnectionLimit::Slot::release() {
  if (auto* limit = std::exchange(limit_, nullptr)) limit->give_back(client_);
}

std::optional<ConnectionLimit::Slot> ConnectionLimit::admit(const std::string& client) {
  if (per_client_ == 0) return Slot(nullptr, {});
  std::lock_guard lock(mutex_);
  size_t& open = open_[client];
  if (open >= per_client_) return std::nullopt;
  ++open;
  return Slot(this, client);
}

void ConnectionLimit::give_back(const std::string& client) {
  std::lock_guard lock(mutex_);
  auto found = open_.find(client);
  if (found == open_.end()) return;
  if (--found->second == 0) open_.erase(found);
}

size_t ConnectionLimit::open_from(const std::string& client) const {
  std::lock_guard lock(mutex_);
  auto found = open_.find(client);
  return found == open_.end() ? 0 : found->second;
}

size_t ConnectionLimit::clients() const {
  std::lock_guard lock(mutex_);
  return open_.size();
}

}  // namespace corral::sched
