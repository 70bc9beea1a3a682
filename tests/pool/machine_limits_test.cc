// The limits of the machine that thousands of workers run into (pool/machine_limits.h): each one
// set short in a fake /proc and /sys gives its finding, with the numbers and the setting to
// raise; nothing short gives none; this machine's own values read; and corrald's descriptor
// limit is raised with CAP_SYS_RESOURCE and only reported without it.
#include "pool/machine_limits.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace corral {
namespace {

namespace fs = std::filesystem;

constexpr size_t kWorkers = 1000;
constexpr uint64_t kTasksNow = 200;

// A machine with room for far more than kWorkers: every test makes one limit short.
class FakeMachine {
 public:
  explicit FakeMachine(CgroupLayout layout = CgroupLayout::v1) {
    static std::atomic<int> made{0};
    root_ = fs::temp_directory_path() /
            ("corral-machine-limits-" + std::to_string(getpid()) + "-" + std::to_string(made++));
    fs::remove_all(root_);
    write("proc/sys/kernel/pid_max", "4194304\n");
    write("proc/sys/kernel/threads-max", "1000000\n");
    write("proc/loadavg", "0.10 0.20 0.30 2/" + std::to_string(kTasksNow) + " 4321\n");
    for (const char* kind : {"user", "mnt", "pid", "ipc", "uts", "net", "cgroup"})
      write(std::string("proc/sys/user/max_") + kind + "_namespaces", "100000\n");
    write("proc/sys/fs/nr_open", "1048576\n");
    write("proc/sys/fs/file-max", "9223372036854775807\n");
    write("proc/sys/fs/file-nr", "5000\t0\t9223372036854775807\n");
    write("proc/meminfo",
          "MemTotal:       32000000 kB\nMemFree:        20000000 kB\n"
          "MemAvailable:   16777216 kB\nBuffers:          100000 kB\n");
    write("proc/cgroups",
          "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t50\t1\nmemory\t4\t100\t1\n"
          "pids\t3\t60\t1\n");
    const std::string service = "/system.slice/corrald.service";
    if (layout == CgroupLayout::v1) {
      write("proc/self/cgroup", "4:memory:" + service + "\n3:pids:" + service +
                                    "\n2:cpu,cpuacct:" + service + "\n0::" + service + "\n");
      for (const char* controller : {"memory", "pids", "cpu"})
        write(std::string("sys/fs/cgroup/") + controller + "/cgroup.procs", "1\n");
      write("sys/fs/cgroup/pids/system.slice/pids.max", "max\n");
      write("sys/fs/cgroup/pids/system.slice/pids.current", "150\n");
      write("sys/fs/cgroup/pids" + service + "/pids.max", "max\n");
      write("sys/fs/cgroup/pids" + service + "/pids.current", "3\n");
    } else if (layout == CgroupLayout::v2) {
      write("proc/self/cgroup", "0::" + service + "\n");
      write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
      for (const std::string directory : {"system.slice", "system.slice/corrald.service"}) {
        write("sys/fs/cgroup/" + directory + "/cgroup.controllers", "cpu memory pids\n");
        write("sys/fs/cgroup/" + directory + "/cgroup.max.descendants", "max\n");
        write("sys/fs/cgroup/" + directory + "/cgroup.stat",
              "nr_descendants 0\nnr_dying_descendants 0\n");
        write("sys/fs/cgroup/" + directory + "/pids.max", "max\n");
        write("sys/fs/cgroup/" + directory + "/pids.current", "3\n");
      }
    } else {
      write("proc/self/cgroup", "0::/\n");
    }
  }
  ~FakeMachine() { fs::remove_all(root_); }

  void write(const std::string& path, const std::string& text) {
    fs::create_directories((root_ / path).parent_path());
    std::ofstream(root_ / path) << text;
  }

  MachineView view() const {
    MachineView view;
    view.root = root_;
    view.descriptors = rlimit{1 << 20, 1 << 20};
    view.processes = rlimit{RLIM_INFINITY, RLIM_INFINITY};
    view.uid = 0;
    return view;
  }

