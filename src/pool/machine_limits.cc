#include "pool/machine_limits.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "jail/cgroup.h"

namespace corral {
namespace {

namespace fs = std::filesystem;

// A worker's end of its channel is a file of the machine's too, beside corrald's.
constexpr uint64_t kFilesPerWorker = 2;
constexpr uint64_t kDescriptorsPerWorker = 1;  // in corrald: the channel (worker_process.cc)
// What corrald assumes of fs.nr_open when it cannot read it: the kernel's default.
constexpr uint64_t kDefaultNrOpen = 1 << 20;

std::optional<std::string> read_text(const fs::path& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::optional<uint64_t> parse_number(const std::string& text) {
  size_t start = text.find_first_not_of(" \t\n");
  if (start == std::string::npos || text[start] < '0' || text[start] > '9') return std::nullopt;
  try {
    return std::stoull(text.substr(start));
  } catch (const std::exception&) {
    return std::nullopt;  // out of range
  }
}

class Reader {
 public:
  explicit Reader(const MachineView& view) : view_(view) {}

  fs::path under_root(const fs::path& path) const { return view_.root / path.relative_path(); }
  // The path as the machine names it, for messages: without the injected root.
  std::string shown(const fs::path& path) const {
    return (fs::path("/") / path.lexically_relative(view_.root)).lexically_normal().string();
  }

  // A file that must be there: when it cannot be read, it is named in `unread`.
  std::optional<std::string> text(const fs::path& path) {
    auto text = read_text(under_root(path));
    if (!text) unread_.push_back(path.string());
    return text;
  }
  std::optional<uint64_t> number(const fs::path& path) {
    auto content = text(path);
    if (!content) return std::nullopt;
    auto value = parse_number(*content);
    if (!value) unread_.push_back(path.string());
    return value;
  }

  std::vector<std::string> take_unread() { return std::move(unread_); }

 private:
  const MachineView& view_;
  std::vector<std::string> unread_;
};

// The cgroup paths of this process in /proc/self/cgroup: by v1 controller, and "" for v2.
std::optional<std::string> own_cgroup(const std::string& self_cgroup,
                                      const std::string& controller) {
  std::string path = jail::cgroup_path_in(self_cgroup, controller);
  if (path.empty()) return std::nullopt;
  return path;
}

bool offers(const std::string& controllers, const std::string& name) {
  std::stringstream words(controllers);
  std::string word;
  while (words >> word)
    if (word == name) return true;
  return false;
}

// A cgroup limit file's value: a number, or nullopt for "max" or a file not there (the root
// cgroup has none).
std::optional<uint64_t> cgroup_limit(const fs::path& file) {
  auto text = read_text(file);
  if (!text) return std::nullopt;
  return parse_number(*text);
}

std::optional<uint64_t> cgroup_stat(const fs::path& file, const std::string& key) {
  auto text = read_text(file);
  if (!text) return std::nullopt;
  std::stringstream lines(*text);
  std::string name;
  uint64_t value = 0;
  while (lines >> name >> value)
    if (name == key) return value;
  return std::nullopt;
}

// Each limit from `directory` up to `top`, the hierarchy's root: a limit set on any of them
// holds for everything below it. `extra` counts what corrald will add before any worker.
std::vector<CgroupCountLimit> limits_up_to(const Reader& reader, fs::path directory,
                                           const fs::path& top, const std::string& limit_file,
                                           const std::function<uint64_t(const fs::path&)>& used,
                                           uint64_t extra) {
  std::vector<CgroupCountLimit> limits;
  directory = directory.lexically_normal();
  fs::path root = top.lexically_normal();
  while (true) {
    if (auto limit = cgroup_limit(directory / limit_file))
      limits.push_back({reader.shown(directory), *limit, used(directory) + extra});
    if (directory == root || directory.string().size() <= root.string().size() ||
        directory == directory.parent_path())
      break;
    directory = directory.parent_path();
  }
  return limits;
}

void read_cgroups(const MachineView& view, Reader& reader, MachineValues& values) {
  fs::path top = reader.under_root(view.cgroup_root);
  auto self = reader.text("/proc/self/cgroup");
  if (!self) return;
  // As the cgroup layer chooses (jail/cgroup.cc): a delegated v2 hierarchy offering memory and
  // pids first, else the v1 memory, pids and cpu controllers.
  fs::path v2_parent;
  if (fs::exists(top / "cgroup.controllers")) {
    if (auto own = own_cgroup(*self, "")) {
      v2_parent = top / fs::path(*own).relative_path();
      if (v2_parent.filename() == "corrald") v2_parent = v2_parent.parent_path();
      auto controllers = read_text(v2_parent / "cgroup.controllers");
      if (controllers && offers(*controllers, "memory") && offers(*controllers, "pids"))
        values.cgroup = CgroupLayout::v2;
    }
  }
  bool v1_mounted = true;
  for (const char* controller : {"memory", "pids", "cpu"})
    v1_mounted = v1_mounted && fs::exists(top / controller / "cgroup.procs") &&
                 own_cgroup(*self, controller).has_value();
  if (values.cgroup == CgroupLayout::none && v1_mounted) values.cgroup = CgroupLayout::v1;

  auto pids_current = [](const fs::path& directory) {
    return cgroup_limit(directory / "pids.current").value_or(0);
  };
  if (auto pids_v1 = own_cgroup(*self, "pids"); pids_v1 && fs::exists(top / "pids")) {
    values.pids_limits = limits_up_to(reader, top / "pids" / fs::path(*pids_v1).relative_path(),
                                      top / "pids", "pids.max", pids_current, 0);
  } else if (!v2_parent.empty()) {
    values.pids_limits = limits_up_to(reader, v2_parent, top, "pids.max", pids_current, 0);
  }

  if (values.cgroup == CgroupLayout::v2) {
    // corrald moves itself into a leaf "corrald" beside its workers' cgroups (jail/cgroup2.cc).
    uint64_t leaf = fs::exists(v2_parent / "corrald") ? 0 : 1;
    values.descendant_limits = limits_up_to(
        reader, v2_parent, top, "cgroup.max.descendants",
        [](const fs::path& directory) {
          return cgroup_stat(directory / "cgroup.stat", "nr_descendants").value_or(0);
        },
        leaf);
  }

  if (values.cgroup != CgroupLayout::none) {
    if (auto table = reader.text("/proc/cgroups")) {
      std::stringstream lines(*table);
      std::string line;
      while (std::getline(lines, line)) {
        std::stringstream fields(line);
        std::string name;
        uint64_t hierarchy = 0, count = 0;
        if (fields >> name >> hierarchy >> count && name == "memory")
          values.memory_cgroups_now = count;
      }
      if (!values.memory_cgroups_now) values.unread.push_back("/proc/cgroups");
    }
  }
}

std::optional<uint64_t> finite(rlim_t limit) {
  if (limit == RLIM_INFINITY) return std::nullopt;
  return static_cast<uint64_t>(limit);
}

std::string workers(uint64_t count) {
  return std::to_string(count) + (count == 1 ? " worker" : " workers");
}

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

const char* kKeepSysctl = " (and in a file under /etc/sysctl.d/ to keep it after a reboot)";

struct Demand {
  std::string limit;
  std::string each;   // what one worker takes, and what `base` is for
  uint64_t base = 0;  // taken before any worker
  uint64_t per_worker = 1;
  uint64_t available = 0;
  std::function<std::string(uint64_t needed)> setting;
};

class Findings {
 public:
  explicit Findings(const MachineLimitsNeed& need) : need_(need) {}

  void check(const Demand& demand) {
    uint64_t needed = demand.base + demand.per_worker * need_.workers;
    if (needed <= demand.available) return;
    MachineLimitFinding finding;
    finding.limit = demand.limit;
    finding.needed = needed;
    finding.available = demand.available;
    finding.workers_possible =
        demand.available > demand.base ? (demand.available - demand.base) / demand.per_worker : 0;
    finding.setting = demand.setting(needed);
    finding.message = demand.limit + ": " + workers(need_.workers) + " need " +
                      std::to_string(needed) + " (" + demand.each + "), and the limit is " +
                      std::to_string(demand.available) + ", room for " +
                      workers(finding.workers_possible) + "; raise it: " + finding.setting;
    found_.push_back(std::move(finding));
  }

  void add(MachineLimitFinding finding) { found_.push_back(std::move(finding)); }
  std::vector<MachineLimitFinding> take() { return std::move(found_); }

 private:
  const MachineLimitsNeed& need_;
  std::vector<MachineLimitFinding> found_;
};

std::string sysctl(const std::string& name, uint64_t value) {
  return "sysctl -w " + name + "=" + std::to_string(value) + kKeepSysctl;
}

}  // namespace

uint64_t descriptors_needed(const MachineLimitsNeed& need) {
  return kDescriptorsPerWorker * need.workers + need.other_descriptors + need.connections_reserve;
}

MachineValues read_machine_values(const MachineView& view) {
  MachineValues values;
  Reader reader(view);
  values.pid_max = reader.number("/proc/sys/kernel/pid_max");
  values.threads_max = reader.number("/proc/sys/kernel/threads-max");
  if (auto load = reader.text("/proc/loadavg")) {
    // "0.12 0.10 0.05 2/345 6789": the fourth field is runnable/all threads.
    std::stringstream fields(*load);
    std::string field;
    for (int i = 0; i < 4 && fields >> field; ++i) {
    }
    if (size_t slash = field.find('/'); slash != std::string::npos)
      values.tasks_now = parse_number(field.substr(slash + 1));
    if (!values.tasks_now) values.unread.push_back("/proc/loadavg");
  }
  for (const char* kind : {"user", "mnt", "pid", "ipc", "uts", "net", "cgroup"}) {
    std::string file = std::string("/proc/sys/user/max_") + kind + "_namespaces";
    if (auto limit = reader.number(file)) values.namespaces.push_back({kind, *limit});
  }
  values.nr_open = reader.number("/proc/sys/fs/nr_open");
  values.file_max = reader.number("/proc/sys/fs/file-max");
  values.files_now = reader.number("/proc/sys/fs/file-nr");

  rlimit descriptors{};
  if (view.descriptors) {
    descriptors = *view.descriptors;
  } else if (getrlimit(RLIMIT_NOFILE, &descriptors) != 0) {
    descriptors = {0, 0};
    values.unread.push_back("RLIMIT_NOFILE");
  }
  values.descriptors_soft = finite(descriptors.rlim_cur);
  values.descriptors_hard = finite(descriptors.rlim_max);
  // The kernel does not hold root's processes to RLIMIT_NPROC.
  if (view.uid.value_or(getuid()) != 0) {
    rlimit processes{};
    if (view.processes) {
      processes = *view.processes;
    } else if (getrlimit(RLIMIT_NPROC, &processes) != 0) {
      processes = {RLIM_INFINITY, RLIM_INFINITY};
      values.unread.push_back("RLIMIT_NPROC");
    }
    values.processes_soft = finite(processes.rlim_cur);
  }

  read_cgroups(view, reader, values);

  if (auto meminfo = reader.text("/proc/meminfo")) {
    std::stringstream lines(*meminfo);
    std::string name;
    uint64_t kib = 0;
    std::string unit;
    while (lines >> name >> kib) {
      std::getline(lines, unit);
      if (name == "MemAvailable:") values.memory_available_bytes = kib << 10;
    }
    if (!values.memory_available_bytes) values.unread.push_back("/proc/meminfo");
  }
  for (auto& file : reader.take_unread()) values.unread.push_back(std::move(file));
  return values;
}

std::vector<MachineLimitFinding> find_shortfalls(const MachineLimitsNeed& need,
                                                 const MachineValues& values) {
  Findings findings(need);
  // corrald's own threads are processes of the machine too, and may not be started yet.
  uint64_t tasks = values.tasks_now.value_or(0) + need.supervisor_threads;
  std::string tasks_each =
      "one per worker, and " + std::to_string(tasks) + " for the threads running now and corrald's";
  if (values.pid_max) {
    findings.check({"process ids (kernel.pid_max)", tasks_each, tasks, 1, *values.pid_max,
                    [](uint64_t n) { return sysctl("kernel.pid_max", n); }});
  }
  if (values.threads_max) {
    findings.check({"threads of the machine (kernel.threads-max)", tasks_each, tasks, 1,
                    *values.threads_max,
                    [](uint64_t n) { return sysctl("kernel.threads-max", n); }});
  }
  if (values.processes_soft) {
    findings.check({"processes of corrald's user (RLIMIT_NPROC)",
                    "one per worker, and " + std::to_string(need.supervisor_threads) +
                        " for corrald's threads",
                    need.supervisor_threads, 1, *values.processes_soft, [](uint64_t n) {
                      return "LimitNPROC=" + std::to_string(n) +
                             " in corrald's systemd unit, or ulimit -u " + std::to_string(n) +
                             " before starting it";
                    }});
  }
  for (const auto& cgroup : values.pids_limits) {
    findings.check({"processes of the cgroup " + cgroup.directory + " (pids.max)",
                    "one per worker, and " + std::to_string(cgroup.used + need.supervisor_threads) +
                        " for the processes in it now and corrald's threads",
                    cgroup.used + need.supervisor_threads, 1, cgroup.limit, [&](uint64_t n) {
                      return "TasksMax=" + std::to_string(n) +
                             " in corrald's systemd unit (or its slice's), or write " +
                             std::to_string(n) + " to " + cgroup.directory + "/pids.max";
                    }});
  }
  for (const auto& limit : values.namespaces) {
    if (limit.kind == "net" && !need.own_network_namespace) continue;
    std::string sysctl_name = "user.max_" + limit.kind + "_namespaces";
    findings.check({limit.kind + " namespaces (" + sysctl_name + ")", "one per worker", 0, 1,
                    limit.limit, [=](uint64_t n) { return sysctl(sysctl_name, n); }});
  }

  uint64_t descriptors = descriptors_needed(need);
  uint64_t descriptors_base = need.other_descriptors + need.connections_reserve;
  std::string descriptors_each =
      "one per worker in corrald, its channel, and " + std::to_string(need.connections_reserve) +
      " for connections and " + std::to_string(need.other_descriptors) + " for the rest";
  if (values.nr_open) {
    findings.check({"descriptors a process may have (fs.nr_open)", descriptors_each,
                    descriptors_base, kDescriptorsPerWorker, *values.nr_open,
                    [](uint64_t n) { return sysctl("fs.nr_open", n); }});
  }
  if (values.descriptors_soft) {
    bool above_nr_open = values.nr_open && descriptors > *values.nr_open;
    findings.check(
        {"corrald's descriptors (RLIMIT_NOFILE)", descriptors_each, descriptors_base,
         kDescriptorsPerWorker, *values.descriptors_soft, [=](uint64_t) {
           return "LimitNOFILE=" + std::to_string(descriptors) +
                  " in corrald's systemd unit, or ulimit -n " + std::to_string(descriptors) +
                  " before starting it (corrald raises it itself when it has CAP_SYS_RESOURCE)" +
                  (above_nr_open ? ", once fs.nr_open allows that many" : "");
         }});
  }
  if (values.file_max) {
    findings.check({"open files of the machine (fs.file-max)",
                    "two per worker, its channel's two ends, and " +
                        std::to_string(values.files_now.value_or(0) + descriptors_base) +
                        " open now and for corrald's connections and the rest",
                    values.files_now.value_or(0) + descriptors_base, kFilesPerWorker,
                    *values.file_max, [](uint64_t n) { return sysctl("fs.file-max", n); }});
  }

  for (const auto& cgroup : values.descendant_limits) {
    findings.check({"cgroups below " + cgroup.directory + " (cgroup.max.descendants)",
                    "one cgroup v2 directory per worker, and " + std::to_string(cgroup.used) +
                        " there now or made by corrald for itself",
                    cgroup.used, 1, cgroup.limit, [&](uint64_t n) {
                      return "write " + std::to_string(n) + " (or max) to " + cgroup.directory +
                             "/cgroup.max.descendants";
                    }});
  }
  if (values.cgroup != CgroupLayout::none && values.memory_cgroups_now) {
    uint64_t base = *values.memory_cgroups_now;
    uint64_t needed = base + need.workers;
    // Warned of from 90%: memory cgroups deleted but still charged with page cache keep their
    // ids a while, so the count now is a floor.
    if (needed > kMemoryCgroupIdLimit / 10 * 9) {
      MachineLimitFinding finding;
      finding.limit = "memory cgroup ids (a kernel constant)";
      finding.needed = needed;
      finding.available = kMemoryCgroupIdLimit;
      finding.workers_possible = kMemoryCgroupIdLimit > base ? kMemoryCgroupIdLimit - base : 0;
      finding.setting = "no setting raises it; lower " + need.workers_setting;
      finding.message =
          "memory cgroup ids: " + workers(need.workers) + " need " + std::to_string(needed) +
          " (one memory cgroup per worker, plus " + std::to_string(base) +
          " on this machine already), at or near the kernel's limit of " +
          std::to_string(kMemoryCgroupIdLimit) + " for the whole machine, which leaves room for " +
          workers(finding.workers_possible) +
          " at most (deleted cgroups still holding page cache keep their ids too); " +
          finding.setting;
      findings.add(std::move(finding));
    }
  }

  if (need.memory_budget_bytes > 0 && values.memory_available_bytes &&
      need.memory_budget_bytes > *values.memory_available_bytes) {
    MachineLimitFinding finding;
    finding.limit = "memory (MemAvailable in /proc/meminfo)";
    finding.needed = need.memory_budget_bytes;
    finding.available = *values.memory_available_bytes;
    uint64_t per_worker = need.workers > 0 ? need.memory_budget_bytes / need.workers : 0;
    finding.workers_possible = per_worker > 0 ? finding.available / per_worker : need.workers;
    finding.setting = "lower " + need.memory_setting + ", or free memory on this machine";
    finding.message = "memory: " + workers(need.workers) + " may take " +
                      mib(need.memory_budget_bytes) + ", and this machine has " +
                      mib(finding.available) + " available (MemAvailable), room for " +
                      workers(finding.workers_possible) + "; " + finding.setting;
    findings.add(std::move(finding));
  }
  return findings.take();
}

bool refuses_start(const MachineLimitsNeed& need, const std::vector<MachineLimitFinding>& found) {
  return std::any_of(found.begin(), found.end(), [&](const MachineLimitFinding& finding) {
    return finding.workers_possible < need.minimum_workers;
  });
}

DescriptorRaise raise_descriptor_limit_for(uint64_t needed, const MachineView& view) {
  DescriptorRaise raise;
  if (getrlimit(RLIMIT_NOFILE, &raise.before) != 0) {
    raise.report = std::string("could not read RLIMIT_NOFILE: ") + std::strerror(errno);
    return raise;
  }
  raise.after = raise.before;
  auto text = [](rlim_t value) {
    return value == RLIM_INFINITY ? std::string("unlimited") : std::to_string(value);
  };
  std::string was = "RLIMIT_NOFILE " + text(raise.before.rlim_cur) + " (hard " +
                    text(raise.before.rlim_max) + ")";
  if (raise.before.rlim_cur == RLIM_INFINITY || raise.before.rlim_cur >= needed) {
    raise.report = was + " covers the " + std::to_string(needed) + " descriptors needed";
    return raise;
  }
  if (raise.before.rlim_max == RLIM_INFINITY || raise.before.rlim_max >= needed) {
    rlimit wanted{static_cast<rlim_t>(needed), raise.before.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &wanted) == 0) {
      raise.after = wanted;
      raise.report = "raised the soft limit of " + was + " to the " + std::to_string(needed) +
                     " descriptors needed";
    } else {
      raise.report = "could not raise " + was + " to the " + std::to_string(needed) +
                     " descriptors needed: " + std::strerror(errno);
    }
    return raise;
  }
  // The hard limit is short: only a process with CAP_SYS_RESOURCE may raise it, and never past
  // fs.nr_open. Trying is the surest way to know whether this one may.
  uint64_t nr_open = parse_number(read_text(view.root / "proc/sys/fs/nr_open").value_or(""))
                         .value_or(kDefaultNrOpen);
  rlim_t target = static_cast<rlim_t>(std::min<uint64_t>(needed, nr_open));
  std::string fix = "set LimitNOFILE=" + std::to_string(needed) +
                    " in corrald's systemd unit, or ulimit -n " + std::to_string(needed) +
                    " before starting it";
  std::string nr_open_short =
      "fs.nr_open (" + std::to_string(nr_open) + ") caps every process below the " +
      std::to_string(needed) +
      " descriptors needed; raise it: sysctl -w fs.nr_open=" + std::to_string(needed);
  bool hard_raised = false;
  if (target > raise.before.rlim_max) {
    rlimit wanted{target, target};
    if (setrlimit(RLIMIT_NOFILE, &wanted) == 0) {
      raise.after = wanted;
      hard_raised = true;
    }
  }
  if (!hard_raised && raise.before.rlim_cur < raise.before.rlim_max) {
    rlimit to_hard{raise.before.rlim_max, raise.before.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &to_hard) == 0) raise.after = to_hard;
  }
  if (hard_raised) {
    raise.report = "raised " + was + " to " + std::to_string(target) +
                   ", the hard limit too (corrald has CAP_SYS_RESOURCE)";
    if (target < needed) raise.report += ", but " + nr_open_short;
  } else if (target <= raise.before.rlim_max) {
    raise.report = "raised " + was + " to its hard limit, but " + nr_open_short;
  } else {
    raise.report =
        (raise.after.rlim_cur > raise.before.rlim_cur ? "raised " + was + " to its hard limit, "
                                                      : was + " is ") +
        "below the " + std::to_string(needed) +
        " descriptors needed, and corrald may not raise its hard limit (it lacks "
        "CAP_SYS_RESOURCE); " +
        fix;
  }
  return raise;
}

}  // namespace corral
