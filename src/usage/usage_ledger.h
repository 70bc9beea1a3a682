// Usage for billing (GET /v1/tenants/{tenant}/usage): what each tenant's scripts used, per script
// and hour, counted on the invocation's path and kept durably in the store.
//
// Writing to the store on every invocation would add a SQLite transaction to the warm path, so
// record_invocation() and record_job() only add to counts in memory; a thread of the ledger adds
// them to the store (one transaction, store::Store::add_usage) every flush_every.
//
// Contract:
// - record_*() is O(1) under one mutex and never calls the store.
// - Nothing counted is dropped while corrald runs: counts that the store refused (a full disk)
//   stay in memory and go with the next write. A corrald killed with -9 loses at most the counts
//   of the last flush_every; one stopped normally loses none (the destructor writes them).
// - flush() returns true once everything counted before it is in the store; a reader calls it
//   first so that its answer includes the runs before it.
// - Rows of hours older than `retention` are deleted, once an hour.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "store/store.h"

namespace corral::usage {

inline constexpr int64_t kHourMs = 3'600'000;

// The start of the hour `at_ms` falls in.
inline int64_t hour_of(int64_t at_ms) { return at_ms - ((at_ms % kHourMs) + kHourMs) % kHourMs; }

class UsageLedger {
 public:
  struct Options {
    std::chrono::milliseconds flush_every{1000};
    std::chrono::hours retention{24 * 400};
    std::function<int64_t()> now_ms;  // unix milliseconds; the system clock when empty
  };
  UsageLedger(store::Store& store, Options options);
  ~UsageLedger();
  UsageLedger(const UsageLedger&) = delete;
  UsageLedger& operator=(const UsageLedger&) = delete;

  // One invocation of `script` ("" for a playground run) of the tenant with id `tenant_id`.
  void record_invocation(std::string_view tenant_id, std::string_view script, bool failed,
                         double cpu_ms, int64_t fuel);
  void record_job(std::string_view tenant_id, std::string_view script);

  bool flush();

 private:
  struct Key {
    std::string tenant_id;
    std::string script;
    int64_t hour = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const;
  };
  using Counts = std::unordered_map<Key, store::UsageCounts, KeyHash>;

  void add(std::string_view tenant_id, std::string_view script, const store::UsageCounts& counts);
  int64_t now_ms() const;
  void write_loop();

  store::Store& store_;
  const Options options_;
  std::mutex counting_;  // guards pending_
  Counts pending_;
  std::mutex writing_;  // one write at a time, so that flush() waits for one in progress
  std::mutex waking_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread writer_;  // last: started once everything above exists
};

}  // namespace corral::usage