 private:
  fs::path root_;
};

MachineLimitsNeed thousand_workers() {
  MachineLimitsNeed need;
  need.workers = kWorkers;
  need.memory_budget_bytes = kWorkers << 20;  // 1 MiB each
  need.minimum_workers = 2;
  return need;
}

std::string all_messages(const std::vector<MachineLimitFinding>& found) {
  std::string text;
  for (const auto& finding : found) text += finding.message + "\n";
  return text;
}

// The one finding `found` must hold, whose limit names `limit`, with the numbers in its message
// unless they are bytes (said in MiB).
MachineLimitFinding only_finding(const std::vector<MachineLimitFinding>& found,
                                 const std::string& limit, bool bytes = false) {
  EXPECT_EQ(found.size(), 1u) << all_messages(found);
  if (found.empty()) return {};
  EXPECT_NE(found[0].limit.find(limit), std::string::npos) << found[0].limit;
  EXPECT_NE(found[0].message.find(found[0].setting), std::string::npos) << found[0].message;
  if (!bytes) {
    EXPECT_NE(found[0].message.find(std::to_string(found[0].needed)), std::string::npos);
    EXPECT_NE(found[0].message.find(std::to_string(found[0].available)), std::string::npos);
  }
  return found[0];
}

TEST(MachineLimits, NothingShortGivesNoFinding) {
  for (auto layout : {CgroupLayout::v1, CgroupLayout::v2, CgroupLayout::none}) {
    FakeMachine machine(layout);
    MachineValues values = read_machine_values(machine.view());
    EXPECT_TRUE(values.unread.empty()) << values.unread.front();
    EXPECT_EQ(values.cgroup, layout);
    EXPECT_EQ(values.pid_max, 4194304u);
    EXPECT_EQ(values.tasks_now, kTasksNow);
    EXPECT_EQ(values.namespaces.size(), 7u);
    EXPECT_EQ(values.files_now, 5000u);
    EXPECT_EQ(values.memory_available_bytes, 16777216ull << 10);
    EXPECT_EQ(values.descriptors_soft, uint64_t{1} << 20);
    EXPECT_FALSE(values.processes_soft) << "root is not held to RLIMIT_NPROC";
    auto found = find_shortfalls(thousand_workers(), values);
    EXPECT_TRUE(found.empty()) << all_messages(found);
    EXPECT_FALSE(refuses_start(thousand_workers(), found));
  }
}

// A sysctl set short, the limit it is named as, and what the workers need of it.
struct SysctlCase {
  std::string file;
  std::string sysctl;
  uint64_t value;
  uint64_t needed;
};

TEST(MachineLimits, EachShortSysctlNamesItselfWithTheNumbers) {
  const uint64_t tasks = kTasksNow + MachineLimitsNeed{}.supervisor_threads + kWorkers;
  const uint64_t descriptors = kWorkers + 256 + 64;
  std::vector<SysctlCase> cases = {
      {"proc/sys/kernel/pid_max", "kernel.pid_max", 1000, tasks},
      {"proc/sys/kernel/threads-max", "kernel.threads-max", 900, tasks},
      {"proc/sys/fs/nr_open", "fs.nr_open", 1000, descriptors},
      {"proc/sys/fs/file-max", "fs.file-max", 6000, 5000 + 256 + 64 + 2 * kWorkers},
  };
  for (const char* kind : {"user", "mnt", "pid", "ipc", "uts", "net", "cgroup"}) {
    std::string name = std::string("max_") + kind + "_namespaces";
    cases.push_back({"proc/sys/user/" + name, "user." + name, 999, kWorkers});
  }
  for (const auto& each : cases) {
    SCOPED_TRACE(each.sysctl);
    FakeMachine machine;
    machine.write(each.file, std::to_string(each.value) + "\n");
    auto found = find_shortfalls(thousand_workers(), read_machine_values(machine.view()));
    auto finding = only_finding(found, "(" + each.sysctl + ")");
    EXPECT_EQ(finding.needed, each.needed);
    EXPECT_EQ(finding.available, each.value);
    EXPECT_EQ(finding.setting.rfind(
                  "sysctl -w " + each.sysctl + "=" + std::to_string(each.needed) + " ", 0),
              0u)
        << finding.setting;
    EXPECT_LT(finding.workers_possible, kWorkers);
  }
}

TEST(MachineLimits, ANetworkNamespaceSharedByAllIsNotCountedPerWorker) {
  FakeMachine machine;
  machine.write("proc/sys/user/max_net_namespaces", "10\n");
  MachineLimitsNeed need = thousand_workers();
  need.own_network_namespace = false;
  auto found = find_shortfalls(need, read_machine_values(machine.view()));
  EXPECT_TRUE(found.empty()) << all_messages(found);
}

TEST(MachineLimits, ShortDescriptorLimitNamesLimitNOFILEAndUlimit) {
  FakeMachine machine;
  MachineView view = machine.view();
  view.descriptors = rlimit{1024, 4096};
  auto found = find_shortfalls(thousand_workers(), read_machine_values(view));
  auto finding = only_finding(found, "RLIMIT_NOFILE");
  EXPECT_EQ(finding.needed, kWorkers + 256 + 64);
  EXPECT_EQ(finding.available, 1024u);
  EXPECT_EQ(finding.workers_possible, 1024u - 256 - 64);
  EXPECT_NE(finding.setting.find("LimitNOFILE=1320"), std::string::npos) << finding.setting;
  EXPECT_NE(finding.setting.find("ulimit -n 1320"), std::string::npos) << finding.setting;
  EXPECT_FALSE(refuses_start(thousand_workers(), found));

  // Room for fewer workers than the minimum (the spares): corrald cannot run as configured.
  view.descriptors = rlimit{320 + 1, 4096};
  found = find_shortfalls(thousand_workers(), read_machine_values(view));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].workers_possible, 1u);
  EXPECT_TRUE(refuses_start(thousand_workers(), found));
}

