// The jail around every corral-worker: the layer that must hold even if the Lua sandbox is
// broken. Two halves meet here:
//
//   supervisor side  spawn_jailed(): clone3 straight into fresh user, pid, mount, network, ipc,
//                    uts and cgroup namespaces (and, on cgroup v2, straight into the worker's
//                    cgroup), an unprivileged uid/gid mapping, cgroup v1 placement, then exec of
//                    the worker binary. Nothing of the supervisor survives the exec.
//   worker side      contain() then, once the runtime is ready, lock_down(): the remaining
//                    hardening steps in the order contain.cc lists them.
//
// Every layer can be switched off one by one (tests run each attack against one layer alone);
// a layer the machine cannot provide is reported by probe_machine() with the reason.
#pragma once

#include <sys/types.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace corral::jail {

enum class Layer : uint8_t {
  namespaces,    // 1. user (unprivileged mapping, setgroups denied), pid, mount, net, ipc, uts,
                 // cgroup; no new namespaces (limits at 0)
  filesystem,    // 2. private propagation, pivot_root into an empty read-only tmpfs, old root
                 // gone, chroot below it (no new user namespace)
  network,       // 3. the new network namespace keeps every interface down
  rlimits,       // 4. address space, CPU seconds, no processes, no file writes, few descriptors, no
                 // cores
  cgroup,        // 5. memory, pids and cpu limits in a cgroup of the worker's own
  process,       // 6. own session keyring, only the channel open, empty environment, setsid,
                 // parent-death signal, not dumpable
  capabilities,  // 7. every capability set emptied, no_new_privs
  seccomp,       // 8. a syscall allowlist; anything else kills the worker and is reported
};
inline constexpr size_t kLayerCount = 8;
inline constexpr std::array<Layer, kLayerCount> kAllLayers = {
    Layer::namespaces, Layer::filesystem, Layer::network,      Layer::rlimits,
    Layer::cgroup,     Layer::process,    Layer::capabilities, Layer::seccomp};

std::string_view to_string(Layer layer);
std::optional<Layer> layer_from_string(std::string_view name);

class LayerSet {
 public:
  static LayerSet all();
  static LayerSet none() { return {}; }
  // "namespaces,seccomp" (or "all", or "none"); throws std::invalid_argument naming a bad entry.
  static LayerSet parse(std::string_view list);

  bool has(Layer layer) const { return bits_ & bit(layer); }
  LayerSet& add(Layer layer) {
    bits_ |= bit(layer);
    return *this;
  }
  LayerSet& remove(Layer layer) {
    bits_ &= ~bit(layer);
    return *this;
  }
  std::string to_string() const;  // the form parse() reads
  friend bool operator==(const LayerSet&, const LayerSet&) = default;

 private:
  static uint16_t bit(Layer layer) {
    return static_cast<uint16_t>(1u << static_cast<unsigned>(layer));
  }
  uint16_t bits_ = 0;
};

// Resource ceilings for one worker process, over its whole life (it serves many invocations).
struct Ceilings {
  int64_t address_space_bytes = 1ll << 30;  // RLIMIT_AS (not applied in sanitizer builds)
  int64_t cpu_seconds = 60;                 // RLIMIT_CPU: the pool recycles workers long before
  int64_t cgroup_memory_bytes = 512ll << 20;
  int64_t cgroup_pids = 1;
  int64_t cgroup_cpu_percent = 100;  // of one CPU
};

// ---- supervisor side ----------------------------------------------------------------------

struct LayerStatus {
  Layer layer;
  bool available = false;
  std::string detail;  // how it is provided ("cgroup v1: memory, pids, cpu"), or why not
};

struct ProbeOptions {
  std::string cgroup_root = "/sys/fs/cgroup";
};

// What this machine can provide, layer by layer (tries a user-namespace clone, looks for a
// delegated cgroup hierarchy, asks the kernel for seccomp).
std::vector<LayerStatus> probe_machine(const ProbeOptions& options = {});

// EMFILE or ENFILE: corrald, or the whole machine, has no descriptor left. Hints about other
// causes (permissions, a missing binary, no user namespaces) would mislead then.
inline bool out_of_descriptors(int error) { return error == EMFILE || error == ENFILE; }

// A system call failed while a worker was being started. It keeps the errno so that the pool can
// tell a supervisor out of descriptors, which passes, from a machine that cannot jail at all.
class SystemCallFailure : public std::runtime_error {
 public:
  SystemCallFailure(const std::string& message, int error)
      : std::runtime_error(message), error_(error) {}
  bool out_of_descriptors() const { return jail::out_of_descriptors(error_); }

 private:
  int error_;
};

class WorkerCgroups;  // one worker's cgroup(s), v1 or v2; see cgroup.h

// Creates and removes per-worker cgroups under a directory of this supervisor's own. Throws
// SystemCallFailure naming the file and the fix when the hierarchy is not writable.
class CgroupManager {
 public:
  explicit CgroupManager(const ProbeOptions& options, const Ceilings& ceilings);
  ~CgroupManager();
  CgroupManager(const CgroupManager&) = delete;
  CgroupManager& operator=(const CgroupManager&) = delete;

