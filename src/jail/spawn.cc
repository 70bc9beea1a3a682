// The supervisor's side of the jail (step 1, and step 5's placement). clone3 creates the child
// in a new pid namespace and, with cgroup v2, straight in the worker's cgroup (atomically,
// CLONE_INTO_CGROUP). The child, still root of the initial user namespace, drops its
// supplementary groups (they would otherwise follow it, unmapped but still honoured), joins the
// workers' shared network namespace (or, without one, makes its own below), then unshares the
// user namespace together with mount, ipc, uts and cgroup, so that these belong to the new user
// namespace. It waits while the supervisor maps its ids and, with
// cgroup v1, moves it into its cgroups; then it becomes root of the new namespace (its
// tenant's unprivileged ids outside) and execs the worker binary. Between clone and exec the child
// runs only raw, async-signal-safe calls on memory prepared beforehand.
//
// The child shares corrald's memory until it execs (CLONE_VM, on a stack of its own), as
// posix_spawn's child does. A copy-on-write fork of corrald would copy its page tables and make
// every page any of its threads then writes fault and flush the TLB of all its CPUs: 22 of the
// 35 ms of CPU a worker's start and end cost, paid on every recycle in the middle of warm traffic
// (docs/performance.md).
// The child writes nothing of corrald's but errno, on its failure paths only.
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "jail/cgroup.h"
#include "jail/steps.h"

// clone3 with a function to run on the child's stack: glibc 2.36 has clone() for that, but not
// clone3, and only clone3 places a child straight into a cgroup. The child starts on the new
// stack, so it cannot return into the C++ caller: it calls entry(argument) and exits with its
// result. Registers other than rax, rcx and r11 survive the system call, in both processes.
// Returns the child's pid, or -errno.
extern "C" long corral_clone3_call(clone_args* args, size_t size, int (*entry)(void*),
                                   void* argument);
#if defined(__x86_64__)
asm(R"(
  .text
  .globl corral_clone3_call
  .type corral_clone3_call, @function
corral_clone3_call:
  .cfi_startproc
  mov %rdx, %r8
  mov %rcx, %r9
  mov $435, %eax
  syscall
  test %rax, %rax
  jz 1f
  ret
1:
  .cfi_undefined rip
  xor %ebp, %ebp
  mov %r9, %rdi
  call *%r8
  mov %eax, %edi
  mov $60, %eax
  syscall
  hlt
  .cfi_endproc
  .size corral_clone3_call, .-corral_clone3_call
)");
#else
#error "spawn.cc calls clone3 through an x86-64 trampoline; write one for this architecture"
#endif

namespace corral::jail {
namespace {

constexpr int kUnshareFlags =
    CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;

// What the child tells the parent if it fails before exec: the step and errno.
struct ChildFailure {
  int step;
  int error;
};
enum ChildStep : int {
  kUnshared = 0,
  kWaitForParent,
  kUnshare,
  kBecomeRoot,
  kDieWithSupervisor,
  kSetUpDescriptors,
  kExec
};
constexpr const char* kChildStepNames[] = {"",
                                           "waiting for the supervisor",
                                           "creating its namespaces (setns, unshare)",
                                           "becoming root of its user namespace",
                                           "asking to die with the supervisor (PR_SET_PDEATHSIG)",
                                           "setting up descriptors",
                                           "executing the worker binary"};

// The child's code runs on a stack the sanitizers do not know, before exec, where only raw
// system calls are safe: no shadow-memory bookkeeping, and no sanitizer reporting.
#define CORRAL_CHILD_CODE __attribute__((no_sanitize("address", "undefined")))

CORRAL_CHILD_CODE [[noreturn]] void child_fail(int report_fd, int step) {
  ChildFailure failure{step, errno};
  (void)!write(report_fd, &failure, sizeof failure);
  _exit(127);
}

// From here on the kernel kills the child when the thread that started it ends. It is set here,
// before the exec, because a worker that set it itself (the process step of its jail) would
// miss a supervisor that died in the meantime, and then, orphaned, would still run the
// invocation waiting in its channel (the pool sends one to a worker still starting), with no
// supervisor left to enforce its deadline. It comes after the ids change, which clears it, and
// the exec keeps it, as the exec gains no privilege. If the supervisor died before this, the
// setting is tied to no one; then the report pipe's read end, which corrald alone holds while
// this child exists (corrald starts one worker at a time, on its pool's spawner thread, and the
// child closed its own copy), is closed, and the child exits. Raw system calls: the sanitizers
// intercept the wrappers.
CORRAL_CHILD_CODE void die_with_supervisor(int report_fd) {
  if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(report_fd, kDieWithSupervisor);
  pollfd report{report_fd, POLLOUT, 0};
  if (syscall(SYS_poll, &report, 1, 0) < 0 || (report.revents & (POLLERR | POLLHUP)) != 0)
    _exit(127);
}

CORRAL_CHILD_CODE [[noreturn]] void run_child(const SpawnRequest& request, int go_fd, int report_fd,
                                              int null_fd, char** argv) {
  bool namespaces = request.layers.has(Layer::namespaces);
  if (namespaces) {
    // The shared network namespace is joined first, while the child is still root of the
    // initial user namespace that owns it; after unsharing its own it could not.
    bool shared_network = request.network_namespace_fd >= 0;
    if (syscall(SYS_setgroups, 0, nullptr) != 0 ||
        (shared_network && syscall(SYS_setns, request.network_namespace_fd, CLONE_NEWNET) != 0) ||
        unshare(kUnshareFlags | (shared_network ? 0 : CLONE_NEWNET)) != 0)
      child_fail(report_fd, kUnshare);
    ChildFailure unshared{kUnshared, 0};
    if (write(report_fd, &unshared, sizeof unshared) != sizeof unshared) _exit(127);
  }
  char go = 0;
  if (read(go_fd, &go, 1) != 1 || go != 'g') child_fail(report_fd, kWaitForParent);
  // Raw syscalls: glibc's wrappers would try to change the ids of threads this copy lacks.
  if (namespaces &&
      (syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setresuid, 0, 0, 0) != 0)) {
    child_fail(report_fd, kBecomeRoot);
  }
  die_with_supervisor(report_fd);

  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int signal = 1; signal < NSIG; ++signal) ::signal(signal, SIG_DFL);

