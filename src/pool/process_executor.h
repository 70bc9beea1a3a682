// Runs invocations in unjailed corral-worker processes, for the tests and tools that need a real
// worker without a jail: a TenantPool (pool/tenant_pool.h) in which every run is of one tenant.
// So each worker is exec'd fresh (never a fork of the caller), speaks length-prefixed frames over
// a socketpair (pool/frame.h), serves one invocation at a time, and is SIGKILLed through its
// pidfd when it overruns its deadline; idle workers are reused, and a worker whose run ended in
// anything but ok or script_error is retired, so no damaged process serves again.
#pragma once

#include <cstdint>
#include <string>

#include "invocation/executor.h"
#include "pool/tenant_pool.h"

namespace corral {

class ProcessExecutor : public Executor {
 public:
  struct Options {
    std::string worker_path;      // the corral-worker binary
    size_t max_idle_workers = 4;  // warm workers kept between invocations
    int64_t kill_grace_ms = 50;   // past the deadline before the supervisor kills
    uint32_t max_frame_bytes = 16u << 20;
  };

  explicit ProcessExecutor(Options options);
  ProcessExecutor(const ProcessExecutor&) = delete;
  ProcessExecutor& operator=(const ProcessExecutor&) = delete;

  // Runs as the executor's one tenant, whatever tenant the request names.
  InvocationResult run(const InvocationRequest& request) override;

  // Workers started since construction (a test hook: shows reuse and replacement).
  uint64_t workers_started() const { return pool_.stats().spawned; }

 private:
  TenantPool pool_;
};

// The corral-worker that sits beside the running executable (build and install layout),
// unless CORRAL_WORKER names another.
std::string default_worker_path();

}  // namespace corral
