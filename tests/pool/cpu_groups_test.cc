// Tenants' CPU groups (docs/jail.md, "CPU shares between tenants"): each worker's CPU cgroup sits
// in its tenant's group, so that a tenant weighs as one for the CPU scheduler however many
// workers it runs; a spare bound to a tenant moves into that tenant's group with its CPU ceiling
// intact; a group goes with the tenant's last worker.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "jail/cgroup.h"
#include "pool/jail_setup.h"
#include "pool/tenant_pool.h"
#include "pool/worker_process.h"

namespace corral {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The pids of the processes in the cgroups directly below `group` (the workers' CPU cgroups).
std::vector<pid_t> pids_below(const fs::path& group) {
  std::vector<pid_t> pids;
  std::error_code error;
  for (const auto& leaf : fs::directory_iterator(group, error)) {
    if (!leaf.is_directory()) continue;
    std::stringstream procs(read_text(leaf.path() / "cgroup.procs"));
    for (pid_t pid; procs >> pid;) pids.push_back(pid);
  }
  return pids;
}

// The children of this test process (its workers), each with its CPU cgroup's path.
std::map<pid_t, std::string> workers_cpu_cgroups() {
  std::map<pid_t, std::string> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    pid_t pid = static_cast<pid_t>(std::atoi(entry.path().filename().c_str()));
    if (pid <= 0) continue;
    std::string stat = read_text(entry.path() / "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t parent;
    rest >> state >> parent;
    if (parent != getpid()) continue;
    found[pid] = jail::cgroup_path_in(read_text(entry.path() / "cgroup"),
                                      fs::exists("/sys/fs/cgroup/cgroup.controllers") ? "" : "cpu");
  }
  return found;
}

InvocationRequest request_for(const std::string& tenant, const std::string& source) {
  InvocationRequest request;
  request.invocation_id = new_invocation_id();
  request.tenant = tenant;
  request.source = source;
  request.input = nlohmann::json::object();
  request.limits = LimitsPolicy{}.resolve(nlohmann::json::object());
  return request;
}

TEST(TenantCpuGroups, EachTenantsWorkersShareOneGroupAndABoundSpareJoinsIt) {
  JailSetup jail(JailSetup::accept_any_missing());
  if (!jail.active().has(jail::Layer::cgroup) || jail.cgroups() == nullptr)
    GTEST_SKIP() << "no cgroup layer on this machine: workers have no CPU cgroup to group";
  ASSERT_TRUE(workers_cpu_cgroups().empty()) << "the test must start with no child process";
  fs::path group_a = jail.cgroups()->tenant_group_directory("a");
  fs::path group_b = jail.cgroups()->tenant_group_directory("b");
  ASSERT_NE(group_a, group_b);
  {
    TenantPool pool(
        {.max_workers = 6, .warm_per_tenant = 0, .max_idle = 6, .spare_workers = 1},
        [&](const std::string& tenant) {
          return std::make_unique<WorkerProcess>(jail.spec_for(CORRAL_WORKER_PATH, tenant));
        });
    // Two runs of a at once need two workers of a.
    std::thread slow([&] {
      EXPECT_EQ(pool.run(request_for("a",
                                     "function handle() local t = os.clock() "
                                     "while os.clock() - t < 0.3 do end end"))
                    .outcome,
                Outcome::ok);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(pool.run(request_for("a", "function handle() return 1 end")).outcome, Outcome::ok);
    slow.join();
    // b has no worker: its run takes a spare, which is moved into b's group.
    for (int wait = 0; wait < 500 && pool.stats().spare == 0; ++wait)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_GE(pool.stats().spare, 1u) << "the pool keeps a spare";
    uint64_t bound_before_b = pool.stats().bound;
    EXPECT_EQ(pool.run(request_for("b", "function handle() return 1 end")).outcome, Outcome::ok);
    EXPECT_EQ(pool.stats().bound, bound_before_b + 1) << "b's run was served by the spare";

    std::vector<pid_t> in_a = pids_below(group_a);
    std::vector<pid_t> in_b = pids_below(group_b);
    EXPECT_EQ(in_a.size(), 2u) << "a's two workers are in a's group";
    EXPECT_EQ(in_b.size(), 1u) << "the spare b took is in b's group";
    // Seen from each worker: its CPU cgroup is a leaf of its tenant's group.
    std::map<pid_t, std::string> cpu_cgroups = workers_cpu_cgroups();
    for (pid_t pid : in_a) {
      ASSERT_TRUE(cpu_cgroups.count(pid));
      EXPECT_EQ(fs::path(cpu_cgroups[pid]).parent_path().filename(), group_a.filename());
    }
    for (pid_t pid : in_b) {
      ASSERT_TRUE(cpu_cgroups.count(pid));
      EXPECT_EQ(fs::path(cpu_cgroups[pid]).parent_path().filename(), group_b.filename());
    }
    // The moved spare keeps the worker's own CPU ceiling (100% of one CPU by default).
    for (const auto& leaf : fs::directory_iterator(group_b)) {
      if (!leaf.is_directory()) continue;
      std::string ceiling = fs::exists(leaf.path() / "cpu.max")
                                ? read_text(leaf.path() / "cpu.max")
                                : read_text(leaf.path() / "cpu.cfs_quota_us");
      EXPECT_EQ(ceiling.substr(0, ceiling.find_first_of(" \n")), "100000") << leaf.path();
    }
  }
  EXPECT_FALSE(fs::exists(group_a)) << "a's group goes with a's last worker";
  EXPECT_FALSE(fs::exists(group_b));
}

TEST(TenantCpuGroups, TwoTenantsWhoseNamesLookAlikeGetTwoGroups) {
  JailSetup jail(JailSetup::accept_any_missing());
  if (jail.cgroups() == nullptr) GTEST_SKIP() << "no cgroup layer on this machine";
  EXPECT_NE(jail.cgroups()->tenant_group_directory("acme.eu"),
            jail.cgroups()->tenant_group_directory("acme_eu"));
  EXPECT_NE(jail.cgroups()->tenant_group_directory(std::string(60, 'x') + "1"),
            jail.cgroups()->tenant_group_directory(std::string(60, 'x') + "2"));
}

}  // namespace
}  // namespace corral
