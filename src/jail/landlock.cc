// Workers share one empty network namespace (shared_network.cc), and a network namespace is
// also the scope of abstract unix socket names. Left so, a worker could reach an abstract
// socket another worker bound. The worker therefore puts itself in a Landlock domain of its own
// that scopes abstract unix sockets and signals (Landlock ABI 6, Linux 6.12): it can connect to
// no abstract socket, and signal no process, made outside its domain, and every other worker is
// outside it. The scope handles no filesystem or network access rights: the empty root and the
// interfaces kept down do that.
//
// Debian 12's headers know Landlock only up to ABI 3, so the attribute's later field and the
// scope bits are spelled out here, as the kernel's uapi defines them.
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "jail/steps.h"

namespace corral::jail::landlock {
namespace {

struct RulesetAttributes {
  uint64_t handled_access_fs = 0;
  uint64_t handled_access_net = 0;
  uint64_t scoped = 0;
};
constexpr uint32_t kCreateRulesetVersion = 1u << 0;
constexpr uint64_t kScopeAbstractUnixSocket = 1ull << 0;
constexpr uint64_t kScopeSignal = 1ull << 1;

}  // namespace

int abi_version() {
  long version = syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  return version < 0 ? 0 : static_cast<int>(version);
}

void scope_sockets_and_signals() {
  if (abi_version() < kScopeAbi) {
    errno = 0;
    fail_step("namespaces",
              "scoping abstract unix sockets to the worker (this kernel's Landlock is older "
              "than ABI 6, Linux 6.12; corrald gives such a machine a network namespace per "
              "worker)");
  }
  RulesetAttributes attributes;
  attributes.scoped = kScopeAbstractUnixSocket | kScopeSignal;
  long ruleset = syscall(SYS_landlock_create_ruleset, &attributes, sizeof attributes, 0);
  if (ruleset < 0) fail_step("namespaces", "creating a Landlock ruleset");
  long restricted = syscall(SYS_landlock_restrict_self, ruleset, 0);
  int error = errno;
  close(static_cast<int>(ruleset));
  errno = error;
  if (restricted != 0) fail_step("namespaces", "entering a Landlock domain of the worker's own");
}

}  // namespace corral::jail::landlock
