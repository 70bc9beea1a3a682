// Runs invocations in corral-worker processes: each worker is exec'd fresh (never a fork of the
// caller), speaks length-prefixed frames over a socketpair (pool/frame.h), serves one
// invocation at a time, and is SIGKILLed through its pidfd when it overruns its deadline.
// Idle workers are reused; a worker whose run ended in anything but ok or script_error is
// retired, so no damaged process serves again. Workers are started on one long-lived thread of
// the executor's, because a worker's PR_SET_PDEATHSIG fires when the thread that started it
// ends, and an idle worker started for one caller may serve another after the first is gone.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "invocation/executor.h"

namespace corral {

class WorkerProcess;
struct WorkerSpec;
class SpawnerThread;

class ProcessExecutor : public Executor {
 public:
  struct Options {
    std::string worker_path;      // the corral-worker binary
    size_t max_idle_workers = 4;  // warm workers kept between invocations
    int64_t kill_grace_ms = 50;   // past the deadline before the supervisor kills
    uint32_t max_frame_bytes = 16u << 20;
  };

  explicit ProcessExecutor(Options options);
  ~ProcessExecutor() override;
  ProcessExecutor(const ProcessExecutor&) = delete;
  ProcessExecutor& operator=(const ProcessExecutor&) = delete;

  InvocationResult run(const InvocationRequest& request) override;

  // Workers started since construction (a test hook: shows reuse and replacement).
  uint64_t workers_started() const;

 private:
  WorkerSpec spec() const;
  std::unique_ptr<WorkerProcess> take_idle_worker();
  void return_worker(std::unique_ptr<WorkerProcess> worker);

  Options options_;
  // Before idle_, so it is destroyed after it: the idle workers are killed and reaped in order
  // before the thread whose end would kill them.
  std::unique_ptr<SpawnerThread> spawner_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<WorkerProcess>> idle_;
  uint64_t workers_started_ = 0;
};

// The corral-worker that sits beside the running executable (build and install layout),
// unless CORRAL_WORKER names another.
std::string default_worker_path();

}  // namespace corral
