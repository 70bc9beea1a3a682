#include "pool/process_executor.h"

#include <unistd.h>

#include <climits>
#include <filesystem>

#include "pool/worker_process.h"

namespace corral {

ProcessExecutor::ProcessExecutor(Options options) : options_(std::move(options)) {}

ProcessExecutor::~ProcessExecutor() = default;

InvocationResult ProcessExecutor::run(const InvocationRequest& request) {
  std::unique_ptr<WorkerProcess> worker = take_idle_worker();
  if (!worker) {
    try {
      worker = std::make_unique<WorkerProcess>(spec());
      std::lock_guard lock(mutex_);
      ++workers_started_;
    } catch (const std::exception& error) {
      InvocationResult result;
      result.invocation_id = request.invocation_id;
      result.outcome = Outcome::crashed;
      result.message = error.what();
      return result;
    }
  }
  InvocationResult result =
      worker->invoke(request, std::chrono::milliseconds(options_.kill_grace_ms));
  // Only a worker whose run ended normally serves again: after a limit, a crash or a protocol
  // error its state is not to be trusted.
  if (worker->alive() &&
      (result.outcome == Outcome::ok || result.outcome == Outcome::script_error)) {
    return_worker(std::move(worker));
  }
  return result;
}

WorkerSpec ProcessExecutor::spec() const {
  WorkerSpec spec;
  spec.worker_path = options_.worker_path;
  spec.max_frame_bytes = options_.max_frame_bytes;
  return spec;
}

uint64_t ProcessExecutor::workers_started() const {
  std::lock_guard lock(mutex_);
  return workers_started_;
}

std::unique_ptr<WorkerProcess> ProcessExecutor::take_idle_worker() {
  std::lock_guard lock(mutex_);
  if (idle_.empty()) return nullptr;
  auto worker = std::move(idle_.back());
  idle_.pop_back();
  return worker;
}

void ProcessExecutor::return_worker(std::unique_ptr<WorkerProcess> worker) {
  std::lock_guard lock(mutex_);
  if (idle_.size() < options_.max_idle_workers) idle_.push_back(std::move(worker));
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
