#include "pool/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace corral {
namespace {

constexpr int kChannelFd = 3;

// glibc 2.36 declares these without C linkage for C++, so call the kernel directly.
int pidfd_open(pid_t pid, unsigned int flags) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, flags));
}
int pidfd_send_signal(int pidfd, int signal, siginfo_t* info, unsigned int flags) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, signal, info, flags));
}

std::string system_error(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string describe_exit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  std::string name = sigabbrev_np(info.si_status) ? sigabbrev_np(info.si_status) : "?";
  return "was killed by signal " + std::to_string(info.si_status) + " (SIG" + name + ")";
}

}  // namespace

WorkerProcess::WorkerProcess(const std::string& worker_path, uint32_t max_frame_bytes)
    : decoder_(max_frame_bytes) {
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    throw std::runtime_error(system_error("cannot create a worker channel (socketpair)"));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, ends[1], kChannelFd);
  posix_spawn_file_actions_addclosefrom_np(&actions, kChannelFd + 1);
  // The caller may block signals (corrald waits for SIGTERM with sigwait); the worker starts
  // with none blocked and every signal at its default action.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t no_signals, all_signals;
  sigemptyset(&no_signals);
  sigfillset(&all_signals);
  posix_spawnattr_setsigmask(&attributes, &no_signals);
  posix_spawnattr_setsigdefault(&attributes, &all_signals);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char* argv[] = {const_cast<char*>(worker_path.c_str()), nullptr};
  char* envp[] = {nullptr};
  int spawned = posix_spawn(&pid_, worker_path.c_str(), &actions, &attributes, argv, envp);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  close(ends[1]);
  if (spawned != 0) {
    close(ends[0]);
    throw std::runtime_error("cannot start the worker '" + worker_path + "': " + std::strerror(spawned) +
                             "; check that corral-worker is installed beside corrald or pass --worker");
  }
  channel_ = ends[0];
  // The child is ours and unreaped, so its pid cannot be reused before this call.
  pidfd_ = pidfd_open(pid_, 0);
  if (pidfd_ < 0) {
    std::string why = system_error("cannot open a pidfd for the worker");
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(channel_);
    throw std::runtime_error(why);
  }
  alive_ = true;
}

WorkerProcess::~WorkerProcess() {
  if (pidfd_ >= 0) {
    kill_and_reap();
    close(pidfd_);
  }
  if (channel_ >= 0) close(channel_);
}

std::string WorkerProcess::kill_and_reap() {
  if (pid_ < 0) return "was already reaped";
  pidfd_send_signal(pidfd_, SIGKILL, nullptr, 0);
  siginfo_t info{};
  while (waitid(P_PIDFD, static_cast<id_t>(pidfd_), &info, WEXITED) != 0 && errno == EINTR) {
  }
  pid_ = -1;
  alive_ = false;
  return describe_exit(info);
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

  nlohmann::json message = {{"invocation_id", request.invocation_id},
                            {"source", request.source},
                            {"input", request.input},
                            {"limits", to_json(request.limits)}};
  if (!write_frame(channel_, FrameType::invoke, message.dump())) {
    return fail(request, "the worker " + kill_and_reap() + " before taking the invocation");
  }

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
      if (frame->type != FrameType::result) {
        kill_and_reap();
        return fail(request, "the worker sent an unexpected frame type and was retired");
      }
      try {
        InvocationResult result = result_from_json(parse_untrusted_json(frame->payload));
        if (result.invocation_id != request.invocation_id) {
          throw std::invalid_argument("it answers another invocation");
        }
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
    pollfd ready{channel_, POLLIN, 0};
    int polled = poll(&ready, 1, static_cast<int>(remaining.count()) + 1);
    if (polled < 0 && errno != EINTR) {
      kill_and_reap();
      return fail(request, system_error("waiting for the worker failed"));
    }
    if (polled <= 0) continue;
    char chunk[64 * 1024];
    ssize_t n = read(channel_, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      return fail(request, "the worker " + kill_and_reap() + " during the invocation");
    }
    decoder_.append(std::string_view(chunk, static_cast<size_t>(n)));
  }
}

}  // namespace corral
