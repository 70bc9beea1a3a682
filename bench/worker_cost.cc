// corral-worker-cost-bench: what one idle jailed worker costs the machine, part by part.
//
// For each variant, --workers workers (one per tenant, as a node with thousands of tenants holds
// them) are started and left idle; then /proc/meminfo is read again and the differences are
// divided by the number of workers:
//
//   available     the drop in MemAvailable: everything the workers cost, user and kernel
//   unreclaimable SUnreclaim: the kernel's slab that cannot be given back (namespaces, cgroups,
//                 task structures); plus KernelStack, PageTables and Percpu, reported apart
//   private       the workers' own private pages (Private_Clean + Private_Dirty, smaps_rollup)
//   descriptors   how many this process holds per worker (corrald holds the same)
//   start, stop   wall time per worker to start one (to ready) and to stop one (kill, reap,
//                 remove its cgroups), one at a time
//
// The variants take one part away at a time from every layer (shared network namespace): a
// network namespace per worker instead, no cgroup layer, and no namespaces at all (which takes
// the filesystem and network layers with it). The difference to the first row is that part's
// cost. Run as root on a quiet machine: MemAvailable is the whole machine's.
//
// Usage: corral-worker-cost-bench [--worker PATH] [--workers 500] [--variants all,own-net,...]
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "jail/jail.h"
#include "pool/jail_setup.h"
#include "pool/worker_process.h"

#ifndef CORRAL_WORKER_PATH
#define CORRAL_WORKER_PATH "corral-worker"
#endif

namespace {

using Clock = std::chrono::steady_clock;
using corral::jail::Layer;

std::map<std::string, long> meminfo_kib() {
  std::map<std::string, long> values;
  std::ifstream file("/proc/meminfo");
  std::string name;
  long value = 0;
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    if (fields >> name >> value) values[name.substr(0, name.size() - 1)] = value;
  }
  return values;
}

long smaps_private_kib(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  long total = 0;
  while (std::getline(file, line)) {
    if (line.starts_with("Private_Clean:") || line.starts_with("Private_Dirty:"))
      total += std::atol(line.c_str() + line.find(':') + 1);
  }
  return total;
}

size_t open_descriptors() {
  size_t count = 0;
  if (DIR* directory = opendir("/proc/self/fd")) {
    while (readdir(directory) != nullptr) ++count;
    closedir(directory);
  }
  return count;
}

struct Variant {
  std::string name;
  std::string what;
  bool share_network = true;
  std::vector<Layer> without;
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void measure(const Variant& variant, const std::string& worker_path, size_t count) {
  corral::JailSetup::Options options = corral::JailSetup::accept_any_missing();
  options.share_network = variant.share_network;
  corral::JailSetup jail(options);
  if (variant.share_network && !jail.network_shared()) {
    std::printf("| %s | skipped: %s |\n", variant.what.c_str(),
                jail.why_network_not_shared().c_str());
    return;
  }
  // Let the kernel finish freeing what an earlier variant's workers held (network namespaces
  // are torn down by a work queue).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto before = meminfo_kib();
  size_t descriptors_before = open_descriptors();
  std::vector<std::unique_ptr<corral::WorkerProcess>> workers;
  workers.reserve(count);
  auto start = Clock::now();
  for (size_t i = 0; i < count; ++i) {
    corral::WorkerSpec spec = jail.spec_for(worker_path, "tenant-" + std::to_string(i));
    for (Layer layer : variant.without) spec.layers.remove(layer);
    if (!spec.layers.has(Layer::namespaces)) {
      spec.layers.remove(Layer::filesystem);
      spec.layers.remove(Layer::network);
    }
    auto worker = std::make_unique<corral::WorkerProcess>(spec);
    std::string why = worker->wait_until_ready(std::chrono::seconds(10));
    if (!why.empty()) {
      std::fprintf(stderr, "corral-worker-cost-bench: a worker did not get ready: %s\n",
                   why.c_str());
      std::exit(1);
    }
    workers.push_back(std::move(worker));
  }
  double start_seconds = seconds_since(start);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto after = meminfo_kib();
  size_t descriptors = open_descriptors() - descriptors_before;
  long private_kib = 0;
  for (const auto& worker : workers) private_kib += smaps_private_kib(worker->pid());
  auto stop = Clock::now();
  workers.clear();
  double stop_seconds = seconds_since(stop);

  double n = static_cast<double>(count);
  auto per_worker = [&](const char* field, bool drop) {
    return static_cast<double>(drop ? before[field] - after[field] : after[field] - before[field]) /
           n;
  };
  std::printf("| %s | %.0f | %.0f | %.1f | %.1f | %.1f | %.0f | %.1f | %.2f | %.2f |\n",
              variant.what.c_str(), per_worker("MemAvailable", true),
              per_worker("SUnreclaim", false), per_worker("KernelStack", false),
              per_worker("PageTables", false), per_worker("Percpu", false),
              static_cast<double>(private_kib) / n, static_cast<double>(descriptors) / n,
              start_seconds * 1000 / n, stop_seconds * 1000 / n);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string worker_path = CORRAL_WORKER_PATH;
  size_t count = 500;
  std::string chosen = "all,own-net,no-cgroup,no-namespaces";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--worker") {
      worker_path = argv[i + 1];
    } else if (flag == "--workers") {
      count = std::strtoul(argv[i + 1], nullptr, 10);
    } else if (flag == "--variants") {
      chosen = argv[i + 1];
    } else {
      std::fprintf(stderr,
                   "usage: corral-worker-cost-bench [--worker PATH] [--workers N] "
                   "[--variants all,own-net,no-cgroup,no-namespaces]\n");
      return 2;
    }
  }
  if (count == 0) {
    std::fprintf(stderr, "corral-worker-cost-bench: --workers needs a positive number\n");
    return 2;
  }
  const std::vector<std::pair<std::string, Variant>> variants = {
      {"all", {"all", "every layer, one shared network namespace", true, {}}},
      {"own-net", {"own-net", "every layer, a network namespace per worker", false, {}}},
      {"no-cgroup", {"no-cgroup", "no cgroup layer (shared network)", true, {Layer::cgroup}}},
      {"no-namespaces",
       {"no-namespaces",
        "no namespaces (nor filesystem, network layers)",
        true,
        {Layer::namespaces}}},
  };
  std::printf("Per idle worker, %zu workers of %zu tenants (KiB unless said):\n\n", count, count);
  std::printf(
      "| variant | MemAvailable drop | SUnreclaim | KernelStack | PageTables | Percpu | private "
      "user | descriptors | start ms | stop ms |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const auto& [key, variant] : variants) {
    if (("," + chosen + ",").find("," + key + ",") == std::string::npos) continue;
    measure(variant, worker_path, count);
  }
  return 0;
}
