// The network namespace every worker joins (docs/jail.md, "What workers share"). A network
// namespace is the largest part of what the kernel spends on a worker (about 180 KiB of
// unreclaimable memory, and its creation and teardown on every start: docs/performance.md),
// while what it gives a worker, no interface and no route anywhere, is the same for all of them.
//
// It is made by a short-lived thread of the supervisor's, so it belongs to the initial user
// namespace: a worker, whose user namespace is a child of that one, holds no capability over it
// and can raise no interface in it, even before the capabilities step. The descriptor keeps it
// alive; the child joins it while still root of the initial user namespace (spawn.cc), before
// it unshares the others.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "jail/steps.h"

namespace corral::jail {

std::unique_ptr<SharedNetwork> SharedNetwork::create() {
  if (landlock::abi_version() < landlock::kScopeAbi) {
    throw SystemCallFailure(
        "this kernel cannot scope a worker's abstract unix sockets to itself (Landlock ABI " +
            std::to_string(landlock::abi_version()) + ", 6 is needed: Linux 6.12)",
        ENOSYS);
  }
  int fd = -1, error = 0;
  // unshare moves only the calling thread, which ends here: corrald's own threads stay where
  // they were.
  std::thread maker([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      error = errno;
      return;
    }
    fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) error = errno;
  });
  maker.join();
  if (fd < 0) {
    throw SystemCallFailure(
        std::string("cannot create the workers' shared network namespace: ") + strerror(error) +
            (error == EPERM ? " (corrald is not root in the initial user namespace)" : ""),
        error);
  }
  return std::unique_ptr<SharedNetwork>(new SharedNetwork(fd));
}

SharedNetwork::~SharedNetwork() { close(fd_); }

}  // namespace corral::jail
