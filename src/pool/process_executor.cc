#include "pool/process_executor.h"

#include <unistd.h>

#include <climits>
#include <filesystem>
#include <limits>

#include "pool/worker_process.h"

namespace corral {
namespace {

const std::string kOnlyTenant = "local";

// No cap worth reaching: callers bring their own concurrency, and each gets a worker at once.
constexpr size_t kMaxWorkers = 1024;

}  // namespace

ProcessExecutor::ProcessExecutor(Options options)
    : pool_({.max_workers = kMaxWorkers,
             .warm_per_tenant = 0,  // a worker is started when a run needs one, never ahead
             .max_idle = options.max_idle_workers,
             .recycle_after = std::numeric_limits<uint64_t>::max(),
             .kill_grace_ms = options.kill_grace_ms},
            [options](const std::string&) {
              WorkerSpec spec;
              spec.worker_path = options.worker_path;
              spec.max_frame_bytes = options.max_frame_bytes;
              return std::make_unique<WorkerProcess>(spec);
            }) {}

InvocationResult ProcessExecutor::run(const InvocationRequest& request) {
  InvocationRequest local = request;
  local.tenant = kOnlyTenant;
  return pool_.run(local);
}

std::string default_worker_path() {
  if (const char* configured = std::getenv("CORRAL_WORKER")) return configured;
  char self[PATH_MAX];
  ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) return "corral-worker";
  self[length] = '\0';
  return (std::filesystem::path(self).parent_path() / "corral-worker").string();
}

}  // namespace corral
