// Limits on the connections corrald keeps open (docs/operations.md, "Connections per client",
// "Connections in all").
//
// ConnectionLimit: at most `per_client` connections open at once from one client, so that one
// client cannot hold all of corrald's descriptors, nor get around the refusal hold
// (refusal_holds.h) by opening as many connections as it likes, each waiting out the hold and then
// asking at once. A client is what client_key() makes of its address: an IPv4 address, or an
// IPv6 /64, since one IPv6 host is usually given a whole /64 and could open each connection from
// another address in it.
//
// Contract:
// - admit() hands out a Slot for a connection, or nothing when the address has per_client slots
//   already; the slot is given back when the Slot is destroyed (the connection's end).
// - per_client 0 means no limit: every connection is admitted, and nothing is counted.
// - Only addresses with a connection open are tracked, so the table is as large as the number of
//   distinct clients connected. Thread-safe: one mutex.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "net/ip_address.h"

namespace corral::sched {

// The client an address counts under: an IPv4 address as itself ("203.0.113.7"), an IPv6
// address that stands for an IPv4 one (::ffff:a.b.c.d and the like) as that IPv4 address, any
// other IPv6 address as its /64 ("2001:db8:1:2::/64").
std::string client_key(const net::IpAddress& address);

class ConnectionLimit {
 public:
  explicit ConnectionLimit(size_t per_client) : per_client_(per_client) {}
  ConnectionLimit(const ConnectionLimit&) = delete;
  ConnectionLimit& operator=(const ConnectionLimit&) = delete;

  class Slot {
   public:
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    friend class ConnectionLimit;
    Slot(ConnectionLimit* limit, std::string client) : limit_(limit), client_(std::move(client)) {}
    void release();
    ConnectionLimit* limit_;  // null once released or moved from, or when nothing is counted
    std::string client_;
  };

  std::optional<Slot> admit(const std::string& client);

  size_t per_client() const { return per_client_; }
  // Connections open now from `client`.
  size_t open_from(const std::string& client) const;
  // Distinct clients with a connection open now.
  size_t clients() const;

 private:
  void give_back(const std::string& client);

  const size_t per_client_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, size_t> open_;
};

// ConnectionCap: at most `max` connections open at once in all, so that connections cannot take
// the descriptors corrald needs for its workers and its store, whichever clients open them.
// A connection the server accepts when no place is left waits, unread, until one is given back,
// and the server accepts no other meanwhile: the rest wait in the kernel's listen backlog, using
// no descriptor of corrald's.
//
// Contract:
// - reserve() hands out a Place, or nothing when `max` places are taken; the place is given back
//   when the Place is destroyed (the connection's end).
// - max 0 means no cap: every reservation succeeds, and places are still counted (open()).
// - Thread-safe: one atomic counter.
class ConnectionCap {
 public:
  explicit ConnectionCap(size_t max) : max_(max) {}
  ConnectionCap(const ConnectionCap&) = delete;
  ConnectionCap& operator=(const ConnectionCap&) = delete;

  class Place {
   public:
    Place(Place&& other) noexcept : cap_(std::exchange(other.cap_, nullptr)) {}
    Place& operator=(Place&& other) noexcept;
    Place(const Place&) = delete;
    Place& operator=(const Place&) = delete;
    ~Place();

   private:
    friend class ConnectionCap;
    explicit Place(ConnectionCap* cap) : cap_(cap) {}
    ConnectionCap* cap_;  // null once given back or moved from
  };

  std::optional<Place> reserve();

  size_t max() const { return max_; }
  // Places taken now: the connections open.
  size_t open() const { return open_.load(std::memory_order_relaxed); }

 private:
  const size_t max_;
  std::atomic<size_t> open_{0};
};

}  // namespace corral::sched
