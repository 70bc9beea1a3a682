// Step 8: a syscall allowlist (libseccomp), installed last, after the runtime has mapped what
// it needs. Only the calls a running Lua worker makes are on it: reading and writing its
// channel, memory management without executable mappings, clocks and randomness, exiting.
// Calls for another architecture (i386 through int 0x80, x32) kill the process outright.
// Anything else traps: the handler reports the syscall on the channel and exits; catching or
// blocking SIGSYS cannot help because rt_sigaction is not allowed and a blocked SIGSYS from
// seccomp is delivered with the default action (death) anyway.
#include <linux/futex.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "jail/steps.h"

namespace corral::jail::seccomp {
namespace {

constexpr const char* kStep = "seccomp";

ViolationReporter g_reporter = nullptr;

void on_forbidden_syscall(int, siginfo_t* info, void*) {
  if (g_reporter != nullptr) g_reporter(info->si_syscall);
  _exit(kViolationExitStatus);
}

void install_violation_handler(ViolationReporter reporter) {
  g_reporter = reporter;
  struct sigaction action {};
  action.sa_sigaction = on_forbidden_syscall;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGSYS, &action, nullptr) != 0) fail_step(kStep, "installing the SIGSYS handler");
}

class Filter {
 public:
  Filter() : context_(seccomp_init(SCMP_ACT_TRAP)) {
    if (context_ == nullptr) fail_step(kStep, "seccomp_init");
    int failed = seccomp_attr_set(context_, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (failed != 0) fail(failed, "refusing other architectures");
  }
  ~Filter() { seccomp_release(context_); }

  template <typename... Conditions>
  void allow(int syscall, const char* name, Conditions... conditions) {
    int failed =
        seccomp_rule_add(context_, SCMP_ACT_ALLOW, syscall, sizeof...(conditions), conditions...);
    if (failed != 0) fail(failed, std::string("allowing ") + name);
  }

  void load() {
    int failed = seccomp_load(context_);
    if (failed != 0) fail(failed, "loading the filter");
  }

 private:
  [[noreturn]] void fail(int negative_errno, const std::string& what) {
    errno = -negative_errno;
    fail_step(kStep, what);
  }
  scmp_filter_ctx context_;
};

#define ALLOW(filter, name, ...) filter.allow(SCMP_SYS(name), #name __VA_OPT__(, ) __VA_ARGS__)

}  // namespace

void install_allowlist(int channel_fd, ViolationReporter reporter) {
  install_violation_handler(reporter);
  Filter filter;
  auto on_channel = SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(channel_fd));
  auto not_executable = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
  ALLOW(filter, read, on_channel);
  ALLOW(filter, write, on_channel);
  // Descriptor 2 is closed in the worker; a stray diagnostic there must not count as an attack.
  ALLOW(filter, write, SCMP_A0(SCMP_CMP_EQ, 2));
  ALLOW(filter, sendto, on_channel);
  ALLOW(filter, mmap, not_executable);
  ALLOW(filter, mprotect, not_executable);
  ALLOW(filter, munmap);
  ALLOW(filter, mremap);
  ALLOW(filter, brk);
  ALLOW(filter, madvise);
  ALLOW(filter, clock_gettime);
  ALLOW(filter, clock_getres);
  ALLOW(filter, gettimeofday);
  ALLOW(filter, time);
  ALLOW(filter, getrandom);
  ALLOW(filter, getpid);
  ALLOW(filter, gettid);
  // abort(): unblock SIGABRT and raise it at this process only.
  ALLOW(filter, rt_sigprocmask);
  ALLOW(filter, tgkill, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(getpid())),
        SCMP_A2(SCMP_CMP_EQ, SIGABRT));
  ALLOW(filter, rt_sigreturn);
  // Waking futex waiters is how glibc finishes a once-only initialisation; a single-threaded
  // worker never has waiters, and waiting, requeueing and the rest stay refused.
  ALLOW(filter, futex, SCMP_A1(SCMP_CMP_EQ, FUTEX_WAKE | FUTEX_PRIVATE_FLAG));
#if defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds only: the sanitizer runtime probes memory through a pipe, checks its
  // signal stack and writes its reports itself. Release builds never get these.
  ALLOW(filter, pipe2);
  ALLOW(filter, pipe);
  ALLOW(filter, close);
  ALLOW(filter, write);
  ALLOW(filter, sigaltstack);  // consulted on every longjmp, which is how Lua raises errors
#endif
  ALLOW(filter, exit);
  ALLOW(filter, exit_group);
  filter.load();
}

}  // namespace corral::jail::seccomp