TEST(MachineLimits, ProcessLimitHoldsOnlyForAUserOtherThanRoot) {
  FakeMachine machine;
  MachineView view = machine.view();
  view.processes = rlimit{500, 500};
  auto found = find_shortfalls(thousand_workers(), read_machine_values(view));
  EXPECT_TRUE(found.empty()) << all_messages(found);

  view.uid = 1000;
  found = find_shortfalls(thousand_workers(), read_machine_values(view));
  auto finding = only_finding(found, "RLIMIT_NPROC");
  EXPECT_EQ(finding.needed, kWorkers + 64);
  EXPECT_EQ(finding.available, 500u);
  EXPECT_NE(finding.setting.find("LimitNPROC=1064"), std::string::npos) << finding.setting;
  EXPECT_NE(finding.setting.find("ulimit -u 1064"), std::string::npos) << finding.setting;
}

TEST(MachineLimits, APidsLimitAboveCorraldNamesTasksMax) {
  // systemd's TasksMax= is the pids.max of the unit's cgroup; a slice's holds for all below it.
  for (auto layout : {CgroupLayout::v1, CgroupLayout::v2}) {
    FakeMachine machine(layout);
    std::string slice = layout == CgroupLayout::v1 ? "sys/fs/cgroup/pids/system.slice"
                                                   : "sys/fs/cgroup/system.slice";
    machine.write(slice + "/pids.max", "4915\n");
    machine.write(slice + "/pids.current", "3900\n");
    auto found = find_shortfalls(thousand_workers(), read_machine_values(machine.view()));
    auto finding = only_finding(found, "pids.max");
    EXPECT_NE(finding.limit.find("/" + slice + " "), std::string::npos) << finding.limit;
    EXPECT_EQ(finding.needed, 3900 + 64 + kWorkers);
    EXPECT_EQ(finding.available, 4915u);
    EXPECT_EQ(finding.workers_possible, 4915u - 3900 - 64);
    EXPECT_NE(finding.setting.find("TasksMax=4964"), std::string::npos) << finding.setting;
    EXPECT_NE(finding.setting.find("/" + slice + "/pids.max"), std::string::npos);
  }
}

TEST(MachineLimits, ACgroupV2DescendantsLimitIsNamed) {
  FakeMachine machine(CgroupLayout::v2);
  machine.write("sys/fs/cgroup/system.slice/cgroup.max.descendants", "500\n");
  machine.write("sys/fs/cgroup/system.slice/cgroup.stat", "nr_descendants 40\n");
  auto found = find_shortfalls(thousand_workers(), read_machine_values(machine.view()));
  auto finding = only_finding(found, "cgroup.max.descendants");
  // corrald's own leaf ("corrald") is made beside the workers' cgroups, so it counts too.
  EXPECT_EQ(finding.needed, 40 + 1 + kWorkers);
  EXPECT_EQ(finding.available, 500u);
  EXPECT_NE(finding.setting.find("/sys/fs/cgroup/system.slice/cgroup.max.descendants"),
            std::string::npos)
      << finding.setting;

  // A cgroup v1 machine has no such limit: the same files are not read there.
  FakeMachine v1;
  v1.write("sys/fs/cgroup/system.slice/cgroup.max.descendants", "5\n");
  EXPECT_TRUE(find_shortfalls(thousand_workers(), read_machine_values(v1.view())).empty());
}

