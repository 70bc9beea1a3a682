#include "cache/result_cache.h"

namespace corral::cache {

namespace {

size_t charge(const std::string& key, const InvocationResult& result) {
  size_t bytes = key.size() + result.output.dump().size() + result.message.size() + 256;
  for (const auto& entry : result.logs) bytes += entry.message.size() + 32;
  return bytes;
}

}  // namespace

std::string ResultCache::key_for(std::string_view version_sha256, const Limits& limits,
                                 const nlohmann::json& input) {
  std::string key(version_sha256);
  for (int64_t limit : {limits.fuel, limits.memory_bytes, limits.timeout_ms, limits.output_bytes,
                        limits.log_bytes, limits.subrequests}) {
    key += ':' + std::to_string(limit);
  }
  key += '\n';
  key += input.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return key;
}

std::optional<InvocationResult> ResultCache::find(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto found = index_.find(key);
  if (found == index_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  ++stats_.hits;
  recency_.splice(recency_.begin(), recency_, found->second);
  return found->second->result;
}

void ResultCache::insert(const std::string& key, const InvocationResult& result) {
  if (result.outcome != Outcome::ok) return;
  size_t bytes = charge(key, result);
  if (bytes > max_bytes_ / 8) return;
  std::lock_guard lock(mutex_);
  if (auto found = index_.find(key); found != index_.end()) {
    stats_.bytes -= found->second->bytes;
    recency_.erase(found->second);
    index_.erase(found);
  }
  evict_to(bytes);
  recency_.push_front(Entry{key, result, bytes});
  index_.emplace(key, recency_.begin());
  stats_.bytes += bytes;
  stats_.entries = index_.size();
}

void ResultCache::evict_to(size_t bytes_needed) {
  while (!recency_.empty() && stats_.bytes + bytes_needed > max_bytes_) {
    Entry& oldest = recency_.back();
    stats_.bytes -= oldest.bytes;
    index_.erase(oldest.key);
    recency_.pop_back();
    ++stats_.evictions;
  }
  stats_.entries = index_.size();
}

Stats ResultCache::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace corral::cache
