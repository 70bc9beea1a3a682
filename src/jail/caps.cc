// Step 7: no capabilities in any set, and no way to gain one: the bounding set is emptied,
// the securebits stop root (inside the user namespace) from regaining them on exec, and
// no_new_privs stops setuid binaries and file capabilities.
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "jail/steps.h"

namespace corral::jail::caps {
namespace {

constexpr const char* kStep = "capabilities";

int last_capability() {
  // Probing the bounding set finds the kernel's highest capability without reading /proc.
  int last = CAP_LAST_CAP;
  while (prctl(PR_CAPBSET_READ, last + 1) >= 0) ++last;
  return last;
}

void empty_bounding_set() {
  for (int cap = 0; cap <= last_capability(); ++cap) {
    if (prctl(PR_CAPBSET_READ, cap) == 1 && prctl(PR_CAPBSET_DROP, cap) != 0) {
      fail_step(kStep, "dropping capability " + std::to_string(cap) + " from the bounding set");
    }
  }
}

void lock_securebits() {
  int bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
             SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
             SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, bits) != 0) fail_step(kStep, "locking the securebits");
}

void clear_ambient() {
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    fail_step(kStep, "clearing ambient capabilities");
}

void clear_effective_permitted_inheritable() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) fail_step(kStep, "capset to empty sets");
}

void set_no_new_privs() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail_step(kStep, "PR_SET_NO_NEW_PRIVS");
}

bool holds_any_capability() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  return syscall(SYS_capget, &header, data) == 0 &&
         (data[0].effective | data[0].permitted | data[1].effective | data[1].permitted) != 0;
}

}  // namespace

void drop_all() {
  // Dropping from the bounding set and setting securebits need CAP_SETPCAP: a worker that
  // starts without it (no user namespace, not root) has nothing to drop there.
  if (holds_any_capability()) {
    empty_bounding_set();
    lock_securebits();
  }
  clear_ambient();
  clear_effective_permitted_inheritable();
  set_no_new_privs();
  if (holds_any_capability()) {
    errno = 0;
    fail_step(kStep, "capabilities remain after dropping them all");
  }
}

}  // namespace corral::jail::caps
