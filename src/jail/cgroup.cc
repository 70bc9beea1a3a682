// cgroup v1 and the manager that picks a version. A parent directory of this supervisor's own
// ("corral-<pid>") is made under its cgroup in each controller; each worker gets "w<n>" in it,
// its CPU cgroup inside its tenant's CPU group ("t-<tenant>-<hash>/w<n>").
#include "jail/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace corral::jail {
namespace fs = std::filesystem;

void write_cgroup_file(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    std::string message = "cgroup: cannot open " + path + ": " + strerror(error);
    if (!out_of_descriptors(error))
      message += "; corrald needs write access to its cgroup (or --allow-missing-layer=cgroup)";
    throw SystemCallFailure(message, error);
  }
  ssize_t written = write(fd, value.data(), value.size());
  int saved = errno;
  close(fd);
  if (written != static_cast<ssize_t>(value.size())) {
    throw SystemCallFailure(
        "cgroup: cannot write '" + value + "' to " + path + ": " + strerror(saved), saved);
  }
}

std::string read_cgroup_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string cgroup_path_in(const std::string& proc_self_cgroup, const std::string& controller) {
  std::stringstream lines(proc_self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    size_t first = line.find(':');
    size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (controller.empty()) {
      if (line.substr(0, first) == "0" && controllers.empty()) return path;
      continue;
    }
    std::stringstream list(controllers);
    std::string each;
    while (std::getline(list, each, ',')) {
      if (each == controller) return path;
    }
  }
  return "";
}

std::string own_cgroup_path(const std::string& controller) {
  return cgroup_path_in(read_cgroup_file("/proc/self/cgroup"), controller);
}

int clone_into_fd(const WorkerCgroups& cgroups) { return cgroups.v2 ? cgroups.directory_fd : -1; }

void join_cgroups(const WorkerCgroups& cgroups, pid_t pid) {
  for (const auto& directory : cgroups.directories)
    write_cgroup_file(directory + "/cgroup.procs", std::to_string(pid));
}

namespace {

const std::vector<std::string> kV1Controllers = {"memory", "pids", "cpu"};
// Where corrald's own threads go in v1's cpu controller, beside the tenants' CPU groups (v2 has
// its "corrald" leaf in the same place), and its cpu.shares against each tenant's 1024.
constexpr const char* kSupervisorGroup = "corrald";
constexpr int kSupervisorCpuShares = 4 * 1024;

bool writable_directory(const fs::path& path) { return access(path.c_str(), W_OK) == 0; }

// The directory of this process's cgroup in a v1 controller, or "" if not mounted there.
fs::path v1_own_directory(const ProbeOptions& options, const std::string& controller) {
  fs::path mount = fs::path(options.cgroup_root) / controller;
  if (!fs::exists(mount / "cgroup.procs")) return {};
  fs::path own = mount / fs::path(own_cgroup_path(controller)).relative_path();
  // Already moved into the supervisor's group of an earlier manager: its home is above that.
  if (own.filename() == kSupervisorGroup &&
      own.parent_path().filename().string().starts_with("corral-"))
    own = own.parent_path().parent_path();
  return own;
}

// Removes a cgroup directory and the cgroups below it, deepest first (a cgroup's files are
// not removable: rmdir on each directory is all it takes once no process is left in it).
void remove_cgroup_tree(const fs::path& directory) {
  std::error_code error;
  for (const auto& child : fs::directory_iterator(directory, error)) {
    if (child.is_directory(error)) remove_cgroup_tree(child.path());
  }
  rmdir(directory.c_str());
}

// A supervisor killed with SIGKILL cannot remove its cgroups: remove those of dead ones
// ("corral-<pid>-<n>" whose pid is gone) so they do not pile up.
void remove_stale_parents(const fs::path& directory) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(directory, error)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with("corral-") || !entry.is_directory()) continue;
    pid_t owner = static_cast<pid_t>(std::atoll(name.c_str() + 7));
    if (owner <= 0 || owner == getpid() || kill(owner, 0) == 0 || errno != ESRCH) continue;
    remove_cgroup_tree(entry.path());
  }
}

