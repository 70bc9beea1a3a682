// Which layers this machine can provide. Namespaces are tried for real (a clone3 into all of
// them whose child exits at once); cgroups are looked for (v2 first, then v1); seccomp is asked
// of the kernel. The other layers need nothing from the machine.
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "jail/cgroup.h"

namespace corral::jail {
namespace {

// The child's exit status when it could create the namespaces but not lower the limits on new
// ones in its user namespace (nesting.cc), plus the errno.
constexpr int kLimitsFailed = 140;

// Creates the namespaces the way spawn.cc does: a pid namespace at clone, the rest unshared
// by the child, which then lowers a namespace limit as every worker does; the child's exit
// status carries the errno of a failure.
LayerStatus probe_namespaces() {
  clone_args args{};
  args.flags = CLONE_NEWPID;
  args.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                CLONE_NEWCGROUP) != 0) {
      _exit(std::min(errno, kLimitsFailed - 1));
    }
    int limit = open("/proc/sys/user/max_user_namespaces", O_WRONLY | O_CLOEXEC);
    if (limit < 0 || write(limit, "0\n", 2) != 2) _exit(kLimitsFailed + std::min(errno, 115));
    _exit(0);
  }
  int error = errno;
  int status = 0;
  if (pid > 0) {
    while (waitpid(static_cast<pid_t>(pid), &status, 0) < 0 && errno == EINTR) {
    }
    error = WIFEXITED(status) ? WEXITSTATUS(status) : EINVAL;
  }
  if (pid > 0 && error >= kLimitsFailed) {
    return {Layer::namespaces, false,
            std::string("cannot forbid new namespaces inside a worker's user namespace: writing "
                        "/proc/sys/user/max_user_namespaces there failed: ") +
                strerror(error - kLimitsFailed) +
                " (corrald needs /proc mounted, with /proc/sys writable, in its mount namespace; "
                "a container's read-only /proc/sys is not)"};
  }
  if (pid < 0 || error != 0) {
    return {
        Layer::namespaces, false,
        std::string("cannot create user, pid, mount, network, ipc, uts and cgroup namespaces: ") +
            strerror(error) +
            " (are user namespaces disabled? see sysctl user.max_user_namespaces)"};
  }
  return {Layer::namespaces, true,
          "user (root inside mapped to its tenant's own unprivileged ids outside, no new "
          "namespaces), pid, mount, network, ipc, uts, cgroup"};
}

LayerStatus probe_seccomp() {
  if (seccomp_api_get() < 1) {
    return {Layer::seccomp, false, "the kernel offers no seccomp filters (libseccomp API level 0)"};
  }
  return {Layer::seccomp, true,
          "allowlist of the syscalls a Lua worker needs; other architectures refused"};
}

LayerStatus needs_namespaces(Layer layer, const LayerStatus& namespaces, const char* detail) {
  if (!namespaces.available) return {layer, false, "needs the namespaces layer"};
  return {layer, true, detail};
}

}  // namespace

std::vector<LayerStatus> probe_machine(const ProbeOptions& options) {
  LayerStatus namespaces = probe_namespaces();
  LayerStatus cgroup = cgroup2::probe(options);
  if (!cgroup.available) {
    LayerStatus v1 = cgroup1::probe(options);
    if (v1.available) {
      cgroup = v1;
    } else {
      cgroup.detail = v1.detail + "; " + cgroup.detail;
    }
  }
  return {
      namespaces,
      needs_namespaces(Layer::filesystem, namespaces,
                       "empty read-only tmpfs root, no /proc, no /dev, chrooted below it"),
      needs_namespaces(Layer::network, namespaces, "network namespace with every interface down"),
      {Layer::rlimits, true,
       "address space, CPU seconds, no processes, no file writes, 4 descriptors, no cores"},
      cgroup,
      {Layer::process, true,
       "own session keyring, only the channel open, empty environment, setsid, parent-death "
       "signal, not dumpable"},
      {Layer::capabilities, true, "all capability sets empty, securebits locked, no_new_privs"},
      probe_seccomp()};
}

}  // namespace corral::jail
