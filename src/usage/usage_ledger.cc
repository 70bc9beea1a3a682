#include "usage/usage_ledger.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <vector>

namespace corral::usage {

size_t UsageLedger::KeyHash::operator()(const Key& key) const {
  size_t hash = std::hash<std::string>{}(key.tenant_id);
  hash ^= std::hash<std::string>{}(key.script) + 0x9e3779b97f4a7c15ull + (hash << 6) + (hash >> 2);
  return hash ^ (std::hash<int64_t>{}(key.hour) + 0x9e3779b97f4a7c15ull + (hash << 6));
}

UsageLedger::UsageLedger(store::Store& store, Options options)
    : store_(store), options_(std::move(options)), writer_([this] { write_loop(); }) {}

UsageLedger::~UsageLedger() {
  {
    std::lock_guard lock(waking_);
    stopping_ = true;
  }
  wake_.notify_all();
  writer_.join();
  flush();
}

int64_t UsageLedger::now_ms() const {
  if (options_.now_ms) return options_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void UsageLedger::add(std::string_view tenant_id, std::string_view script,
                      const store::UsageCounts& counts) {
  Key key{std::string(tenant_id), std::string(script), hour_of(now_ms())};
  std::lock_guard lock(counting_);
  pending_[std::move(key)] += counts;
}

void UsageLedger::record_invocation(std::string_view tenant_id, std::string_view script,
                                    bool failed, double cpu_ms, int64_t fuel) {
  add(tenant_id, script,
      {.invocations = 1,
       .failures = failed ? 1 : 0,
       .cpu_us = std::isfinite(cpu_ms) && cpu_ms > 0 ? std::llround(cpu_ms * 1000) : 0,
       .fuel = std::max<int64_t>(fuel, 0)});
}

void UsageLedger::record_job(std::string_view tenant_id, std::string_view script) {
  add(tenant_id, script, {.jobs = 1});
}

bool UsageLedger::flush() {
  std::lock_guard writing(writing_);
  Counts taken;
  {
    std::lock_guard lock(counting_);
    taken.swap(pending_);
  }
  if (taken.empty()) return true;
  std::vector<store::UsageRow> rows;
  rows.reserve(taken.size());
  for (const auto& [key, counts] : taken)
    rows.push_back({key.tenant_id, key.script, key.hour, counts});
  try {
    store_.add_usage(rows);
    return true;
  } catch (const std::exception& error) {
    // Kept for the next write: usage is what a tenant is billed for.
    std::lock_guard lock(counting_);
    for (auto& [key, counts] : taken) pending_[key] += counts;
    spdlog::warn(
        "usage: cannot write {} rows of usage to the store ({}); they are kept in memory "
        "and written with the next attempt",
        rows.size(), error.what());
    return false;
  }
}

void UsageLedger::write_loop() {
  auto next_prune = std::chrono::steady_clock::now();
  std::unique_lock lock(waking_);
  while (!wake_.wait_for(lock, options_.flush_every, [this] { return stopping_; })) {
    lock.unlock();
    flush();
    if (std::chrono::steady_clock::now() >= next_prune) {
      next_prune = std::chrono::steady_clock::now() + std::chrono::hours(1);
      try {
        auto retention_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.retention).count();
        store_.prune_usage(hour_of(now_ms()) - retention_ms);
      } catch (const std::exception& error) {
        spdlog::warn(
            "usage: cannot delete usage older than the retention ({}); trying again in "
            "an hour",
            error.what());
      }
    }
    lock.lock();
  }
}

}  // namespace corral::usage
