// Step 6, the process's keys: a process inherits its parent's session keyring and possesses
// every key in it, whatever their owner. Until it joins a session keyring of its own, a worker
// could read corrald's keys (and the keys of anything corrald was started from) and leave keys
// there for every other worker, of any tenant, to find. A new anonymous session keyring holds
// nothing; the process and thread keyrings are never inherited. Keys of other users stay
// reachable only by serial number and by the permissions their owner gave "other" users: that
// is why each tenant's workers run as a host uid of their own (user.cc, pool/jail_setup.h).
#include <linux/keyctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "jail/steps.h"

namespace corral::jail::keyring {

void join_own_session() {
  // Raw syscall: no libkeyutils. A kernel without keys (ENOSYS) has no keyring to share.
  if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, nullptr, 0, 0, 0) < 0 && errno != ENOSYS)
    fail_step("process", "joining a new session keyring of its own (keyctl)");
}

}  // namespace corral::jail::keyring
