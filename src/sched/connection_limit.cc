#include "sched/connection_limit.h"

#include <netinet/in.h>

#include <cstring>
#include <utility>

namespace corral::sched {

std::string client_key(const net::IpAddress& address) {
  if (address.is_v4()) return address.to_string();
  if (auto v4 = address.embedded_v4()) return v4->to_string();
  // The /64 the address belongs to: its first 64 bits, the rest zero.
  sockaddr_in6 prefix{};
  prefix.sin6_family = AF_INET6;
  std::memcpy(&prefix.sin6_addr, address.bytes(), 8);
  auto network =
      net::IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&prefix), sizeof prefix);
  return network->to_string() + "/64";
}

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

ConnectionCap::Place& ConnectionCap::Place::operator=(Place&& other) noexcept {
  if (this != &other) {
    if (cap_) cap_->open_.fetch_sub(1, std::memory_order_relaxed);
    cap_ = std::exchange(other.cap_, nullptr);
  }
  return *this;
}

ConnectionCap::Place::~Place() {
  if (cap_) cap_->open_.fetch_sub(1, std::memory_order_relaxed);
}

std::optional<ConnectionCap::Place> ConnectionCap::reserve() {
  size_t taken = open_.fetch_add(1, std::memory_order_relaxed);
  if (max_ != 0 && taken >= max_) {
    open_.fetch_sub(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  return Place(this);
}

}  // namespace corral::sched
