// One corral-worker process and its channel. Internal to the pool.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "invocation/cpu_lane.h"
#include "invocation/invocation.h"
#include "jail/jail.h"
#include "pool/frame.h"

namespace corral {

// How to start one worker.
struct WorkerSpec {
  std::string worker_path;             // the corral-worker binary
  std::vector<std::string> arguments;  // after argv[0] and the jail's own arguments
  uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  jail::LayerSet layers = jail::LayerSet::none();
  jail::Ceilings ceilings;
  jail::CgroupManager* cgroups = nullptr;  // required when layers has cgroup
  std::string cgroup_name = "worker";      // e.g. the tenant, to find a worker's cgroup by eye
  std::string tenant;  // whose CPU group its CPU cgroup is made in; "" for a spare
  // The network namespace workers share (jail::SharedNetwork), or -1 for one of the worker's own.
  int network_namespace_fd = -1;
  // corral-worker announces with a ready frame when it is jailed and ready to serve;
  // wait_until_ready() waits for it only when this says the program does (stand-ins do not).
  bool announces_ready = false;
  // A run longer than this lets the CPU lanes go until it ends (cpu_lane.h).
  int64_t long_run_ms = kLongRunMs;
  // The host ids the worker's root maps to (the namespaces layer), and what keeps them the
  // worker's until it has been reaped (pool/jail_setup.h, WorkerIds).
  uid_t outside_uid = 65534;
  gid_t outside_gid = 65534;
  std::shared_ptr<const void> id_lease;
};

class WorkerProcess {
 public:
  // Starts the worker with the channel on descriptor 3, nothing else open, empty environment.
  // Throws std::runtime_error saying which step failed.
  explicit WorkerProcess(const WorkerSpec& spec);
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // Sends the request and waits for its result until the request's deadline plus grace; past
  // it, kills the worker and reports wall_time. A worker that dies or answers with anything
  // but a well-formed result for this invocation yields `crashed`. After any such failure
  // alive() is false.
  InvocationResult invoke(const InvocationRequest& request, std::chrono::milliseconds grace);

  // Waits up to `limit` for the worker's ready frame (at once if the spec says it sends none).
  // Returns "" when ready; otherwise why not (it died, said something else, or was too slow),
  // and the worker has been killed.
  std::string wait_until_ready(std::chrono::milliseconds limit);

  // Moves a worker started as a spare into `tenant`'s CPU group (jail::CgroupManager::
  // join_tenant), so that it weighs with the tenant's other workers. Best effort: fairness, not
  // a ceiling, rests on it; a refusal leaves the worker in its cgroups, every ceiling intact.
  void join_tenant(const std::string& tenant);

  bool alive() const { return alive_; }
  // The process has ended (killed while idle, say), as its parent can tell without reaping it.
  bool exited() const;
  // The last invoke() found the channel closed before the invocation could be sent: the worker
  // had died (while idle), and the run never started, so another worker may take it.
  bool gone_before_invocation() const { return gone_before_invocation_; }
  // Invocations this worker has served.
  uint64_t invocations() const { return invocations_; }
  // Past half of its lifetime CPU ceiling (RLIMIT_CPU): retire it before the kernel kills it
  // mid-run.
  bool worn_out() const { return cpu_budget_ms_ > 0 && cpu_used_ms_ > cpu_budget_ms_ / 2; }
  pid_t pid() const { return pid_; }
  // The worker's own anonymous memory now (RssAnon, from /proc/PID/statm), in bytes; 0 once it
  // is gone. Its code is the same file pages for every worker, shared in the page cache.
  size_t anonymous_bytes() const;
  // What the pool counts this worker at against its memory budget (tenant_pool.h).
  size_t accounted_bytes() const { return accounted_bytes_; }
  void set_accounted_bytes(size_t bytes) { accounted_bytes_ = bytes; }

  // Runs the worker on `cpu` from now on (its caller's lane, cpu_lane.h), or on any CPU corrald
  // may use when it is -1. A hint for speed: a refusal by the kernel is ignored. A run that lasts
  // longer than the spec's long_run_ms is let go to every CPU by invoke(), and counts as a long run
  // (begin_long_run) until it ends, so that a long script is balanced by the scheduler rather
  // than kept on its caller's CPU against the lane's threads.
  void run_on_cpu(int cpu);
  int cpu() const { return cpu_; }

 private:
  InvocationResult fail(const InvocationRequest& request, const std::string& why);
  std::string kill_and_reap();            // returns how the process ended
  std::string wait_for_violation_exit();  // after a violation frame: the cause, with the syscall

  pid_t pid_ = -1;
  int channel_ = -1;
  bool alive_ = false;
  int cpu_ = -1;  // the CPU it is pinned to, or -1 for any
  int64_t long_run_ms_ = kLongRunMs;
  bool read_waits_bounded_ = false;
  bool gone_before_invocation_ = false;  // the channel's reads time out after long_run_ms_
  uint64_t invocations_ = 0;
  size_t accounted_bytes_ = 0;
  double cpu_used_ms_ = 0;
  double cpu_budget_ms_ = 0;
  jail::CgroupManager* cgroup_manager_ = nullptr;
  jail::WorkerCgroups* cgroups_ = nullptr;
  bool announces_ready_ = false;
  bool ready_seen_ = false;
  FrameDecoder decoder_;
  std::shared_ptr<const void> id_lease_;  // released after the destructor has reaped the worker
};

}  // namespace corral