  // Park the three descriptors we keep above the ones they must end up on, then place them.
  int channel = fcntl(request.channel_fd, F_DUPFD_CLOEXEC, 10);
  int executable = fcntl(request.executable_fd, F_DUPFD_CLOEXEC, 10);
  int report = fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
  if (channel < 0 || executable < 0 || report < 0) child_fail(report_fd, kSetUpDescriptors);
  // The executable stays open across exec (descriptor 4) so that a `#!` worker can be run
  // through /dev/fd; the worker closes it in the process step.
  if (dup2(channel, kChannelFd) < 0 || dup2(executable, kChannelFd + 1) < 0)
    child_fail(report, kSetUpDescriptors);
  // Standard input and output lead nowhere (corrald's stdout carries its JSON log); standard
  // error stays, for a worker that fails before its process step closes it.
  if (dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0) child_fail(report, kSetUpDescriptors);
  if (syscall(SYS_close_range, kChannelFd + 2, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
    child_fail(report, kSetUpDescriptors);

  char* empty_environment[] = {nullptr};
  syscall(SYS_execveat, kChannelFd + 1, "", argv, empty_environment, AT_EMPTY_PATH);
  child_fail(report, kExec);
}

struct ChildArguments {
  const SpawnRequest* request;
  int go_fd, report_fd, null_fd;
  char** argv;
  int parent_ends[2];  // the supervisor's ends of the two pipes
};

CORRAL_CHILD_CODE int child_entry(void* opaque) {
  auto* arguments = static_cast<ChildArguments*>(opaque);
  // Without its own copy of the go pipe's write end, the child sees end-of-file and exits if
  // corrald dies before releasing it (the parent-death signal is only set once it is released).
  for (int end : arguments->parent_ends) close(end);
  run_child(*arguments->request, arguments->go_fd, arguments->report_fd, arguments->null_fd,
            arguments->argv);
}

// The stack the child runs on until it execs. It must outlive the child's use of it: it is
// unmapped only once the report pipe says the child has exec'd or died, or after a reap.
class ChildStack {
 public:
  static constexpr size_t kSize = 256 * 1024;
  ChildStack() {
    base_ = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                 -1, 0);
    if (base_ == MAP_FAILED)
      throw std::runtime_error(std::string("cannot map a stack for the new worker: ") +
                               strerror(errno));
  }
  ~ChildStack() { munmap(base_, kSize); }
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  uint64_t base() const { return reinterpret_cast<uint64_t>(base_); }

 private:
  void* base_;
};

pid_t clone_child(uint64_t flags, int cgroup_fd, int* pidfd, const ChildStack& stack,
                  ChildArguments& arguments) {
  clone_args args{};
  args.flags = flags | CLONE_PIDFD | CLONE_VM;
  args.pidfd = reinterpret_cast<uint64_t>(pidfd);
  args.exit_signal = SIGCHLD;
  args.stack = stack.base();
  args.stack_size = ChildStack::kSize;
  if (cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cgroup_fd);
  }
  long result = corral_clone3_call(&args, sizeof args, child_entry, &arguments);
  if (result < 0) {
    errno = static_cast<int>(-result);
    return -1;
  }
  return static_cast<pid_t>(result);
}

