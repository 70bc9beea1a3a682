// cgroup v2: usable when this supervisor's cgroup offers the memory and pids controllers and
// corrald may write there. The "no internal processes" rule means controllers can only be
// enabled for children of a cgroup that holds no process itself, so corrald first moves
// itself into a leaf ("corrald") of its cgroup, then enables the controllers for the workers
// it creates beside that leaf. Workers are cloned straight into theirs (CLONE_INTO_CGROUP), in
// their tenant's group ("t-…", which passes the same controllers down); a spare moved into its
// tenant's group when bound leaves the memory it was charged before in the removed cgroup (the
// kernel charges the parent from then on): its start-up heap, a fraction of its ceiling.
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "jail/cgroup.h"

namespace corral::jail::cgroup2 {
namespace fs = std::filesystem;

namespace {

fs::path own_directory(const ProbeOptions& options) {
  fs::path root(options.cgroup_root);
  if (!fs::exists(root / "cgroup.controllers")) return {};  // not a v2 mount
  fs::path own = root / fs::path(own_cgroup_path("")).relative_path();
  // Already moved into our leaf by an earlier manager: the workers' parent is the one above.
  if (own.filename() == "corrald") own = own.parent_path();
  return own;
}

bool offers(const std::string& controllers, const std::string& name) {
  return (" " + controllers + " ").find(" " + name + " ") != std::string::npos ||
         (" " + controllers).find(" " + name + "\n") != std::string::npos;
}

}  // namespace

LayerStatus probe(const ProbeOptions& options) {
  LayerStatus status{Layer::cgroup, false, ""};
  fs::path own = own_directory(options);
  if (own.empty()) {
    status.detail = "no cgroup v2 hierarchy at " + options.cgroup_root;
    return status;
  }
  std::string controllers = read_cgroup_file(own / "cgroup.controllers");
  if (!offers(controllers, "memory") || !offers(controllers, "pids")) {
    status.detail =
        "cgroup v2: " + own.string() + " does not offer the memory and pids controllers";
    return status;
  }
  if (access(own.c_str(), W_OK) != 0) {
    status.detail = "cgroup v2: " + own.string() + " is not writable by corrald";
    return status;
  }
  status.available = true;
  status.detail = "cgroup v2 (memory, pids, cpu)";
  return status;
}

// Gives the cgroups below `directory` the controllers workers are limited with.
void enable_controllers_below(const fs::path& directory) {
  std::string controllers = read_cgroup_file(directory / "cgroup.controllers");
  std::string enable = "+memory +pids";
  if (offers(controllers, "cpu")) enable += " +cpu";
  write_cgroup_file(directory / "cgroup.subtree_control", enable);
}

fs::path prepare_parent(const ProbeOptions& options) {
  fs::path own = own_directory(options);
  fs::path leaf = own / "corrald";
  std::error_code ignored;
  fs::create_directory(leaf, ignored);
  write_cgroup_file(leaf / "cgroup.procs", "0");  // this whole process
  enable_controllers_below(own);
  return own;
}

void apply_limits(const fs::path& directory, const Ceilings& ceilings) {
  write_cgroup_file(directory / "memory.max", std::to_string(ceilings.cgroup_memory_bytes));
  if (fs::exists(directory / "memory.swap.max"))
    write_cgroup_file(directory / "memory.swap.max", "0");
  write_cgroup_file(directory / "pids.max", std::to_string(ceilings.cgroup_pids));
  if (fs::exists(directory / "cpu.max")) {
    write_cgroup_file(directory / "cpu.max",
                      std::to_string(ceilings.cgroup_cpu_percent * 1000) + " 100000");
  }
}

}  // namespace corral::jail::cgroup2
