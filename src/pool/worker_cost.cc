#include "pool/worker_cost.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "pool/worker_process.h"

namespace corral {
namespace {

constexpr size_t kMostKernelBytes = 16 << 20;

// What the kernel keeps per worker beyond its page tables, part by part, as
// corral-worker-cost-bench and 1,000 cgroups of each controller measured it on Linux 6.18 with
// cgroup v1 (docs/performance.md, "Thousands of tenants"). The start-up measurement alone
// misjudges it both ways: other activity adds to the totals, and slab objects freed by workers
// that ended a moment ago are reused without the totals moving.
constexpr size_t kKernelStackBytes = 16 << 10;
constexpr size_t kMemoryCgroupBytes = 324 << 10;
constexpr size_t kOtherCgroupsBytes = 14 << 10;  // pids and cpu
constexpr size_t kNamespacesBytes = 24 << 10;    // user, mount, pid, ipc, uts, cgroup; the task
constexpr size_t kNetworkNamespaceBytes = 176 << 10;

size_t page_table_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmPTE:")) return std::strtoull(line.c_str() + 6, nullptr, 10) << 10;
  }
  return 0;
}

std::map<std::string, uint64_t> meminfo_kib() {
  std::map<std::string, uint64_t> values;
  std::ifstream file("/proc/meminfo");
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    std::string name;
    uint64_t value = 0;
    if (fields >> name >> value && name.ends_with(':'))
      values[name.substr(0, name.size() - 1)] = value;
  }
  return values;
}

// What the kernel holds for processes beyond their pages, in KiB.
uint64_t kernel_kib(std::map<std::string, uint64_t>& meminfo) {
  return meminfo["SUnreclaim"] + meminfo["KernelStack"] + meminfo["PageTables"] + meminfo["Percpu"];
}

}  // namespace

WorkerCost measure_worker_cost(const JailSetup& jail, const std::string& worker_path,
                               size_t samples, std::chrono::milliseconds start_timeout) {
  // In rounds, keeping the median round: whatever else the machine does moves the same totals,
  // and mostly one way (up), in bursts.
  constexpr size_t kRounds = 4;
  size_t per_round = std::max<size_t>(1, samples / kRounds);
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  std::vector<uint64_t> round_bytes;
  size_t user = 0, page_tables = 0;
  for (size_t round = 0; round < kRounds; ++round) {
    auto before = meminfo_kib();
    for (size_t i = 0; i < per_round; ++i) {
      auto worker = std::make_unique<WorkerProcess>(jail.spec_for(worker_path, ""));
      std::string why = worker->wait_until_ready(start_timeout);
      if (!why.empty())
        throw std::runtime_error("a worker started to measure what workers cost " + why);
      user += worker->anonymous_bytes();
      page_tables += page_table_bytes(worker->pid());
      workers.push_back(std::move(worker));
    }
    auto after = meminfo_kib();
    uint64_t kernel_before = kernel_kib(before), kernel_after = kernel_kib(after);
    round_bytes.push_back(
        kernel_after > kernel_before ? (kernel_after - kernel_before) * 1024 / per_round : 0);
  }
  workers.clear();
  std::sort(round_bytes.begin(), round_bytes.end());
  WorkerCost cost;
  cost.samples = per_round * kRounds;
  size_t modelled = kKernelStackBytes + kNamespacesBytes + page_tables / cost.samples;
  if (jail.active().has(jail::Layer::cgroup)) modelled += kMemoryCgroupBytes + kOtherCgroupsBytes;
  if (jail.active().has(jail::Layer::namespaces) && !jail.network_shared())
    modelled += kNetworkNamespaceBytes;
  cost.kernel_bytes =
      std::clamp<size_t>(std::max<size_t>(static_cast<size_t>(round_bytes[kRounds / 2]), modelled),
                         kLeastWorkerBytes / 2, kMostKernelBytes);
  cost.user_bytes = user / cost.samples;
  return cost;
}

uint64_t machine_memory_bytes() { return meminfo_kib()["MemTotal"] * 1024; }

uint64_t parse_memory_amount(std::string_view text, uint64_t total, std::string_view flag) {
  auto refuse = [&] {
    return std::invalid_argument(std::string(flag) +
                                 " takes a share of the machine's memory (\"25%\") or an amount "
                                 "(\"4G\", \"512M\", \"300K\", or bytes), not '" +
                                 std::string(text) + "'");
  };
  if (text.empty()) throw refuse();
  uint64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc() || end == text.data()) throw refuse();
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  uint64_t amount = 0;
  if (unit == "%") {
    if (number == 0 || number > 100) throw refuse();
    amount = static_cast<uint64_t>(static_cast<unsigned __int128>(total) * number / 100);
  } else {
    int shift = unit.empty()  ? 0
                : unit == "K" ? 10
                : unit == "M" ? 20
                : unit == "G" ? 30
                : unit == "T" ? 40
                              : -1;
    if (shift < 0 || number > (UINT64_MAX >> shift)) throw refuse();
    amount = number << shift;
  }
  if (amount == 0) throw refuse();
  return amount;
}

}  // namespace corral