TEST(MachineLimits, MemoryCgroupIdsNearTheKernelsLimitAreNamedAsUnraisable) {
  FakeMachine machine;
  machine.write("proc/cgroups",
                "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
                "memory\t4\t58000\t1\n");
  auto found = find_shortfalls(thousand_workers(), read_machine_values(machine.view()));
  auto finding = only_finding(found, "memory cgroup ids");
  EXPECT_EQ(finding.needed, 58000 + kWorkers);
  EXPECT_EQ(finding.available, 65535u);
  EXPECT_EQ(finding.workers_possible, 65535u - 58000);
  EXPECT_NE(finding.setting.find("no setting raises it; lower --max-workers"), std::string::npos);

  // Without a cgroup layer workers make no memory cgroup.
  FakeMachine bare(CgroupLayout::none);
  bare.write("proc/cgroups", "memory\t4\t58000\t1\n");
  EXPECT_TRUE(find_shortfalls(thousand_workers(), read_machine_values(bare.view())).empty());
}

TEST(MachineLimits, ABudgetAboveTheMemoryAvailableIsNamed) {
  FakeMachine machine;
  machine.write("proc/meminfo", "MemTotal: 2097152 kB\nMemAvailable:     512000 kB\n");
  MachineLimitsNeed need = thousand_workers();
  need.memory_setting = "--worker-memory-budget";
  auto found = find_shortfalls(need, read_machine_values(machine.view()));
  auto finding = only_finding(found, "MemAvailable", true);
  EXPECT_EQ(finding.needed, kWorkers << 20);
  EXPECT_EQ(finding.available, 512000u << 10);
  EXPECT_EQ(finding.workers_possible, 500u);
  EXPECT_NE(finding.message.find("1000 MiB"), std::string::npos) << finding.message;
  EXPECT_NE(finding.message.find("500 MiB available"), std::string::npos) << finding.message;
  EXPECT_NE(finding.setting.find("lower --worker-memory-budget"), std::string::npos);
}

TEST(MachineLimits, AFileItCannotReadIsNamedAndItsCheckLeftOut) {
  FakeMachine machine;
  machine.write("proc/sys/kernel/pid_max", "not a number\n");
  fs::remove(machine.view().root / "proc/sys/user/max_cgroup_namespaces");
  MachineValues values = read_machine_values(machine.view());
  EXPECT_FALSE(values.pid_max);
  EXPECT_EQ(values.namespaces.size(), 6u);
  EXPECT_EQ(values.unread, (std::vector<std::string>{"/proc/sys/kernel/pid_max",
                                                     "/proc/sys/user/max_cgroup_namespaces"}));
  EXPECT_TRUE(find_shortfalls(thousand_workers(), values).empty());
}

// This machine's values read, and what corrald would say here of 10,000 workers (printed).
TEST(MachineLimits, ThisMachinesValuesRead) {
  MachineValues values = read_machine_values();
  EXPECT_TRUE(values.unread.empty()) << values.unread.front();
  EXPECT_TRUE(values.pid_max && values.threads_max && values.tasks_now && values.nr_open &&
              values.file_max && values.files_now && values.descriptors_soft &&
              values.memory_available_bytes);
  EXPECT_EQ(values.namespaces.size(), 7u);
  EXPECT_GT(*values.tasks_now, 0u);
  EXPECT_GT(*values.memory_available_bytes, 0u);
  if (values.cgroup != CgroupLayout::none) {
    EXPECT_TRUE(values.memory_cgroups_now);
  }

  MachineLimitsNeed need;
  need.workers = 10'000;
  need.memory_budget_bytes = need.workers * (512 << 10);
  auto found = find_shortfalls(need, values);
  std::cout << "cgroup layout: "
            << (values.cgroup == CgroupLayout::v2   ? "v2"
                : values.cgroup == CgroupLayout::v1 ? "v1"
                                                    : "none")
            << "; pid_max " << *values.pid_max << ", threads-max " << *values.threads_max
            << ", threads now " << *values.tasks_now << ", nr_open " << *values.nr_open
            << ", file-max " << *values.file_max << ", files now " << *values.files_now
            << ", RLIMIT_NOFILE " << *values.descriptors_soft << "/"
            << values.descriptors_hard.value_or(0) << ", memory cgroups now "
            << values.memory_cgroups_now.value_or(0) << ", pids limits above corrald "
            << values.pids_limits.size() << ", MemAvailable "
            << (*values.memory_available_bytes >> 20) << " MiB\n"
            << "findings for 10000 workers on this machine: " << found.size() << "\n"
            << all_messages(found);
}