// A reaped worker may take a moment to leave its cgroup's accounting.
void remove_emptied_cgroup(const std::string& directory) {
  for (int attempt = 0; attempt < 50 && rmdir(directory.c_str()) != 0 && errno == EBUSY;
       ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void make_cgroup(const fs::path& directory) {
  if (mkdir(directory.c_str(), 0755) != 0 && errno != EEXIST) {
    int error = errno;
    throw SystemCallFailure("cgroup: cannot create " + directory.string() + ": " + strerror(error),
                            error);
  }
}

// A tenant's CPU group directory: its name kept to a safe alphabet for the eye, and a hash of
// the whole name so that two tenants never share one.
std::string tenant_group_name(const std::string& tenant) {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a
  for (unsigned char c : tenant) hash = (hash ^ c) * 1099511628211ull;
  std::string name = "t-";
  for (char c : tenant.substr(0, 40))
    name += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  char suffix[20];
  std::snprintf(suffix, sizeof suffix, "-%08x", static_cast<uint32_t>(hash ^ (hash >> 32)));
  return name + suffix;
}

}  // namespace

namespace cgroup1 {

LayerStatus probe(const ProbeOptions& options) {
  LayerStatus status{Layer::cgroup, false, ""};
  for (const auto& controller : kV1Controllers) {
    fs::path own = v1_own_directory(options, controller);
    if (own.empty()) {
      status.detail = "cgroup v1: the " + controller + " controller is not mounted under " +
                      options.cgroup_root;
      return status;
    }
    if (!writable_directory(own)) {
      status.detail = "cgroup v1: " + own.string() + " is not writable by corrald";
      return status;
    }
  }
  status.available = true;
  status.detail = "cgroup v1 (memory, pids, cpu)";
  return status;
}

}  // namespace cgroup1

namespace cgroup2 {
fs::path prepare_parent(const ProbeOptions& options);
void apply_limits(const fs::path& directory, const Ceilings& ceilings);
}  // namespace cgroup2

struct CgroupManager::Impl {
  bool v2 = false;
  struct Parent {
    std::string controller;  // v1 controller name; empty for v2
    fs::path directory;
  };
  std::vector<Parent> parents;  // v1: one per controller; v2: one
  Ceilings ceilings;
  std::atomic<uint64_t> counter{0};
  std::mutex mutex;
  std::map<std::string, int> group_workers;  // tenant → its workers in its CPU group (mutex)
  std::string cgroup_root;                   // the mount point of the hierarchies
  fs::path supervisor_home;                  // v1: corrald's cpu cgroup before it moved

  // Where tenants' CPU groups go: v1's cpu controller, or v2's single hierarchy. Memory and pids
  // stay one cgroup per worker under the parent: their ceilings are each worker's.
  bool holds_groups(const Parent& parent) const { return v2 || parent.controller == "cpu"; }
  fs::path group_directory(const Parent& parent, const std::string& tenant) const {
    return parent.directory / tenant_group_name(tenant);
  }
  void apply_ceilings(const Parent& parent, const fs::path& directory) const;
  void acquire_group(const std::string& tenant);
  void release_group(const std::string& tenant);
};

namespace cgroup2 {
void enable_controllers_below(const fs::path& directory);
}  // namespace cgroup2

void CgroupManager::Impl::apply_ceilings(const Parent& parent, const fs::path& directory) const {
  if (v2) {
    cgroup2::apply_limits(directory, ceilings);
  } else if (parent.controller == "memory") {
    write_cgroup_file(directory / "memory.limit_in_bytes",
                      std::to_string(ceilings.cgroup_memory_bytes));
    // Without swap accounting the memsw file is absent; the plain limit still holds RAM.
    if (fs::exists(directory / "memory.memsw.limit_in_bytes")) {
      write_cgroup_file(directory / "memory.memsw.limit_in_bytes",
                        std::to_string(ceilings.cgroup_memory_bytes));
    }
  } else if (parent.controller == "pids") {
    write_cgroup_file(directory / "pids.max", std::to_string(ceilings.cgroup_pids));
  } else if (parent.controller == "cpu") {
    write_cgroup_file(directory / "cpu.cfs_period_us", "100000");
    write_cgroup_file(directory / "cpu.cfs_quota_us",
                      std::to_string(ceilings.cgroup_cpu_percent * 1000));
  }
}

void CgroupManager::Impl::acquire_group(const std::string& tenant) {
  std::lock_guard lock(mutex);
  if (group_workers[tenant]++ > 0) return;
  try {
    for (const auto& parent : parents) {
      if (!holds_groups(parent)) continue;
      fs::path directory = group_directory(parent, tenant);
      make_cgroup(directory);
      if (v2) cgroup2::enable_controllers_below(directory);
    }
  } catch (...) {
    if (--group_workers[tenant] == 0) group_workers.erase(tenant);
    throw;
  }
}

void CgroupManager::Impl::release_group(const std::string& tenant) {
  std::lock_guard lock(mutex);
  auto found = group_workers.find(tenant);
  if (found == group_workers.end() || --found->second > 0) return;
  group_workers.erase(found);
  for (const auto& parent : parents) {
    if (holds_groups(parent)) remove_emptied_cgroup(group_directory(parent, tenant));
  }
}

CgroupManager::CgroupManager(const ProbeOptions& options, const Ceilings& ceilings)
    : impl_(new Impl) {
  impl_->ceilings = ceilings;
  impl_->cgroup_root = options.cgroup_root;
  // Several managers may live in one process (tests, the CLI): each gets its own directory.
  static std::atomic<uint64_t> instances{0};
  std::string name = "corral-" + std::to_string(getpid()) + "-" + std::to_string(instances++);
  try {
    if (cgroup2::probe(options).available) {
      impl_->v2 = true;
      impl_->parents.push_back({"", cgroup2::prepare_parent(options)});
    } else if (auto v1 = cgroup1::probe(options); v1.available) {
      for (const auto& controller : kV1Controllers) {
        remove_stale_parents(v1_own_directory(options, controller));
        fs::path parent = v1_own_directory(options, controller) / name;
        std::error_code ignored;
        fs::create_directory(parent, ignored);
        if (!fs::is_directory(parent))
          throw std::runtime_error("cgroup: cannot create " + parent.string());
        // Under v1 corrald's threads would each compete with the workers' parent as one entity:
        // a flood that keeps a handful of them busy answering 429s starves every worker, and
        // a parent weighted to prevent that starves corrald's threads behind one tenant's
        // CPU-bound runs (docs/performance.md, "Noisy neighbour", "Floods of denials"). So
        // corrald's threads move into a group of their own beside the tenants' groups, as
        // under v2. Best effort: fairness rests on it, no ceiling does.
        if (controller == "cpu") {
          impl_->supervisor_home = v1_own_directory(options, controller);
          try {
            fs::path supervisor = parent / kSupervisorGroup;
            make_cgroup(supervisor);
            write_cgroup_file(supervisor / "cpu.shares", std::to_string(kSupervisorCpuShares));
            write_cgroup_file(supervisor / "cgroup.procs", "0");  // every thread of corrald
          } catch (const std::exception&) {
          }
        }
        impl_->parents.push_back({controller, parent});
      }
    } else {
      throw std::runtime_error(v1.detail + " (and no delegated cgroup v2 hierarchy)");
    }
  } catch (...) {
    delete impl_;
    throw;
  }
}

CgroupManager::~CgroupManager() {
  for (const auto& parent : impl_->parents) {
    // corrald's threads leave this manager's supervisor group for their home (v1), or the
    // group could not be removed.
    if (parent.controller == "cpu" && !impl_->supervisor_home.empty()) {
      fs::path mount = fs::path(impl_->cgroup_root) / "cpu";
      fs::path now = mount / fs::path(own_cgroup_path("cpu")).relative_path();
      if (now == parent.directory / kSupervisorGroup) {
        try {
          write_cgroup_file(impl_->supervisor_home / "cgroup.procs", "0");
        } catch (const std::exception&) {
        }
      }
    }
    remove_cgroup_tree(parent.directory);
  }
  delete impl_;
}

std::string CgroupManager::describe() const {
  std::string where;
  for (const auto& parent : impl_->parents)
    where += (where.empty() ? "" : ", ") + parent.directory.string();
  return std::string(impl_->v2 ? "cgroup v2 (memory, pids, cpu)"
                               : "cgroup v1 (memory, pids, cpu)") +
         " under " + where;
}

WorkerCgroups* CgroupManager::create(const std::string& name, const std::string& tenant) {
  auto cgroups = std::make_unique<WorkerCgroups>();
  cgroups->v2 = impl_->v2;
  std::string leaf = name + "-" + std::to_string(impl_->counter++);
  if (!tenant.empty()) {
    impl_->acquire_group(tenant);
    cgroups->tenant = tenant;
  }
  try {
    for (const auto& parent : impl_->parents) {
      fs::path directory = (cgroups->tenant.empty() || !impl_->holds_groups(parent))
                               ? parent.directory / leaf
                               : impl_->group_directory(parent, tenant) / leaf;
      make_cgroup(directory);
      cgroups->directories.push_back(directory.string());
      impl_->apply_ceilings(parent, directory);
      if (impl_->v2) {
        cgroups->directory_fd = open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cgroups->directory_fd < 0) {
          int error = errno;
          throw SystemCallFailure(
              "cgroup: cannot open " + directory.string() + ": " + strerror(error), error);
        }
      }
    }
  } catch (...) {
    destroy(cgroups.release());
    throw;
  }
  return cgroups.release();
}

