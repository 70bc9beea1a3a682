#include "pool/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "invocation/cpu_lane.h"

namespace corral {
namespace {

std::string system_error(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string describe_exit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED && info.si_status == jail::kContainFailedExitStatus) {
    return "exited with status " + std::to_string(info.si_status) +
           " because it could not jail itself (its reason is on corrald's standard error; corrald "
           "--check "
           "lists the jail layers)";
  }
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  std::string name = sigabbrev_np(info.si_status) ? sigabbrev_np(info.si_status) : "?";
  return "was killed by signal " + std::to_string(info.si_status) + " (SIG" + name + ")";
}

}  // namespace

WorkerProcess::WorkerProcess(const WorkerSpec& spec) : decoder_(spec.max_frame_bytes) {
  int executable = open(spec.worker_path.c_str(), O_PATH | O_CLOEXEC);
  if (executable < 0) {
    int error = errno;
    std::string message = system_error("cannot start the worker '" + spec.worker_path + "'");
    if (!jail::out_of_descriptors(error))
      message += "; check that corral-worker is installed beside corrald or pass --worker";
    throw jail::SystemCallFailure(message, error);
  }
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    int error = errno;
    std::string message = system_error("cannot create a worker channel (socketpair)");
    close(executable);
    throw jail::SystemCallFailure(message, error);
  }
  jail::SpawnRequest request;
  request.executable_fd = executable;
  request.argv = {spec.worker_path};
  bool shared_network = spec.network_namespace_fd >= 0 && spec.layers.has(jail::Layer::namespaces);
  for (auto& argument : jail::to_arguments({spec.layers, spec.ceilings, shared_network}))
    request.argv.push_back(argument);
  request.argv.insert(request.argv.end(), spec.arguments.begin(), spec.arguments.end());
  request.channel_fd = ends[1];
  request.layers = spec.layers;
  request.outside_uid = spec.outside_uid;
  request.outside_gid = spec.outside_gid;
  request.network_namespace_fd = shared_network ? spec.network_namespace_fd : -1;
  try {
    if (spec.layers.has(jail::Layer::cgroup)) {
      if (spec.cgroups == nullptr) throw std::logic_error("the cgroup layer needs a CgroupManager");
      cgroup_manager_ = spec.cgroups;
      cgroups_ = spec.cgroups->create(spec.cgroup_name, spec.tenant);
      request.cgroups = cgroups_;
    }
    jail::Spawned spawned = jail::spawn_jailed(request);
    pid_ = spawned.pid;
    // One descriptor per worker is all corrald keeps (its channel): with thousands of idle
    // workers, a pidfd each would halve the workers a descriptor limit allows. The pid is as
    // safe to signal and wait for: the worker is corrald's child, nothing in corrald reaps
    // children but kill_and_reap(), and an unreaped child's pid is never given to another.
    close(spawned.pidfd);
  } catch (...) {
    close(executable);
    close(ends[0]);
    close(ends[1]);
    if (cgroup_manager_) cgroup_manager_->destroy(cgroups_);
    throw;
  }
  close(executable);
  close(ends[1]);
  channel_ = ends[0];
  alive_ = true;
  id_lease_ = spec.id_lease;
  announces_ready_ = spec.announces_ready;
  long_run_ms_ = spec.long_run_ms;
  // A read of the channel waits at most long_run_ms: invoke() then reads a short run's result
  // without polling first, one system call instead of two.
  if (long_run_ms_ > 0) {
    timeval wait{.tv_sec = static_cast<time_t>(long_run_ms_ / 1000),
                 .tv_usec = static_cast<suseconds_t>(long_run_ms_ % 1000 * 1000)};
    read_waits_bounded_ = setsockopt(channel_, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait) == 0;
  }
  if (spec.layers.has(jail::Layer::rlimits))
    cpu_budget_ms_ = static_cast<double>(spec.ceilings.cpu_seconds) * 1000;
}

void WorkerProcess::join_tenant(const std::string& tenant) {
  if (cgroup_manager_ == nullptr || pid_ < 0) return;
  try {
    cgroup_manager_->join_tenant(cgroups_, pid_, tenant);
  } catch (const std::exception&) {
  }
}

WorkerProcess::~WorkerProcess() {
  if (pid_ >= 0) kill_and_reap();
  if (channel_ >= 0) close(channel_);
  if (cgroup_manager_) cgroup_manager_->destroy(cgroups_);
}