TEST(DescriptorRaise, RaisesTheSoftLimitToWhatIsNeeded) {
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  ASSERT_GT(original.rlim_max, 512u);
  rlimit low{256, original.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  DescriptorRaise raise = raise_descriptor_limit_for(400);
  EXPECT_EQ(raise.before.rlim_cur, 256u);
  EXPECT_EQ(raise.after.rlim_cur, 400u);
  EXPECT_EQ(raise.after.rlim_max, original.rlim_max);
  rlimit now{};
  getrlimit(RLIMIT_NOFILE, &now);
  EXPECT_EQ(now.rlim_cur, 400u);
  EXPECT_NE(raise.report.find("to the 400 descriptors needed"), std::string::npos) << raise.report;
  std::cout << raise.report << "\n";

  raise = raise_descriptor_limit_for(300);  // already enough: nothing lowered
  EXPECT_EQ(raise.after.rlim_cur, 400u);
  EXPECT_NE(raise.report.find("covers the 300 descriptors needed"), std::string::npos);
  setrlimit(RLIMIT_NOFILE, &original);
}

bool has_cap_sys_resource() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return data[CAP_SYS_RESOURCE / 32].effective & (1u << (CAP_SYS_RESOURCE % 32));
}

TEST(DescriptorRaise, WithCapSysResourceRaisesTheHardLimitToo) {
  // Without it the hard limit lowered here could not be restored for the tests after this one.
  if (!has_cap_sys_resource()) {
    GTEST_SKIP() << "this process lacks CAP_SYS_RESOURCE (root in a container may): the hard "
                    "limit cannot be raised here";
  }
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  std::ifstream nr_open_file("/proc/sys/fs/nr_open");
  uint64_t nr_open = 0;
  nr_open_file >> nr_open;
  ASSERT_GT(nr_open, 4096u + 100);
  rlimit low{1024, 4096};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

  DescriptorRaise raise = raise_descriptor_limit_for(4096 + 100);
  EXPECT_EQ(raise.after.rlim_cur, 4196u);
  EXPECT_EQ(raise.after.rlim_max, 4196u);
  EXPECT_NE(raise.report.find("the hard limit too (corrald has CAP_SYS_RESOURCE)"),
            std::string::npos)
      << raise.report;
  std::cout << raise.report << "\n";

  // Never past fs.nr_open, and said so with the sysctl to raise.
  raise = raise_descriptor_limit_for(nr_open + 10);
  EXPECT_EQ(raise.after.rlim_max, nr_open);
  EXPECT_NE(raise.report.find("sysctl -w fs.nr_open=" + std::to_string(nr_open + 10)),
            std::string::npos)
      << raise.report;
  std::cout << raise.report << "\n";
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
}

TEST(DescriptorRaise, WithoutCapSysResourceReportsTheSettingToRaise) {
  // In a child, which drops CAP_SYS_RESOURCE from its own sets and tries.
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capget, &header, data) != 0) _exit(10);
    data[CAP_SYS_RESOURCE / 32].effective &= ~(1u << (CAP_SYS_RESOURCE % 32));
    data[CAP_SYS_RESOURCE / 32].permitted &= ~(1u << (CAP_SYS_RESOURCE % 32));
    if (syscall(SYS_capset, &header, data) != 0) _exit(11);
    rlimit low{1024, 2048};
    if (setrlimit(RLIMIT_NOFILE, &low) != 0) _exit(12);
    DescriptorRaise raise = raise_descriptor_limit_for(3000);
    std::cout << raise.report << std::endl;
    if (raise.after.rlim_cur != 2048 || raise.after.rlim_max != 2048) _exit(13);
    if (raise.report.find("lacks CAP_SYS_RESOURCE") == std::string::npos) _exit(14);
    if (raise.report.find("LimitNOFILE=3000") == std::string::npos) _exit(15);
    if (raise.report.find("ulimit -n 3000") == std::string::npos) _exit(16);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: capget, 11: capset, 12: setrlimit, 13: limits "
                                       "changed, 14-16: the report lacks what to do";
}

}  // namespace
}  // namespace corral