void CgroupManager::join_tenant(WorkerCgroups* cgroups, pid_t pid, const std::string& tenant) {
  if (cgroups == nullptr || tenant.empty() || cgroups->tenant == tenant) return;
  impl_->acquire_group(tenant);
  for (size_t i = 0; i < impl_->parents.size() && i < cgroups->directories.size(); ++i) {
    const auto& parent = impl_->parents[i];
    if (!impl_->holds_groups(parent)) continue;
    fs::path moved =
        impl_->group_directory(parent, tenant) / fs::path(cgroups->directories[i]).filename();
    try {
      make_cgroup(moved);
      impl_->apply_ceilings(parent, moved);
      write_cgroup_file(moved / "cgroup.procs", std::to_string(pid));
    } catch (...) {
      rmdir(moved.c_str());
      impl_->release_group(tenant);
      throw;
    }
    remove_emptied_cgroup(cgroups->directories[i]);
    cgroups->directories[i] = moved.string();
    if (cgroups->v2 && cgroups->directory_fd >= 0) {
      close(cgroups->directory_fd);  // used only to clone into; the worker is long running
      cgroups->directory_fd = -1;
    }
  }
  if (!cgroups->tenant.empty()) impl_->release_group(cgroups->tenant);
  cgroups->tenant = tenant;
}

std::string CgroupManager::tenant_group_directory(const std::string& tenant) const {
  for (const auto& parent : impl_->parents) {
    if (impl_->holds_groups(parent)) return impl_->group_directory(parent, tenant).string();
  }
  return "";
}

void CgroupManager::destroy(WorkerCgroups* cgroups) {
  if (cgroups == nullptr) return;
  if (cgroups->directory_fd >= 0) close(cgroups->directory_fd);
  for (const auto& directory : cgroups->directories) remove_emptied_cgroup(directory);
  if (!cgroups->tenant.empty()) impl_->release_group(cgroups->tenant);
  delete cgroups;
}

bool CgroupManager::oom_killed(const WorkerCgroups* cgroups) const {
  if (cgroups == nullptr) return false;
  for (const auto& directory : cgroups->directories) {
    std::string events =
        read_cgroup_file(directory + (cgroups->v2 ? "/memory.events" : "/memory.oom_control"));
    auto at = events.find("oom_kill ");
    if (at != std::string::npos && std::atoll(events.c_str() + at + 9) > 0) return true;
  }
  return false;
}

}  // namespace corral::jail
