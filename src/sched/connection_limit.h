// The per-client connection limit (docs/operations.md, "Connections per client"): at most
// `per_client` connections open at once from one client address, so that one client cannot hold
// all of corrald's descriptors, nor get around the refusal hold (refusal_holds.h) by opening as
// many connections as it likes, each waiting out the hold and then asking at once.
//
// Contract:
// - admit() hands out a Slot for a connection, or nothing when the address has per_client slots
//   already; the slot is given back when the Slot is destroyed (the connection's end).
// - per_client 0 means no limit: every connection is admitted, and nothing is counted.
// - Only addresses with a connection open are tracked, so the table is as large as the number of
//   distinct clients connected. Thread-safe: one mutex.
#pragma once

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace corral::sched {

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

}  // namespace corral::sched
