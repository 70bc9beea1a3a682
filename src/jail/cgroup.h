// Step 5: one cgroup per worker with memory, pids and cpu limits. cgroup2.cc serves a
// delegated cgroup v2 hierarchy (workers are cloned straight into theirs); cgroup.cc serves
// cgroup v1 controllers (the supervisor moves the waiting child in before it may run).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "jail/jail.h"

namespace corral::jail {

class WorkerCgroups {
 public:
  std::vector<std::string> directories;  // one per v1 controller, or the single v2 directory
  int directory_fd = -1;                 // v2 only: for CLONE_INTO_CGROUP
  bool v2 = false;
  std::string tenant;  // whose CPU group the worker's CPU cgroup is in; "" for none (a spare)
};

// -1 when the worker must be moved in after clone (v1).
int clone_into_fd(const WorkerCgroups& cgroups);
void join_cgroups(const WorkerCgroups& cgroups, pid_t pid);

// Shared by both versions.
void write_cgroup_file(const std::string& path, const std::string& value);
std::string read_cgroup_file(const std::string& path);

// The supervisor's own cgroup paths, from /proc/self/cgroup: "memory" → "/a/b", "" → v2 path;
// "" when the controller is not there.
std::string own_cgroup_path(const std::string& controller);
// The same, read from a /proc/PID/cgroup's text.
std::string cgroup_path_in(const std::string& proc_self_cgroup, const std::string& controller);

namespace cgroup1 {
LayerStatus probe(const ProbeOptions& options);
}
namespace cgroup2 {
LayerStatus probe(const ProbeOptions& options);
}

}  // namespace corral::jail