  std::string describe() const;  // "cgroup v1 (memory, pids, cpu) under /sys/fs/cgroup/memory/…"
  // A worker's cgroups, named `name`. With a tenant, its CPU cgroup sits in that tenant's CPU
  // group, which weighs as one entity however many workers the tenant has running (docs/jail.md,
  // "CPU shares between tenants"); without one (a spare), directly under the workers' parent.
  WorkerCgroups* create(const std::string& name, const std::string& tenant = "");
  // Moves a worker made without a tenant (a spare) into `tenant`'s CPU group: a new CPU cgroup
  // with the same ceiling, there, then the old one removed. A no-op when it is there already.
  // Throws SystemCallFailure; the worker then keeps its cgroups and their ceilings.
  void join_tenant(WorkerCgroups* cgroups, pid_t pid, const std::string& tenant);
  void destroy(WorkerCgroups* cgroups);  // after the worker has been reaped
  // The directory of `tenant`'s CPU group under the cpu controller (v1) or the single hierarchy
  // (v2), made or not.
  std::string tenant_group_directory(const std::string& tenant) const;
  // Whether the kernel's OOM killer acted inside this worker's cgroup.
  bool oom_killed(const WorkerCgroups* cgroups) const;

 private:
  struct Impl;
  Impl* impl_;
};

// The empty network namespace that workers join instead of each creating one (docs/jail.md,
// "What workers share"). Made once by the supervisor, owned by the initial user namespace, so
// that no worker holds a capability over it; each worker scopes its abstract unix sockets and
// signals to itself (Landlock), as a namespace of its own would have.
class SharedNetwork {
 public:
  // Throws SystemCallFailure saying why it cannot be made: corrald is not root in the initial
  // user namespace, or the kernel cannot scope abstract sockets (Landlock ABI 6, Linux 6.12).
  // The caller then gives each worker a network namespace of its own.
  static std::unique_ptr<SharedNetwork> create();
  ~SharedNetwork();
  SharedNetwork(const SharedNetwork&) = delete;
  SharedNetwork& operator=(const SharedNetwork&) = delete;
  int fd() const { return fd_; }

 private:
  explicit SharedNetwork(int fd) : fd_(fd) {}
  int fd_;
};

struct SpawnRequest {
  int executable_fd = -1;  // the worker binary, opened by the supervisor (O_PATH is enough)
  std::vector<std::string> argv;
  int channel_fd = -1;  // becomes descriptor 3 in the worker
  LayerSet layers;
  uid_t outside_uid = 65534;  // the unprivileged ids the worker's root maps to (its tenant's)
  gid_t outside_gid = 65534;
  WorkerCgroups* cgroups = nullptr;  // when the cgroup layer is on
  // With the namespaces layer: the network namespace to join (SharedNetwork::fd), or -1 for a
  // new one. A worker that joins one must scope itself (ContainOptions::shared_network).
  int network_namespace_fd = -1;
};

struct Spawned {
  pid_t pid = -1;
  int pidfd = -1;
};

// Starts the worker; throws std::runtime_error naming the step that failed and why, a
// SystemCallFailure when a system call of the supervisor's failed.
Spawned spawn_jailed(const SpawnRequest& request);

// ---- worker side --------------------------------------------------------------------------

inline constexpr int kChannelFd = 3;
// RLIMIT_NOFILE: nothing beyond the channel. Sanitizer builds leave a few more, because the
// sanitizer runtime checks memory through a pipe.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr int kDescriptorLimit = kChannelFd + 1 + 8;
#else
inline constexpr int kDescriptorLimit = kChannelFd + 1;
#endif

struct ContainOptions {
  LayerSet layers;
  Ceilings ceilings;
  // The supervisor made the worker join the shared network namespace: with the namespaces
  // layer, the worker scopes its abstract unix sockets and signals to itself.
  bool shared_network = false;
};

// The worker's part of step 1 (no new namespaces), then steps 2, 3, 4, 6 and 7 in that order
// (1 and 5 were done by the supervisor before exec).
// Throws std::runtime_error naming the step that failed.
void contain(const ContainOptions& options);

// Called from the SIGSYS handler, so it must be async-signal-safe: it tells the supervisor
// which syscall was refused (the worker writes a frame on the channel).
using ViolationReporter = void (*)(long syscall_number);

// Step 8, last: once the runtime has everything it needs, only the syscalls it uses remain. A
// forbidden syscall runs the reporter, then the worker exits with kViolationExitStatus; any
// attempt to get around that (blocking or catching SIGSYS) is itself refused.
void lock_down(const ContainOptions& options, ViolationReporter reporter);
inline constexpr int kViolationExitStatus = 159;  // 128 + SIGSYS
// The worker could not jail itself (contain() threw); it says why on its standard error.
inline constexpr int kContainFailedExitStatus = 4;

// For the worker's command line: "--jail-layers=…", "--jail-as=…", "--jail-cpu=…" and, when
// shared, "--jail-shared-network".
std::vector<std::string> to_arguments(const ContainOptions& options);
ContainOptions options_from_arguments(int argc, char** argv);  // throws std::invalid_argument

// "openat" for the syscall number on this architecture, or "syscall 1234".
std::string syscall_name(long number);

}  // namespace corral::jail
