// The result cache (issue 6, "Caching"): a version whose manifest says `deterministic: true` and
// that is offered no capability computes the same output from the same input, so an `ok` result
// can answer the next identical invocation without touching a worker.
//
// Contract:
// - Every entry belongs to one tenant, and a lookup sees only its own tenant's entries: the tenant
//   is a part of Key of its own, not text mixed into the rest, so no choice of source, input or
//   limits by another tenant can reach an entry (two tenants publishing the same source each
//   compute, and are served, their own results; a compromised worker can poison only its own
//   tenant's entries).
// - Within a tenant, the key is made by key_for(): the version's SHA-256, the limits the run had
//   (a smaller fuel or memory limit may turn the same input into limit_exceeded) and the canonical
//   input (the JSON text with object members in sorted order, which nlohmann::json's dump gives).
//   A new version has a new hash, so it never sees its predecessor's results.
// - Only `ok` results are stored: the others depend on time (wall-time limits) or on the machine.
// - Bounded memory: entries are charged their key plus the result's output, logs and message;
//   inserting past max_bytes evicts the least recently used entries first. An entry larger than
//   max_bytes / 8 is not stored, so one big result cannot empty the cache. One tenant holds at most
//   max_bytes / 4: past that its own least recently used entries go first, so a tenant churning
//   through inputs cannot flush the others' entries.
// - Whether a tenant may use the cache at all is the policy's `cache.enabled`; the caller asks.
// - Thread-safe: one mutex; lookups and inserts are O(log n) plus the copy of the result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "invocation/invocation.h"

namespace corral::cache {

inline constexpr size_t kDefaultMaxBytes = 64u << 20;

struct Stats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  size_t entries = 0;
  size_t bytes = 0;
};

struct Key {
  std::string tenant_id;
  std::string text;  // key_for()
};

class ResultCache {
 public:
  explicit ResultCache(size_t max_bytes = kDefaultMaxBytes)
      : max_bytes_(max_bytes), tenant_max_bytes_(max_bytes / 4) {}
  ResultCache(const ResultCache&) = delete;
  ResultCache& operator=(const ResultCache&) = delete;

  static Key key_for(std::string tenant_id, std::string_view version_sha256, const Limits& limits,
                     const nlohmann::json& input);

  // The tenant's stored result, marked most recently used; counts a hit or a miss.
  std::optional<InvocationResult> find(const Key& key);
  // Stores an `ok` result (others are ignored), replacing one under the same key.
  void insert(const Key& key, const InvocationResult& result);

  // Drops every entry of the tenant (its data is being erased); returns how many. Not counted as
  // evictions.
  size_t forget_tenant(const std::string& tenant_id);

  Stats stats() const;
  size_t tenant_bytes(const std::string& tenant_id) const;

 private:
  using Index = std::pair<std::string, std::string>;  // tenant id, key text
  struct Entry {
    Index index;
    InvocationResult result;
    size_t bytes = 0;
  };
  void evict(std::list<Entry>::iterator entry, bool counted = true);
  void evict_to(const std::string& tenant_id, size_t bytes_needed);

  const size_t max_bytes_;
  const size_t tenant_max_bytes_;
  mutable std::mutex mutex_;
  std::list<Entry> recency_;  // most recently used first
  std::map<Index, std::list<Entry>::iterator> index_;
  std::map<std::string, size_t, std::less<>> tenant_bytes_;
  Stats stats_;
};

}  // namespace corral::cache