size_t WorkerProcess::anonymous_bytes() const {
  if (pid_ < 0) return 0;
  // statm is the cheapest of /proc's views (no walk of the mappings, unlike smaps_rollup): it
  // is read after runs, on the invocation path.
  char path[40];
  std::snprintf(path, sizeof path, "/proc/%d/statm", pid_);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[128];
  ssize_t length = read(fd, text, sizeof text - 1);
  close(fd);
  if (length <= 0) return 0;
  text[length] = '\0';
  unsigned long size = 0, resident = 0, shared = 0;
  if (std::sscanf(text, "%lu %lu %lu", &size, &resident, &shared) != 3 || shared > resident)
    return 0;
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (resident - shared) * page;
}

bool WorkerProcess::exited() const {
  if (pid_ < 0) return true;
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid_;
}

std::string WorkerProcess::kill_and_reap() {
  if (pid_ < 0) return "was already reaped";
  kill(pid_, SIGKILL);
  siginfo_t info{};
  while (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED) != 0 && errno == EINTR) {
  }
  pid_ = -1;
  alive_ = false;
  std::string how = describe_exit(info);
  if (info.si_code != CLD_EXITED && info.si_status == SIGKILL && cgroup_manager_ &&
      cgroup_manager_->oom_killed(cgroups_)) {
    how += " by the kernel's OOM killer at its cgroup memory ceiling";
  }
  return how;
}

std::string WorkerProcess::wait_for_violation_exit() {
  // The worker exits right after reporting; give it a moment, then make sure.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid_)
      break;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return kill_and_reap();
}

std::string WorkerProcess::wait_until_ready(std::chrono::milliseconds limit) {
  if (!announces_ready_ || ready_seen_) return alive_ ? "" : "the worker is not running";
  auto deadline = std::chrono::steady_clock::now() + limit;
  std::string problem;
  while (problem.empty()) {
    std::optional<Frame> frame;
    try {
      frame = decoder_.next();
    } catch (const FrameError& error) {
      problem = std::string("sent a malformed frame (") + error.what() + ")";
      break;
    }
    if (frame) {
      if (frame->type != FrameType::ready) {
        problem = "sent something else before announcing it was ready";
        break;
      }
      ready_seen_ = true;
      return "";
    }
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) {
      problem = "did not announce it was ready within " + std::to_string(limit.count()) +
                " ms (--worker-start-timeout-ms)";
      break;
    }
    pollfd ready{channel_, POLLIN, 0};
    if (poll(&ready, 1, static_cast<int>(remaining.count()) + 1) < 0 && errno != EINTR) {
      problem = system_error("could not be waited for");
      break;
    }
    char chunk[4096];
    ssize_t n = read(channel_, chunk, sizeof chunk);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
      problem = "closed its channel";
      break;
    }
    if (n > 0) decoder_.append(std::string_view(chunk, static_cast<size_t>(n)));
  }
  // Not a worker to keep: say how it ended, which is usually the real cause.
  return "the worker " + problem + " and " + kill_and_reap() + " before it was ready";
}

void WorkerProcess::run_on_cpu(int cpu) {
  if (cpu == cpu_ || pid_ < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0 && cpu < CPU_SETSIZE) {
    CPU_SET(cpu, &set);
  } else {
    cpu = -1;
    for (int allowed : allowed_cpus()) CPU_SET(allowed, &set);
  }
  // By pid, as there is no pidfd form: the pid cannot name another process, since the worker is
  // corrald's child and is reaped only by kill_and_reap(), which clears pid_.
  if (sched_setaffinity(pid_, sizeof set, &set) == 0) cpu_ = cpu;
}

InvocationResult WorkerProcess::fail(const InvocationRequest& request, const std::string& why) {
  InvocationResult result;
  result.invocation_id = request.invocation_id;
  result.outcome = Outcome::crashed;
  result.message = why;
  return result;
}

