// The hardening steps, one namespace per concern (as nsjail has user.cc, mnt.cc, net.cc, …).
// contain.cc calls them in order; tests call them through contain() with one layer at a time.
#pragma once

#include <sys/types.h>

#include <string>

#include "jail/jail.h"

namespace corral::jail {

// Throws std::runtime_error("<step>: <what failed>: <errno text>").
[[noreturn]] void fail_step(const std::string& step, const std::string& what);

namespace user {
// Supervisor side, while the new child waits: deny setgroups, then map root inside to the
// unprivileged ids outside.
void write_id_maps(pid_t child, uid_t outside_uid, gid_t outside_gid);
}  // namespace user

namespace mnt {
// The empty root holds one empty directory, kConfinedRoot, for nesting::confine_below_root.
inline constexpr const char* kConfinedRoot = "/root";
void enter_empty_root();
}  // namespace mnt

namespace nesting {
void forbid_new_namespaces();
void confine_below_root();
}  // namespace nesting

namespace net {
void keep_interfaces_down();
}

namespace landlock {
// Scopes abstract unix sockets and signals arrived with ABI 6.
inline constexpr int kScopeAbi = 6;
int abi_version();  // 0 without Landlock
// A Landlock domain of the worker's own that keeps it from every abstract unix socket and
// every process outside it: what keeps workers apart in a shared network namespace.
void scope_sockets_and_signals();
}  // namespace landlock

namespace rlimits {
void apply(const Ceilings& ceilings);
}

namespace keyring {
void join_own_session();
}

namespace process {
void detach(int channel_fd);
}

namespace caps {
void drop_all();
}

namespace seccomp {
void install_allowlist(int channel_fd, ViolationReporter reporter);
}

}  // namespace corral::jail
