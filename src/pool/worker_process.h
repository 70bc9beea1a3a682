// One corral-worker process and its channel. Internal to the pool.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "invocation/invocation.h"
#include "pool/frame.h"

namespace corral {

class WorkerProcess {
 public:
  // Starts worker_path with the channel on descriptor 3, nothing else open, empty environment.
  // Throws std::runtime_error saying which step failed.
  WorkerProcess(const std::string& worker_path, uint32_t max_frame_bytes);
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // Sends the request and waits for its result until the request's deadline plus grace; past
  // it, kills the worker and reports wall_time. A worker that dies or answers with anything
  // but a well-formed result for this invocation yields `crashed`. After any such failure
  // alive() is false.
  InvocationResult invoke(const InvocationRequest& request, std::chrono::milliseconds grace);

  bool alive() const { return alive_; }
  pid_t pid() const { return pid_; }

 private:
  InvocationResult fail(const InvocationRequest& request, const std::string& why);
  std::string kill_and_reap();  // returns how the process ended

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int channel_ = -1;
  bool alive_ = false;
  FrameDecoder decoder_;
};

}  // namespace corral