InvocationResult WorkerProcess::invoke(const InvocationRequest& request,
                                       std::chrono::milliseconds grace) {
  using Clock = std::chrono::steady_clock;
  auto started = Clock::now();
  auto deadline = started + std::chrono::milliseconds(request.limits.timeout_ms) + grace;
  ++invocations_;
  // A run past long_run_ms_ lets the lanes go (cpu_lane.h) until it ends, however it ends.
  struct LongRun {
    bool begun = false;
    ~LongRun() {
      if (begun) end_long_run();
    }
  } long_run;

  nlohmann::json message = {{"invocation_id", request.invocation_id},
                            {"source", request.source},
                            {"input", request.input},
                            {"limits", to_json(request.limits)}};
  if (!request.capabilities.empty()) message["capabilities"] = request.capabilities;
  // A worker that died before taking the invocation may still have said why (a violation
  // report): read what it left on the channel before giving up.
  bool sent = write_frame(channel_, FrameType::invoke, message.dump());
  gone_before_invocation_ = !sent;

  for (;;) {
    std::optional<Frame> frame;
    try {
      frame = decoder_.next();
    } catch (const FrameError& error) {
      kill_and_reap();
      return fail(request, std::string("the worker sent a malformed frame (") + error.what() +
                               ") and was retired");
    }
    if (frame) {
      if (frame->type == FrameType::ready && !ready_seen_) {
        ready_seen_ = true;
        continue;
      }
      if (frame->type == FrameType::call) {
        if (!request.capability_handler) {
          kill_and_reap();
          return fail(request,
                      "the worker made a capability call in a run that has no capabilities, which "
                      "a sound worker never does; it was retired");
        }
        auto remaining =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - grace - Clock::now());
        std::string reply = request.capability_handler(
            frame->payload, std::max(remaining, std::chrono::milliseconds(0)));
        if (!write_frame(channel_, FrameType::reply, reply)) {
          return fail(request,
                      "the worker " + kill_and_reap() + " while a capability call was answered");
        }
        continue;
      }
      if (frame->type == FrameType::violation) {
        long number = -1;
        if (frame->payload.size() <= 6 && !frame->payload.empty() &&
            frame->payload.find_first_not_of("0123456789") == std::string::npos) {
          number = std::stol(frame->payload);
        }
        std::string name =
            number >= 0 ? jail::syscall_name(number) : "an unreadable syscall number";
        std::string how = wait_for_violation_exit();
        return fail(request, "the worker called " + name +
                                 ", which its seccomp allowlist refuses; it " + how +
                                 " and was replaced");
      }
      if (frame->type != FrameType::result) {
        kill_and_reap();
        return fail(request, "the worker sent an unexpected frame type and was retired");
      }
      try {
        InvocationResult result = result_from_json(parse_untrusted_json(frame->payload));
        // Only the supervisor turns runs away; a worker that claimed to would keep its crash
        // from counting against the script's version.
        if (result.outcome == Outcome::rejected) {
          throw std::invalid_argument("a worker never reports the outcome rejected");
        }
        if (result.invocation_id != request.invocation_id) {
          throw std::invalid_argument("it answers another invocation");
        }
        cpu_used_ms_ += std::max(0.0, result.stats.cpu_ms);
        return result;
      } catch (const std::exception& error) {
        kill_and_reap();
        return fail(request, std::string("the worker sent an invalid result (") + error.what() +
                                 ") and was retired");
      }
    }

    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (remaining.count() <= 0) {
      kill_and_reap();
      InvocationResult result;
      result.invocation_id = request.invocation_id;
      result.outcome = Outcome::limit_exceeded;
      result.limit = LimitKind::wall_time;
      result.allowed = request.limits.timeout_ms;
      result.stats.wall_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - started).count();
      result.used = static_cast<int64_t>(result.stats.wall_ms);
      result.message = "wall_time limit exceeded (the worker was killed at the deadline)";
      return result;
    }
    int timeout_ms = static_cast<int>(remaining.count()) + 1;
    bool read_waits = false;
    if (!long_run.begun) {
      auto short_until = started + std::chrono::milliseconds(long_run_ms_);
      auto short_left = std::chrono::ceil<std::chrono::milliseconds>(short_until - Clock::now());
      if (short_left.count() <= 0) {
        long_run.begun = true;
        begin_long_run();
        run_on_cpu(-1);
      } else {
        timeout_ms = std::min(timeout_ms, static_cast<int>(short_left.count()));
        // The read's own bound (SO_RCVTIMEO, long_run_ms) cannot carry it past the deadline.
        read_waits = read_waits_bounded_ && remaining.count() > long_run_ms_;
      }
    }
    if (!read_waits) {
      pollfd ready{channel_, POLLIN, 0};
      int polled = poll(&ready, 1, timeout_ms);
      if (polled < 0 && errno != EINTR) {
        kill_and_reap();
        return fail(request, system_error("waiting for the worker failed"));
      }
      if (polled <= 0) continue;
    }
    char chunk[64 * 1024];
    ssize_t n = read(channel_, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) {
      return fail(request, "the worker " + kill_and_reap() +
                               (sent ? " during the invocation" : " before taking the invocation"));
    }
    decoder_.append(std::string_view(chunk, static_cast<size_t>(n)));
  }
}

}  // namespace corral
