#include "cache/result_cache.h"

namespace corral::cache {

namespace {

size_t charge(const Key& key, const InvocationResult& result) {
  size_t bytes = key.tenant_id.size() + key.text.size() + result.output.dump().size() +
                 result.message.size() + 256;
  for (const auto& entry : result.logs) bytes += entry.message.size() + 32;
  return bytes;
}

}  // namespace

Key ResultCache::key_for(std::string tenant_id, std::string_view version_sha256,
                         const Limits& limits, const nlohmann::json& input) {
  std::string text(version_sha256);
  for (int64_t limit : {limits.fuel, limits.memory_bytes, limits.timeout_ms, limits.output_bytes,
                        limits.log_bytes, limits.subrequests}) {
    text += ':' + std::to_string(limit);
  }
  text += '\n';
  text += input.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return {std::move(tenant_id), std::move(text)};
}

std::optional<InvocationResult> ResultCache::find(const Key& key) {
  std::lock_guard lock(mutex_);
  auto found = index_.find(Index{key.tenant_id, key.text});
  if (found == index_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  ++stats_.hits;
  recency_.splice(recency_.begin(), recency_, found->second);
  return found->second->result;
}

void ResultCache::insert(const Key& key, const InvocationResult& result) {
  if (result.outcome != Outcome::ok) return;
  size_t bytes = charge(key, result);
  if (bytes > max_bytes_ / 8) return;
  std::lock_guard lock(mutex_);
  if (auto found = index_.find(Index{key.tenant_id, key.text}); found != index_.end()) {
    evict(found->second, /*counted=*/false);  // replaced, not evicted
  }
  evict_to(key.tenant_id, bytes);
  recency_.push_front(Entry{Index{key.tenant_id, key.text}, result, bytes});
  index_.emplace(recency_.front().index, recency_.begin());
  stats_.bytes += bytes;
  tenant_bytes_[key.tenant_id] += bytes;
  stats_.entries = index_.size();
}

size_t ResultCache::forget_tenant(const std::string& tenant_id) {
  std::lock_guard lock(mutex_);
  size_t forgotten = 0;
  for (auto entry = recency_.begin(); entry != recency_.end();) {
    auto next = std::next(entry);
    if (entry->index.first == tenant_id) {
      evict(entry, false);
      ++forgotten;
    }
    entry = next;
  }
  return forgotten;
}

void ResultCache::evict(std::list<Entry>::iterator entry, bool counted) {
  stats_.bytes -= entry->bytes;
  auto tenant = tenant_bytes_.find(entry->index.first);
  tenant->second -= entry->bytes;
  if (tenant->second == 0) tenant_bytes_.erase(tenant);
  index_.erase(entry->index);
  recency_.erase(entry);
  if (counted) ++stats_.evictions;
  stats_.entries = index_.size();
}

void ResultCache::evict_to(const std::string& tenant_id, size_t bytes_needed) {
  // The tenant's own share first, oldest first: a tenant over its share never evicts another's.
  auto share = tenant_bytes_.find(tenant_id);
  for (auto entry = recency_.end(); share != tenant_bytes_.end() &&
                                    share->second + bytes_needed > tenant_max_bytes_ &&
                                    entry != recency_.begin();) {
    --entry;
    if (entry->index.first != tenant_id) continue;
    bool last = share->second == entry->bytes;
    evict(entry++);
    if (last) share = tenant_bytes_.end();
  }
  while (!recency_.empty() && stats_.bytes + bytes_needed > max_bytes_)
    evict(std::prev(recency_.end()));
}

Stats ResultCache::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

size_t ResultCache::tenant_bytes(const std::string& tenant_id) const {
  std::lock_guard lock(mutex_);
  auto found = tenant_bytes_.find(tenant_id);
  return found == tenant_bytes_.end() ? 0 : found->second;
}

}  // namespace corral::cache
