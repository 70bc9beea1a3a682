// Load against a real corrald, for the noisy-neighbour and overload tests and bench/: keep-alive
// connections that never throw (a socket error is recorded, not raised), a tally of statuses,
// Retry-After and problem types, and the supervisor's resident memory.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace corral::testing {

struct Reply {
  int status = 0;            // 0: no answer (the connection failed; see error)
  std::string error;         // what failed on the socket
  std::string retry_after;   // the header, as sent ("" if none)
  std::string problem_type;  // "type" of a problem body ("" otherwise)
  nlohmann::json body;       // parsed, or discarded if not JSON
  double seconds = 0;        // from writing the request to reading the whole answer
};

// One keep-alive connection that reconnects when the server closed the previous one.
class LoadConnection {
 public:
  LoadConnection(std::string host, uint16_t port, std::string token);
  ~LoadConnection();

  Reply post(const std::string& target, const std::string& body);

 private:
  void connect();

  std::string host_;
  uint16_t port_;
  std::string token_;
  // The io_context, socket and read buffer, behind a pointer so that only load.cc needs Asio.
  struct Connection;
  std::unique_ptr<Connection> connection_;
};

// What a set of replies came to. Thread-safe.
class Tally {
 public:
  void add(const Reply& reply) {
    std::lock_guard lock(mutex_);
    ++statuses_[reply.status];
    if (!reply.problem_type.empty()) ++types_[reply.problem_type];
    if (reply.status == 0 && errors_.size() < 5) errors_.push_back(reply.error);
    bool refused = reply.status == 429 || reply.status == 503;
    if (refused) {
      int seconds = 0;
      try {
        seconds = std::stoi(reply.retry_after);
      } catch (const std::exception&) {
      }
      if (seconds < 1) ++refusals_without_retry_after_;
    }
    if (reply.status == 200) {
      seconds_ok_.push_back(reply.seconds);
      // An invocation's own wall time in the worker, as it reports it (stats.wall_ms).
      if (reply.body.is_object() && reply.body.contains("stats") &&
          reply.body["stats"].contains("wall_ms") && reply.body["stats"]["wall_ms"].is_number())
        worker_seconds_ok_.push_back(reply.body["stats"]["wall_ms"].get<double>() / 1000);
    }
  }

  std::map<int, int> statuses() const {
    std::lock_guard lock(mutex_);
    return statuses_;
  }
  std::map<std::string, int> problem_types() const {
    std::lock_guard lock(mutex_);
    return types_;
  }
  int count(int status) const {
    std::lock_guard lock(mutex_);
    auto found = statuses_.find(status);
    return found == statuses_.end() ? 0 : found->second;
  }
  int total() const {
    std::lock_guard lock(mutex_);
    int sum = 0;
    for (const auto& [status, count] : statuses_) sum += count;
    return sum;
  }
  // 429 and 503 answers whose Retry-After is missing or below 1.
  int refusals_without_retry_after() const {
    std::lock_guard lock(mutex_);
    return refusals_without_retry_after_;
  }
  std::vector<std::string> errors() const {
    std::lock_guard lock(mutex_);
    return errors_;
  }
  // Latencies of the 200 answers, in seconds, sorted.
  std::vector<double> ok_seconds() const {
    std::lock_guard lock(mutex_);
    auto sorted = seconds_ok_;
    std::sort(sorted.begin(), sorted.end());
    return sorted;
  }

  // stats.wall_ms of the 200 answers that carry it, in seconds, sorted.
  std::vector<double> ok_worker_seconds() const {
    std::lock_guard lock(mutex_);
    auto sorted = worker_seconds_ok_;
    std::sort(sorted.begin(), sorted.end());
    return sorted;
  }

  std::string summary() const {
    std::lock_guard lock(mutex_);
    std::string text;
    for (const auto& [status, count] : statuses_) {
      text += (text.empty() ? "" : ", ") + std::string(status ? std::to_string(status) : "error") +
              ": " + std::to_string(count);
    }
    return text;
  }

 private:
  mutable std::mutex mutex_;
  std::map<int, int> statuses_;
  std::map<std::string, int> types_;
  std::vector<std::string> errors_;
  std::vector<double> seconds_ok_;
  std::vector<double> worker_seconds_ok_;
  int refusals_without_retry_after_ = 0;
};

// The value at quantile q (0..1) of sorted values, nearest rank; 0 if empty.
inline double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

// For client threads that generate load on the machine corrald runs on: at nice 19 they take CPU
// only when corrald and its workers leave some, as a flood arriving from other machines would.
// (Without it, a dozen client threads in a tight loop starve the jailed workers, whose cgroup
// weighs as much as one thread, and runs time out for want of CPU, not of corrald's fairness.)
void yield_cpu_to_corrald();

// VmRSS of a process in KiB, from /proc/PID/status; nullopt if it cannot be read.
std::optional<long> resident_kib(int pid);

}  // namespace corral::testing
