// What a worker costs the machine, and the memory budget the pool spends it from (issue 25;
// docs/performance.md, "Thousands of tenants"). corrald measures the cost once at start, with
// the jail it will use, and sizes its pool by memory rather than by a count (tenant_pool.h).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pool/jail_setup.h"

namespace corral {

struct WorkerCost {
  // The kernel's share per worker: unreclaimable slab (namespaces, cgroups, the task), its
  // kernel stack, page tables and per-CPU data, as /proc/meminfo's totals moved.
  size_t kernel_bytes = 0;
  size_t user_bytes = 0;  // a ready, idle worker's own anonymous memory
  size_t samples = 0;
};

// A worker costs at least this much, whatever a measurement says: its kernel stack, page tables
// and task alone take more. The pool's count cap is the budget divided by it, so that the count
// never binds before the memory does.
inline constexpr size_t kLeastWorkerBytes = 192 << 10;

// Starts `samples` workers of no tenant one after another with this jail, in four rounds, reads
// what the machine spent on each round's, keeps the median round, and stops them. The kernel
// share is at least what the parts of this jail were measured to cost (worker_cost.cc: its
// cgroups, namespaces, kernel stack, and the workers' page tables as read now). Throws
// std::runtime_error when a worker cannot be started or is not ready within `start_timeout` (the
// pool would fail the same way: the message says why). The kernel share is kept within
// [kLeastWorkerBytes / 2, 16 MiB], as other activity on the machine moves the same totals.
WorkerCost measure_worker_cost(const JailSetup& jail, const std::string& worker_path,
                               size_t samples = 16,
                               std::chrono::milliseconds start_timeout = std::chrono::seconds(10));

// MemTotal, in bytes (0 if /proc/meminfo cannot be read).
uint64_t machine_memory_bytes();

// "25%" of `total`, or an amount: "4G", "512M", "300K", "1073741824" (bytes); suffixes are
// powers of 1024. Throws std::invalid_argument naming the flag and the forms it takes.
uint64_t parse_memory_amount(std::string_view text, uint64_t total, std::string_view flag);

}  // namespace corral
