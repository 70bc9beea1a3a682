// What the workers corrald may run at once need of the machine, and which of its limits is short
// (issue 25, "Limits of the machine named"; docs/operations.md, "Limits of the machine").
//
// Contract:
// - read_machine_values() only reads: the sysctls under /proc/sys, /proc/meminfo, /proc/loadavg,
//   /proc/cgroups, corrald's own cgroups, and its rlimits. Every path is taken under an injectable
//   root, so a test can lay out a fake /proc and /sys and assert each finding. A file it cannot
//   read is named in MachineValues::unread and its check is left out; it never throws.
// - find_shortfalls() is pure: a finding for every limit that leaves room for fewer workers than
//   MachineLimitsNeed::workers, with the numbers and the exact setting to raise, in a sentence an
//   operator can act on. No finding means nothing is short.
// - raise_descriptor_limit_for() is the only part that changes anything: corrald's own
//   RLIMIT_NOFILE, so that a corrald with CAP_SYS_RESOURCE (root) needs no ulimit change.
// Called once at start by corrald (serve and --check) on its main thread.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace corral {

// What corrald asks of the machine. The counts per worker are those of today's jail (one
// process; a user, mount, pid, ipc, uts and cgroup namespace; a channel and a pidfd in corrald;
// one cgroup v2 directory or three v1 ones, of which one is a memory cgroup).
struct MachineLimitsNeed {
  size_t workers = 0;                 // alive at once, spares included
  size_t connections_reserve = 64;    // descriptors kept for HTTP connections
  size_t other_descriptors = 256;     // the store, the logs, capability calls, spawns in progress
  size_t supervisor_threads = 64;     // corrald's own threads, which count as processes too
  bool own_network_namespace = true;  // false when workers join one shared network namespace
  uint64_t memory_budget_bytes = 0;   // what the workers may take in all; 0: not checked
  // Fewer workers than this and corrald cannot run as configured: refuses_start() is true.
  size_t minimum_workers = 1;
  // The flags that set `workers` and `memory_budget_bytes`, named in the findings' advice.
  std::string workers_setting = "--max-workers";
  std::string memory_setting = "--max-workers";
};

enum class CgroupLayout { none, v1, v2 };

// A cgroup's limit on the processes (pids.max) or the cgroups (cgroup.max.descendants) below it.
struct CgroupCountLimit {
  std::string directory;  // as the machine names it, e.g. /sys/fs/cgroup/pids/system.slice
  uint64_t limit = 0;
  uint64_t used = 0;  // pids.current, or cgroup.stat nr_descendants
};

// A user.max_*_namespaces sysctl.
struct NamespaceLimit {
  std::string kind;  // "user", "mnt", "pid", "ipc", "uts", "net", "cgroup"
  uint64_t limit = 0;
};

// The machine's values. An unset optional is a limit that does not apply (unlimited, root
// exempt) or a file that could not be read (then named in `unread`).
struct MachineValues {
  std::optional<uint64_t> pid_max;      // kernel.pid_max
  std::optional<uint64_t> threads_max;  // kernel.threads-max
  std::optional<uint64_t> tasks_now;    // every thread of the machine (/proc/loadavg)
  std::vector<NamespaceLimit> namespaces;
  std::optional<uint64_t> nr_open;           // fs.nr_open: the most RLIMIT_NOFILE may be
  std::optional<uint64_t> file_max;          // fs.file-max
  std::optional<uint64_t> files_now;         // open files of the machine (fs.file-nr)
  std::optional<uint64_t> descriptors_soft;  // RLIMIT_NOFILE
  std::optional<uint64_t> descriptors_hard;
  std::optional<uint64_t> processes_soft;           // RLIMIT_NPROC; unset for root, which it spares
  CgroupLayout cgroup = CgroupLayout::none;         // what the cgroup layer would use
  std::vector<CgroupCountLimit> pids_limits;        // corrald's pids cgroup and each above it
  std::vector<CgroupCountLimit> descendant_limits;  // v2: the workers' parent and each above it
  std::optional<uint64_t> memory_cgroups_now;       // /proc/cgroups
  std::optional<uint64_t> memory_available_bytes;   // MemAvailable
  std::vector<std::string> unread;                  // files that could not be read or parsed
};

// Where the values are read from. Tests pass a directory holding a fake proc/ and sys/, and
// rlimits and a uid of their own.
struct MachineView {
  std::filesystem::path root = "/";
  std::string cgroup_root = "/sys/fs/cgroup";  // under root; corrald --cgroup-root
  std::optional<rlimit> descriptors;           // unset: this process's RLIMIT_NOFILE
  std::optional<rlimit> processes;             // unset: this process's RLIMIT_NPROC
  std::optional<uid_t> uid;                    // unset: this process's real uid
};

// Memory cgroup ids are 16 bits in the kernel, for the whole machine, whatever the cgroup
// version: no setting raises it.
inline constexpr uint64_t kMemoryCgroupIdLimit = 65535;

struct MachineLimitFinding {
  std::string limit;            // what is short: "user namespaces (user.max_user_namespaces)"
  uint64_t needed = 0;          // for all the workers
  uint64_t available = 0;       // what the machine has
  size_t workers_possible = 0;  // the workers it leaves room for
  std::string setting;          // what to run or change: "sysctl -w user.max_user_namespaces=10002"
  std::string message;          // the whole sentence, for the log and corrald --check
};

MachineValues read_machine_values(const MachineView& view = {});

std::vector<MachineLimitFinding> find_shortfalls(const MachineLimitsNeed& need,
                                                 const MachineValues& values);

// The descriptors corrald needs: one per worker, the connections and the rest.
uint64_t descriptors_needed(const MachineLimitsNeed& need);

// True when a finding leaves room for fewer than need.minimum_workers: corrald cannot run as
// configured, and refuses to start with the findings' messages.
bool refuses_start(const MachineLimitsNeed& need, const std::vector<MachineLimitFinding>& found);

struct DescriptorRaise {
  rlimit before{};
  rlimit after{};
  std::string report;  // what was done, or why not, in a sentence
};

// Raises this process's RLIMIT_NOFILE soft limit to `needed` (or to the hard limit, if lower);
// with CAP_SYS_RESOURCE, tried and seen, the hard limit too, up to fs.nr_open (read under
// view.root). Never lowers either limit.
DescriptorRaise raise_descriptor_limit_for(uint64_t needed, const MachineView& view = {});

}  // namespace corral