struct Pipe {
  int read = -1, write = -1;
  Pipe() {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) {
      int error = errno;
      throw SystemCallFailure(std::string("cannot create a pipe: ") + strerror(error), error);
    }
    read = ends[0];
    write = ends[1];
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (read >= 0) close(read);
    read = -1;
  }
  void close_write() {
    if (write >= 0) close(write);
    write = -1;
  }
};

void kill_and_reap(int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  siginfo_t info{};
  while (waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED) != 0 && errno == EINTR) {
  }
  close(pidfd);
}

}  // namespace

Spawned spawn_jailed(const SpawnRequest& request) {
  std::vector<char*> argv;
  for (const auto& argument : request.argv) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);
  bool namespaces = request.layers.has(Layer::namespaces);
  bool cgroups = request.layers.has(Layer::cgroup) && request.cgroups != nullptr;
  int cgroup_fd = cgroups ? clone_into_fd(*request.cgroups) : -1;

  Pipe go, report;
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) {
    int error = errno;
    throw SystemCallFailure(std::string("cannot open /dev/null: ") + strerror(error), error);
  }
  int pidfd = -1;
  ChildStack stack;
  ChildArguments arguments{&request, go.read,     report.write,
                           null_fd,  argv.data(), {go.write, report.read}};
  pid_t pid = clone_child(namespaces ? CLONE_NEWPID : 0, cgroup_fd, &pidfd, stack, arguments);
  int clone_error = errno;
  close(null_fd);
  if (pid < 0) {
    std::string message = "cannot create the worker process (clone3" +
                          std::string(namespaces ? " with new namespaces" : "") +
                          "): " + strerror(clone_error);
    // clone3 fails with EMFILE when there is no descriptor left for the pidfd.
    if (namespaces && !out_of_descriptors(clone_error))
      message += "; if this machine has no user namespaces, corrald --check says so";
    throw SystemCallFailure(message, clone_error);
  }
  go.close_read();
  report.close_write();
  auto read_report = [&](ChildFailure& message) {
    ssize_t n;
    while ((n = read(report.read, &message, sizeof message)) < 0 && errno == EINTR) {
    }
    return n;
  };
  auto child_failed = [&](const ChildFailure& failure) {
    int step = failure.step > kUnshared && failure.step <= kExec ? failure.step : kExec;
    std::string hint;
    if (step == kExec && namespaces) {
      hint = "; jailed workers run as uid " + std::to_string(request.outside_uid) +
             ", so the worker binary must be readable and executable by that user";
    }
    return std::runtime_error(std::string("the new worker failed ") + kChildStepNames[step] + ": " +
                              strerror(failure.error) + hint);
  };
  try {
    if (cgroups && cgroup_fd < 0) join_cgroups(*request.cgroups, pid);
    if (namespaces) {
      ChildFailure message{};
      ssize_t n = read_report(message);
      if (n != sizeof message) throw child_failed({kUnshare, n < 0 ? errno : EPIPE});
      if (message.step != kUnshared) throw child_failed(message);
      user::write_id_maps(pid, request.outside_uid, request.outside_gid);
    }
  } catch (...) {
    kill_and_reap(pidfd);
    throw;
  }
  if (write(go.write, "g", 1) != 1) {
    int write_error = errno;
    kill_and_reap(pidfd);
    throw std::runtime_error("cannot release the new worker: " +
                             std::string(strerror(write_error)));
  }
  go.close_write();
  ChildFailure failure{};
  ssize_t reported = read_report(failure);
  if (reported > 0) {
    kill_and_reap(pidfd);
    throw child_failed(failure);
  }
  if (reported < 0) {
    // No end-of-file shows the child is off its stack: stop it before the stack goes.
    std::string why = strerror(errno);
    kill_and_reap(pidfd);
    throw std::runtime_error("cannot hear from the new worker after releasing it: " + why);
  }
  return {pid, pidfd};
}

}  // namespace corral::jail
