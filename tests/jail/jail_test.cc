// One test per jail step, showing it in force from inside a jailed process (jail_probe, which
// jails itself exactly as corral-worker does), and the forbidden actions of a compromised
// worker stopped by each layer on its own where the layer can stand alone.
#include "jail/jail.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/keyctl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "jail/cgroup.h"
#include "jail_probe.h"
#include "pool/frame.h"
#include "pool/jail_setup.h"

namespace corral::jail {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

bool machine_has(Layer layer) {
  static const auto statuses = probe_machine();
  for (const auto& status : statuses) {
    if (status.layer == layer) return status.available;
  }
  return false;
}

#define REQUIRE_MACHINE_LAYER(layer)                                                      \
  do {                                                                                    \
    if (!machine_has(layer))                                                              \
      GTEST_SKIP() << "this machine cannot provide the " << to_string(layer) << " layer"; \
  } while (0)

// A jailed probe process; the test plays the supervisor.
class Probe {
 public:
  Probe(LayerSet layers, const std::string& probe, long target = 0,
        CgroupManager* cgroups = nullptr, Ceilings ceilings = {}, uid_t outside_id = 65534,
        std::vector<std::string> extra_arguments = {}, int network_namespace_fd = -1) {
    int executable = open(JAIL_PROBE_PATH, O_PATH | O_CLOEXEC);
    int ends[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    SpawnRequest request;
    request.executable_fd = executable;
    request.argv = {JAIL_PROBE_PATH, "--probe=" + probe, "--target=" + std::to_string(target)};
    bool shared_network = network_namespace_fd >= 0;
    for (auto& argument : to_arguments({layers, ceilings, shared_network}))
      request.argv.push_back(argument);
    request.argv.insert(request.argv.end(), extra_arguments.begin(), extra_arguments.end());
    request.network_namespace_fd = network_namespace_fd;
    request.channel_fd = ends[1];
    request.layers = layers;
    request.outside_uid = outside_id;
    request.outside_gid = outside_id;
    if (cgroups) {
      cgroups_ = cgroups;
      worker_cgroups_ = cgroups->create("probe");
      request.cgroups = worker_cgroups_;
    }
    Spawned spawned = spawn_jailed(request);
    pid_ = spawned.pid;
    pidfd_ = spawned.pidfd;
    close(ends[1]);
    close(executable);
    channel_ = ends[0];
  }
  ~Probe() {
    finish();
    if (cgroups_) cgroups_->destroy(worker_cgroups_);
  }

  pid_t pid() const { return pid_; }
  WorkerCgroups* cgroups() const { return worker_cgroups_; }

  // Reads the probe's frames until it exits; returns its report or its violation.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (hold_) shutdown(channel_, SHUT_WR);
    FrameDecoder& decoder = early_;  // what first_report() read but did not use
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      pollfd ready{channel_, POLLIN, 0};
      if (poll(&ready, 1, 100) > 0) {
        char chunk[65536];
        ssize_t n = read(channel_, chunk, sizeof chunk);
        if (n <= 0) break;
        decoder.append(std::string_view(chunk, static_cast<size_t>(n)));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
        ADD_FAILURE() << "the probe did not finish";
        break;
      }
    }
    while (auto frame = decoder.next()) {
      if (frame->type == FrameType::violation) violation_ = syscall_name(std::stol(frame->payload));
      if (frame->type == FrameType::result) report_ = json::parse(frame->payload);
    }
    siginfo_t info{};
    waitid(P_PIDFD, static_cast<id_t>(pidfd_), &info, WEXITED);
    exited_ = info.si_code == CLD_EXITED;
    status_ = info.si_status;
    close(pidfd_);
    close(channel_);
  }
  void hold() { hold_ = true; }

  // The first report of a probe that goes on running (add_tenant_key); then hold() applies.
  json first_report() {
    hold_ = true;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      while (auto frame = early_.next()) {
        if (frame->type == FrameType::result) return json::parse(frame->payload);
      }
      pollfd ready{channel_, POLLIN, 0};
      if (poll(&ready, 1, 100) <= 0) continue;
      char chunk[65536];
      ssize_t n = read(channel_, chunk, sizeof chunk);
      if (n <= 0) break;
      early_.append(std::string_view(chunk, static_cast<size_t>(n)));
    }
    ADD_FAILURE() << "the probe sent no report";
    return json::object();
  }

  json& report() {
    finish();
    return report_;
  }  // missing keys read as null, not an assertion
  const std::string& violation() {
    finish();
    return violation_;
  }
  bool killed_by(int signal) {
    finish();
    return !exited_ && status_ == signal;
  }
  int exit_status() {
    finish();
    return exited_ ? status_ : -1;
  }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int channel_ = -1;
  bool finished_ = false, hold_ = false, exited_ = false;
  int status_ = 0;
  json report_ = json::object();
  std::string violation_;
  FrameDecoder early_;
  CgroupManager* cgroups_ = nullptr;
  WorkerCgroups* worker_cgroups_ = nullptr;
};

LayerSet only(std::initializer_list<Layer> layers) {
  LayerSet set;
  for (Layer layer : layers) set.add(layer);
  return set;
}

// An attempt stopped with this errno, in the probe's report.
void expect_refused(Probe& probe, const std::string& error) {
  EXPECT_EQ(probe.report().value("succeeded", true), false) << probe.report() << probe.violation();
  EXPECT_EQ(probe.report().value("errno", ""), error) << probe.report();
}

void expect_violation(Probe& probe, const std::string& syscall) {
  EXPECT_EQ(probe.violation(), syscall) << probe.report();
  EXPECT_EQ(probe.exit_status(), kViolationExitStatus);
  EXPECT_FALSE(probe.report().contains("succeeded")) << "the action ran: " << probe.report();
}

std::string namespace_of(pid_t pid, const char* kind) {
  return fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/" + kind).string();
}

// ---- each step in force, seen from inside ----------------------------------------------

TEST(JailStep1Namespaces, RootInsideIsNobodyOutsideInNewNamespaces) {
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  Probe probe(only({Layer::namespaces}), "hold");
  probe.hold();
  std::string status = read_text("/proc/" + std::to_string(probe.pid()) + "/status");
  EXPECT_NE(status.find("Uid:\t65534\t65534\t65534\t65534"), std::string::npos) << status;
  EXPECT_NE(status.find("Gid:\t65534\t65534\t65534\t65534"), std::string::npos) << status;
  EXPECT_EQ(read_text("/proc/" + std::to_string(probe.pid()) + "/setgroups"), "deny\n");
  EXPECT_NE(read_text("/proc/" + std::to_string(probe.pid()) + "/uid_map").find("65534"),
            std::string::npos);
  for (const char* kind : {"user", "pid", "mnt", "net", "ipc", "uts", "cgroup"}) {
    EXPECT_NE(namespace_of(probe.pid(), kind), namespace_of(getpid(), kind)) << kind;
  }
  probe.finish();
  Probe inside(only({Layer::namespaces}), "facts");
  EXPECT_EQ(inside.report()["uid"], 0);
  EXPECT_EQ(inside.report()["pid"], 1);
}

// ---- the network namespace workers share (docs/jail.md, "What workers share") -------------

// A probe in the shared network namespace, with only the given layers.
struct SharedNetworkProbe : Probe {
  SharedNetworkProbe(const SharedNetwork& network, LayerSet layers, const std::string& probe,
                     long target = 0)
      : Probe(layers, probe, target, nullptr, {}, 65534, {}, network.fd()) {}
};

std::unique_ptr<SharedNetwork> shared_network_or_why(std::string& why) {
  try {
    return SharedNetwork::create();
  } catch (const std::exception& error) {
    why = error.what();
    return nullptr;
  }
}

#define REQUIRE_SHARED_NETWORK(network)                 \
  REQUIRE_MACHINE_LAYER(Layer::namespaces);             \
  std::string why_not_shared;                           \
  auto network = shared_network_or_why(why_not_shared); \
  if (!network)                                         \
  GTEST_SKIP() << "this machine cannot give workers a shared network namespace: " << why_not_shared

TEST(JailSharedNetwork, WorkersJoinOneNamespaceOfTheHostsWithNoInterfaceUp) {
  REQUIRE_SHARED_NETWORK(network);
  SharedNetworkProbe first(*network, only({Layer::namespaces}), "hold");
  SharedNetworkProbe second(*network, only({Layer::namespaces}), "hold");
  first.hold();
  second.hold();
  EXPECT_EQ(namespace_of(first.pid(), "net"), namespace_of(second.pid(), "net"));
  EXPECT_NE(namespace_of(first.pid(), "net"), namespace_of(getpid(), "net"));
  // Everything else stays each worker's own.
  for (const char* kind : {"user", "pid", "mnt", "ipc", "uts", "cgroup"})
    EXPECT_NE(namespace_of(first.pid(), kind), namespace_of(second.pid(), kind)) << kind;
  first.finish();
  second.finish();
  SharedNetworkProbe facts(*network, only({Layer::namespaces, Layer::network}), "facts");
  EXPECT_EQ(facts.report()["interfaces_up"], json::array()) << facts.report();
}

// A worker is root of its own user namespace until the capabilities step; in a network namespace
// of its own it could bring loopback up. The shared one belongs to the host's user namespace, so
// the namespaces layer alone refuses it.
TEST(JailSharedNetwork, NoWorkerCanRaiseAnInterfaceWithTheNamespacesLayerAlone) {
  REQUIRE_SHARED_NETWORK(network);
  {
    Probe own(only({Layer::namespaces}), "raise_loopback");
    ASSERT_EQ(own.report()["succeeded"], true)
        << "in a network namespace of its own the attack must succeed: " << own.report();
  }
  SharedNetworkProbe shared(*network, only({Layer::namespaces}), "raise_loopback");
  expect_refused(shared, "EPERM");
  SharedNetworkProbe after(*network, only({Layer::namespaces, Layer::network}), "facts");
  EXPECT_EQ(after.report()["interfaces_up"], json::array()) << after.report();
}

// An abstract unix socket's name lives in the network namespace: in a shared one, a worker could
// connect to a socket another worker bound. The namespaces layer scopes them (Landlock), and the
// seccomp layer alone refuses the socket.
TEST(JailSharedNetwork, NoWorkerReachesAnotherWorkersAbstractSocket) {
  long name = getpid();
  {
    Probe listener(LayerSet::none(), "listen_abstract", name);
    json listening = listener.first_report();
    ASSERT_EQ(listening["listen"]["succeeded"], true) << listening;
    Probe connector(LayerSet::none(), "connect_abstract", name);
    ASSERT_EQ(connector.report()["succeeded"], true)
        << "two processes in one network namespace must reach each other without the jail: "
        << connector.report();
  }
  REQUIRE_SHARED_NETWORK(network);
  SharedNetworkProbe listener(*network, only({Layer::namespaces}), "listen_abstract", name + 1);
  json listening = listener.first_report();
  ASSERT_EQ(listening["listen"]["succeeded"], true) << listening;
  SharedNetworkProbe connector(*network, only({Layer::namespaces}), "connect_abstract", name + 1);
  expect_refused(connector, "EPERM");
  if (machine_has(Layer::seccomp)) {
    SharedNetworkProbe filtered(*network, only({Layer::seccomp}), "connect_abstract", name + 1);
    expect_violation(filtered, "socket");
  }
}

// The child runs in the supervisor's memory until it execs (spawn.cc): one that fails there must
// still report the step and the cause, leave the supervisor intact, and let the next spawn work.
TEST(JailSpawn, AWorkerThatCannotBeExecutedIsNamedAndTheNextSpawnWorks) {
  std::vector<LayerSet> layer_sets = {LayerSet::none()};
  if (machine_has(Layer::namespaces)) layer_sets.push_back(only({Layer::namespaces}));
  fs::path not_a_program =
      fs::temp_directory_path() / ("corral-not-a-program-" + std::to_string(getpid()));
  std::ofstream(not_a_program) << "not a program\n";
  fs::permissions(not_a_program, fs::perms::owner_read | fs::perms::owner_write |
                                     fs::perms::group_read | fs::perms::others_read);
  for (const LayerSet& layers : layer_sets) {
    SCOPED_TRACE(layers.to_string());
    int executable = open(not_a_program.c_str(), O_PATH | O_CLOEXEC);
    ASSERT_GE(executable, 0);
    int ends[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    SpawnRequest request;
    request.executable_fd = executable;
    request.argv = {not_a_program.string()};
    request.channel_fd = ends[1];
    request.layers = layers;
    std::string error;
    try {
      spawn_jailed(request);
    } catch (const std::runtime_error& failure) {
      error = failure.what();
    }
    EXPECT_NE(error.find("the new worker failed executing the worker binary: Permission denied"),
              std::string::npos)
        << error;
    close(executable);
    close(ends[0]);
    close(ends[1]);
    Probe after(layers, "facts");
    EXPECT_EQ(after.report()["pid"], layers.has(Layer::namespaces) ? 1 : after.pid());
  }
  fs::remove(not_a_program);
}

// The parent-death signal is set by the spawn, before the exec, whatever the layers: a worker
// that set it only in its process step would outlive a supervisor that died while it started,
// and run the invocation already waiting in its channel (tests/api/supervisor_death_test.cc).
// In new namespaces it is set after the ids change (which clears it) and survives the exec.
TEST(JailSpawn, EveryWorkerDiesWithItsSupervisorFromBeforeItsExec) {
  std::vector<LayerSet> layer_sets = {LayerSet::none()};
  if (machine_has(Layer::namespaces)) layer_sets.push_back(only({Layer::namespaces}));
  for (const LayerSet& layers : layer_sets) {
    SCOPED_TRACE(layers.to_string());
    Probe probe(layers, "facts");
    EXPECT_EQ(probe.report()["pdeathsig"], SIGKILL) << probe.report();
  }
}

TEST(JailStep2Filesystem, RootIsEmptyReadOnlyWithoutProcOrDev) {
  REQUIRE_MACHINE_LAYER(Layer::filesystem);
  Probe probe(only({Layer::namespaces, Layer::filesystem}), "facts");
  EXPECT_EQ(probe.report()["root"], json::array()) << probe.report();
  EXPECT_EQ(probe.report()["proc_exists"], false);
  EXPECT_EQ(probe.report()["dev_exists"], false);
  EXPECT_EQ(probe.report()["mkdir_in_root"]["errno"], "EROFS");
}

TEST(JailStep3Network, NoInterfaceIsUp) {
  REQUIRE_MACHINE_LAYER(Layer::network);
  Probe probe(only({Layer::namespaces, Layer::network}), "facts");
  EXPECT_EQ(probe.report()["interfaces_up"], json::array()) << probe.report();
}

TEST(JailStep4Rlimits, CeilingsAreSet) {
  Ceilings ceilings;
  ceilings.cpu_seconds = 7;
  ceilings.address_space_bytes = 3ll << 30;
  Probe probe(only({Layer::rlimits}), "facts", 0, nullptr, ceilings);
  json limits = probe.report().value("rlimits", json::object());
  EXPECT_EQ(limits["cpu"], 7) << limits;
  EXPECT_EQ(limits["nproc"], 0);
  EXPECT_EQ(limits["fsize"], 0);
  EXPECT_EQ(limits["nofile"], kDescriptorLimit);
  EXPECT_EQ(limits["core"], 0);
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_EQ(limits["as"], 3ll << 30);
#endif
}

class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!machine_has(Layer::cgroup)) GTEST_SKIP() << "this machine delegates no cgroups to corral";
    Ceilings ceilings;
    ceilings.cgroup_memory_bytes = 96ll << 20;
    manager_ = std::make_unique<CgroupManager>(ProbeOptions{}, ceilings);
  }
  std::unique_ptr<CgroupManager> manager_;
};

TEST_F(CgroupTest, JailStep5WorkerRunsInItsOwnLimitedCgroup) {
  Probe probe(only({Layer::cgroup}), "hold", 0, manager_.get());
  probe.hold();
  std::string membership = read_text("/proc/" + std::to_string(probe.pid()) + "/cgroup");
  ASSERT_FALSE(probe.cgroups()->directories.empty());
  for (const auto& directory : probe.cgroups()->directories) {
    std::string leaf = fs::path(directory).filename().string();
    EXPECT_NE(membership.find(leaf), std::string::npos) << membership << " lacks " << leaf;
    if (fs::exists(fs::path(directory) / "memory.limit_in_bytes")) {
      EXPECT_EQ(std::stoll(read_text(fs::path(directory) / "memory.limit_in_bytes")), 96ll << 20);
    }
    if (fs::exists(fs::path(directory) / "memory.max")) {
      EXPECT_EQ(std::stoll(read_text(fs::path(directory) / "memory.max")), 96ll << 20);
    }
    if (fs::exists(fs::path(directory) / "pids.max")) {
      EXPECT_EQ(read_text(fs::path(directory) / "pids.max"), "1\n");
    }
  }
}

// cgroup v1: the supervisor's threads are one group beside the workers' cgroups (as under v2),
// weighted against each tenant's group, so that neither busy supervisor threads starve every
// worker nor one tenant's CPU-bound workers starve the supervisor's threads; and they go home
// when the manager goes, leaving nothing behind.
TEST_F(CgroupTest, TheSupervisorsThreadsAreAGroupBesideTheWorkers) {
  if (!fs::exists("/sys/fs/cgroup/cpu/cgroup.procs"))
    GTEST_SKIP() << "no cgroup v1 cpu controller: under v2 corrald's leaf is made by cgroup2.cc";
  auto cpu_cgroup = [] {
    return fs::path("/sys/fs/cgroup/cpu") / fs::path(jail::own_cgroup_path("cpu")).relative_path();
  };
  fs::path parent;
  {
    Probe probe(only({Layer::cgroup}), "hold", 0, manager_.get());
    probe.hold();
    fs::path supervisor = cpu_cgroup();
    EXPECT_EQ(supervisor.filename(), "corrald");
    EXPECT_EQ(std::stoll(read_text(supervisor / "cpu.shares")), 4 * 1024);
    fs::path worker_cpu;
    for (const auto& directory : probe.cgroups()->directories)
      if (fs::exists(fs::path(directory) / "cpu.shares")) worker_cpu = directory;
    ASSERT_FALSE(worker_cpu.empty());
    EXPECT_EQ(worker_cpu.parent_path(), supervisor.parent_path())
        << "a spare's CPU cgroup is a sibling of the supervisor's group";
    parent = supervisor.parent_path();
  }
  manager_.reset();
  EXPECT_NE(cpu_cgroup().filename(), "corrald") << "the supervisor's threads went home";
  EXPECT_FALSE(fs::exists(parent)) << "the manager's tree is gone";
}

TEST(JailStep6Process, OnlyTheChannelNoEnvironmentOwnSessionNotDumpable) {
  Probe probe(only({Layer::process}), "facts");
  EXPECT_EQ(probe.report()["open_descriptors"], json::array({kChannelFd})) << probe.report();
  EXPECT_EQ(probe.report()["environment_variables"], 0);
  EXPECT_EQ(probe.report()["session_leader"], true);
  EXPECT_EQ(probe.report()["dumpable"], 0);
}

TEST(JailStep7Capabilities, EverySetIsEmptyAndNoNewPrivs) {
  Probe probe(only({Layer::capabilities}), "facts");
  json caps = probe.report()["capabilities"];
  EXPECT_EQ(caps["effective"], 0) << caps;
  EXPECT_EQ(caps["permitted"], 0);
  EXPECT_EQ(caps["inheritable"], 0);
  EXPECT_EQ(caps["bounding_any"], false);
  EXPECT_EQ(caps["ambient_any"], false);
  EXPECT_EQ(caps["no_new_privs"], 1);
}

TEST(JailStep8Seccomp, AnySyscallOffTheListKillsAndIsNamed) {
  REQUIRE_MACHINE_LAYER(Layer::seccomp);
  Probe probe(only({Layer::seccomp}), "harmless_syscall");
  expect_violation(probe, "getppid");
}

// A kernel without i386 emulation (CONFIG_IA32_EMULATION off, or ia32_emulation=0 at boot)
// answers int 0x80 with SIGSEGV before any filter sees it: such a call is refused already, and
// the probe exits with kProbeExitKernelRefusedI386.
bool kernel_runs_i386_calls() {
  Probe unjailed(LayerSet::none(), "i386_syscall");
  return unjailed.exit_status() != kProbeExitKernelRefusedI386;
}

TEST(JailStep8Seccomp, OtherArchitecturesAreRefused) {
  REQUIRE_MACHINE_LAYER(Layer::seccomp);
  bool i386_runs = kernel_runs_i386_calls();
  for (const char* attempt : {"x32_syscall", "i386_syscall"}) {
    Probe probe(only({Layer::seccomp}), attempt);
    EXPECT_FALSE(probe.report().contains("succeeded")) << attempt << " ran: " << probe.report();
    if (std::string_view(attempt) == "i386_syscall" && !i386_runs) {
      EXPECT_EQ(probe.exit_status(), kProbeExitKernelRefusedI386)
          << "this kernel has no i386 emulation: " << probe.report();
      continue;
    }
    EXPECT_TRUE(probe.killed_by(SIGSYS) || !probe.violation().empty())
        << attempt << ": " << probe.report();
  }
}

TEST(JailAllLayers, EveryStepHoldsAtOnce) {
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  LayerSet layers = LayerSet::all().remove(Layer::cgroup).remove(Layer::seccomp);
  Probe probe(layers, "facts");
  json report = probe.report();
  EXPECT_EQ(report["root"], json::array()) << report;
  EXPECT_EQ(report["interfaces_up"], json::array());
  EXPECT_EQ(report["open_descriptors"], json::array({kChannelFd}));
  EXPECT_EQ(report["capabilities"]["effective"], 0);
  EXPECT_EQ(report["rlimits"]["nproc"], 0);
}

// ---- a compromised worker's attempts, each stopped by one layer alone ------------------

class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(fd_, 4);
    socklen_t length = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(JailAttack, OpenAFile) {
  {
    Probe unjailed(LayerSet::none(), "open_file");
    ASSERT_EQ(unjailed.report()["succeeded"], true) << "the probe itself must be able to succeed";
  }
  if (machine_has(Layer::filesystem)) {
    Probe probe(only({Layer::namespaces, Layer::filesystem}), "open_file");
    expect_refused(probe, "ENOENT");
  }
  if (machine_has(Layer::seccomp)) {
    Probe probe(only({Layer::seccomp}), "open_file");
    expect_violation(probe, "openat");
  }
}

TEST(JailAttack, ConnectASocket) {
  Listener listener;
  {
    Probe unjailed(LayerSet::none(), "connect_socket", listener.port());
    ASSERT_EQ(unjailed.report()["succeeded"], true) << unjailed.report();
  }
  if (machine_has(Layer::network)) {
    Probe probe(only({Layer::namespaces, Layer::network}), "connect_socket", listener.port());
    expect_refused(probe, "ENETUNREACH");
  }
  if (machine_has(Layer::seccomp)) {
    Probe probe(only({Layer::seccomp}), "connect_socket", listener.port());
    expect_violation(probe, "socket");
  }
}

TEST(JailAttack, Fork) {
  {
    Probe unjailed(LayerSet::none(), "fork");
    ASSERT_EQ(unjailed.report()["succeeded"], true);
  }
  if (machine_has(Layer::namespaces)) {
    // RLIMIT_NPROC binds only without CAP_SYS_RESOURCE in the initial namespace: with the
    // worker's root mapped to nobody it does.
    Probe probe(only({Layer::namespaces, Layer::rlimits}), "fork");
    expect_refused(probe, "EAGAIN");
  }
  if (machine_has(Layer::seccomp)) {
    Probe probe(only({Layer::seccomp}), "fork");
    expect_violation(probe, "clone");
  }
}

TEST_F(CgroupTest, ForkIsStoppedByPidsLimitAlone) {
  Probe probe(only({Layer::cgroup}), "fork", 0, manager_.get());
  expect_refused(probe, "EAGAIN");
}

TEST(JailAttack, PtraceAnotherProcess) {
  pid_t victim = fork();
  if (victim == 0) {
    pause();
    _exit(0);
  }
  if (machine_has(Layer::namespaces)) {
    Probe probe(only({Layer::namespaces}), "ptrace", victim);
    expect_refused(probe, "ESRCH");  // the victim is not even visible
  }
  if (machine_has(Layer::seccomp)) {
    Probe probe(only({Layer::seccomp}), "ptrace", victim);
    expect_violation(probe, "ptrace");
  }
  kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
}

TEST(JailAttack, RaiseACapability) {
  {
    Probe probe(only({Layer::capabilities}), "raise_capability");
    expect_refused(probe, "EPERM");
  }
  if (machine_has(Layer::seccomp)) {
    Probe probe(only({Layer::seccomp}), "raise_capability");
    expect_violation(probe, "capset");
  }
}

TEST(JailAttack, WriteProc) {
  if (machine_has(Layer::filesystem)) {
    Probe probe(only({Layer::namespaces, Layer::filesystem}), "write_proc");
    expect_refused(probe, "ENOENT");
  }
  if (machine_has(Layer::seccomp)) {
    Probe probe(only({Layer::seccomp}), "write_proc");
    expect_violation(probe, "openat");
  }
}

// ---- keyrings: none a worker can reach is shared with the host or another tenant -------

long keyctl(int operation, unsigned long a = 0, unsigned long b = 0, unsigned long c = 0) {
  return syscall(SYS_keyctl, operation, a, b, c, 0);
}

// The layers a worker gets on this machine with the seccomp layer off (and the cgroup layer,
// which needs a manager and has nothing to do with keys or namespaces).
LayerSet all_but_seccomp() {
  LayerSet layers;
  for (Layer layer : kAllLayers) {
    if (layer != Layer::seccomp && layer != Layer::cgroup && machine_has(layer)) layers.add(layer);
  }
  return layers;
}

void expect_key_out_of_reach(Probe& probe) {
  json report = probe.report();
  EXPECT_EQ(report["by_serial"].value("succeeded", true), false) << report;
  EXPECT_EQ(report["by_serial"].value("errno", ""), "EACCES") << report;
  EXPECT_EQ(report["by_search"].value("succeeded", true), false) << report;
}

// The test plays corrald: a key in its session keyring (a new one, named, so that the test
// leaves nothing in the keyring it was started with).
class HostKey : public ::testing::Test {
 protected:
  void SetUp() override {
    if (keyctl(KEYCTL_JOIN_SESSION_KEYRING,
               reinterpret_cast<unsigned long>("corral-jail-test-host")) < 0) {
      GTEST_SKIP() << "this kernel has no keyrings (keyctl: " << strerror(errno) << ")";
    }
    const char secret[] = "host-secret";
    serial_ = syscall(SYS_add_key, "user", "corral-host-key", secret, sizeof secret - 1,
                      KEY_SPEC_SESSION_KEYRING);
    ASSERT_GT(serial_, 0) << strerror(errno);
  }
  void TearDown() override {
    if (serial_ > 0) keyctl(KEYCTL_INVALIDATE, static_cast<unsigned long>(serial_));
  }
  long serial_ = -1;
};

// The keyring step (process layer) alone, with the namespaces layer that gives the worker an id
// other than corrald's; then every layer but seccomp.
TEST_F(HostKey, IsNeitherPossessedNorReadableByAWorker) {
  {
    Probe unjailed(LayerSet::none(), "read_host_key", serial_);
    ASSERT_EQ(unjailed.report()["by_search"]["read"]["payload"], "host-secret")
        << "the probe itself must be able to read the key: " << unjailed.report();
  }
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  for (LayerSet layers : {only({Layer::namespaces, Layer::process}), all_but_seccomp()}) {
    SCOPED_TRACE(layers.to_string());
    Probe probe(layers, "read_host_key", serial_);
    expect_key_out_of_reach(probe);
  }
}

// A key tenant A's worker made readable by its own uid: a worker of tenant B (another id, from
// the ids corrald hands out) can neither find nor read it; a second worker of A can read it,
// which shows the attempt can succeed.
TEST(JailKeyrings, ATenantsKeyIsOutOfReachOfAnotherTenantsWorker) {
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  if (keyctl(KEYCTL_GET_KEYRING_ID, static_cast<unsigned long>(KEY_SPEC_SESSION_KEYRING), 0) < 0 &&
      errno == ENOSYS) {
    GTEST_SKIP() << "this kernel has no keyrings";
  }
  WorkerIds ids{WorkerIdRange{}};
  for (LayerSet layers : {only({Layer::namespaces, Layer::process}), all_but_seccomp()}) {
    SCOPED_TRACE(layers.to_string());
    WorkerIds::Lease a = ids.lease("tenant-a"), b = ids.lease("tenant-b");
    Probe owner(layers, "add_tenant_key", 0, nullptr, {}, a->uid);
    json added = owner.first_report();
    ASSERT_EQ(added.value("succeeded", false), true) << added;
    ASSERT_EQ(added["setperm"].value("succeeded", false), true) << added;
    long serial = added["serial"];
    {
      Probe same_tenant(layers, "read_tenant_key", serial, nullptr, {}, a->uid);
      EXPECT_EQ(same_tenant.report()["by_serial"]["payload"], "tenant-a-data")
          << "the attempt must be able to succeed: " << same_tenant.report();
    }
    Probe other_tenant(layers, "read_tenant_key", serial, nullptr, {}, b->uid);
    expect_key_out_of_reach(other_tenant);
  }
}

// ---- no namespace of the worker's own making -------------------------------------------

const char* const kNamespaceKinds[] = {"mnt", "net", "ipc", "uts", "cgroup", "pid", "time", "user"};

void expect_no_namespace(Probe& probe) {
  json report = probe.report();
  for (const char* kind : kNamespaceKinds) {
    EXPECT_EQ(report[kind].value("succeeded", true), false) << kind << ": " << report;
  }
}

// With the seccomp layer off: every layer but seccomp; the namespace limits (namespaces layer)
// with the capabilities layer and no chroot; the chroot (filesystem layer) with the
// capabilities layer and no limits (the probe leaves them out, --without-namespace-limits);
// and the limits with the filesystem layer and no capabilities dropped (no /proc to raise them).
TEST(JailNesting, NoNamespaceCanBeCreated) {
  {
    Probe unjailed(LayerSet::none(), "unshare_each");
    for (const char* kind : {"mnt", "net", "user"})
      ASSERT_EQ(unjailed.report()[kind]["succeeded"], true) << kind << ": " << unjailed.report();
  }
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  for (LayerSet layers : {all_but_seccomp(), only({Layer::namespaces, Layer::capabilities}),
                          only({Layer::namespaces, Layer::filesystem})}) {
    SCOPED_TRACE(layers.to_string());
    Probe probe(layers, "unshare_each");
    expect_no_namespace(probe);
    if (!layers.has(Layer::capabilities)) {
      // Root of its user namespace with every capability: only the limits refuse.
      for (const char* kind : kNamespaceKinds)
        EXPECT_EQ(probe.report()[kind].value("errno", ""), "ENOSPC") << kind << probe.report();
    }
  }
  SCOPED_TRACE("chroot and capabilities, no limits");
  Probe chrooted(only({Layer::namespaces, Layer::filesystem, Layer::capabilities}), "unshare_each",
                 0, nullptr, {}, 65534, {"--without-namespace-limits"});
  expect_no_namespace(chrooted);
  EXPECT_EQ(chrooted.report()["user"].value("errno", ""), "EPERM") << chrooted.report();
}

// The limits are the worker's to lower, not to raise: with them alone (the namespaces layer)
// a worker raises them again through corrald's /proc and makes a user namespace, which shows
// the attempt works; the capabilities layer (no CAP_SYS_RESOURCE) or the filesystem layer (no
// /proc, and no procfs of its own) each stop it.
TEST(JailNesting, TheLimitsCannotBeRaisedAgain) {
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  {
    Probe limits_alone(only({Layer::namespaces}), "raise_namespace_limits");
    ASSERT_EQ(limits_alone.report()["unshare"]["succeeded"], true) << limits_alone.report();
  }
  for (LayerSet layers : {only({Layer::namespaces, Layer::capabilities}),
                          only({Layer::namespaces, Layer::filesystem}), all_but_seccomp()}) {
    SCOPED_TRACE(layers.to_string());
    Probe probe(layers, "raise_namespace_limits");
    json report = probe.report();
    EXPECT_EQ(report["write"].value("succeeded", true), false) << report;
    EXPECT_EQ(report["unshare"].value("succeeded", true), false) << report;
    if (layers.has(Layer::filesystem)) {
      EXPECT_EQ(report["mount_proc"].value("succeeded", true), false) << report;
    }
  }
}

// Where a worker could not lower its limits (a read-only /proc/sys, as containers mount it), the
// machine check says so, naming the file and the cause, so that corrald refuses to start
// rather than fail every worker's start.
TEST(JailNesting, LimitsThatCannotBeLoweredAreFoundAtStart) {
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  if (geteuid() != 0) GTEST_SKIP() << "making /proc/sys read-only in a mount namespace needs root";
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  pid_t child = fork();
  if (child == 0) {
    std::string seen;
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) ||
        mount("/proc/sys", "/proc/sys", nullptr, MS_BIND, nullptr) != 0 ||
        mount(nullptr, "/proc/sys", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      seen = std::string("setup failed: ") + strerror(errno);
    } else {
      for (const auto& status : probe_machine()) {
        if (status.layer == Layer::namespaces)
          seen = (status.available ? "available: " : "missing: ") + status.detail;
      }
    }
    (void)!write(report[1], seen.data(), seen.size());
    _exit(0);
  }
  close(report[1]);
  std::string seen;
  char chunk[4096];
  for (ssize_t n; (n = read(report[0], chunk, sizeof chunk)) > 0;) seen.append(chunk, n);
  close(report[0]);
  waitpid(child, nullptr, 0);
  if (seen.starts_with("setup failed")) GTEST_SKIP() << seen;
  EXPECT_TRUE(seen.starts_with("missing: cannot forbid new namespaces")) << seen;
  EXPECT_NE(seen.find("/proc/sys/user/max_user_namespaces"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Read-only file system"), std::string::npos) << seen;
}

// The limits are per user namespace: lowered in the host's, they would forbid namespaces to the
// whole machine. The step refuses wherever the user namespace maps every id to itself, as the
// host's does; shown in a throwaway namespace mapped that way, where a step that did not
// refuse would harm nothing.
TEST(JailNesting, TheLimitsAreNeverLoweredInAnIdentityMappedNamespace) {
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  if (geteuid() != 0) GTEST_SKIP() << "mapping every id into a user namespace needs root";
  int ready[2], mapped[2], report[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(mapped), 0);
  ASSERT_EQ(pipe(report), 0);
  pid_t child = fork();
  if (child == 0) {
    char go = 0;
    std::string seen = "contain did not refuse";
    if (unshare(CLONE_NEWUSER) != 0 || write(ready[1], "u", 1) != 1 || read(mapped[0], &go, 1) != 1)
      seen = std::string("setup failed: ") + strerror(errno);
    else if (go != 'm')
      seen = "setup failed: the parent could not map the ids";
    else {
      try {
        contain({only({Layer::namespaces}), {}});
      } catch (const std::exception& error) {
        seen = error.what();
      }
    }
    (void)!write(report[1], seen.data(), seen.size());
    _exit(0);
  }
  close(ready[1]);
  close(mapped[0]);
  close(report[1]);
  char unshared = 0;
  bool identity = false;
  if (read(ready[0], &unshared, 1) == 1) {
    std::string proc = "/proc/" + std::to_string(child);
    identity = std::ofstream(proc + "/uid_map") << "0 0 4294967295\n" &&
               std::ofstream(proc + "/gid_map") << "0 0 4294967295\n";
  }
  (void)!write(mapped[1], identity ? "m" : "x", 1);
  close(mapped[1]);
  std::string seen;
  char chunk[4096];
  for (ssize_t n; (n = read(report[0], chunk, sizeof chunk)) > 0;) seen.append(chunk, n);
  close(report[0]);
  close(ready[0]);
  waitpid(child, nullptr, 0);
  if (seen.starts_with("setup failed")) GTEST_SKIP() << seen;
  EXPECT_NE(seen.find("refusing to lower the namespace limits in the host's user namespace"),
            std::string::npos)
      << seen;
}

// The review's attack: a user and network namespace of its own, then nf_tables through netlink.
TEST(JailNesting, NetfilterIsOutOfReach) {
  {
    Probe unjailed(LayerSet::none(), "netfilter");
    if (unjailed.report()["socket"].value("succeeded", false) != true ||
        unjailed.report()["request"].value("succeeded", false) != true) {
      GTEST_SKIP() << "nf_tables cannot be reached through netlink on this machine, even as root: "
                   << unjailed.report();
    }
  }
  REQUIRE_MACHINE_LAYER(Layer::namespaces);
  for (LayerSet layers : {all_but_seccomp(), only({Layer::namespaces, Layer::capabilities})}) {
    SCOPED_TRACE(layers.to_string());
    Probe probe(layers, "netfilter");
    json report = probe.report();
    EXPECT_EQ(report["unshare"].value("succeeded", true), false) << report;
    EXPECT_NE(report["request"].value("succeeded", false), true) << report;
  }
}

TEST(JailLayers, FilesystemAndNetworkRefuseToActOnTheHost) {
  for (Layer layer : {Layer::filesystem, Layer::network}) {
    Probe probe(only({layer}), "facts");
    EXPECT_NE(probe.report().value("contain_failed", "").find("without the namespaces layer"),
              std::string::npos)
        << probe.report();
    EXPECT_EQ(probe.exit_status(), 1);
  }
}

TEST(JailLayers, ParseAndPrint) {
  EXPECT_EQ(LayerSet::parse("seccomp,namespaces").to_string(), "namespaces,seccomp");
  EXPECT_EQ(LayerSet::parse("all"), LayerSet::all());
  EXPECT_EQ(LayerSet::parse("none").to_string(), "none");
  EXPECT_THROW(LayerSet::parse("namespaces,selinux"), std::invalid_argument);
}

}  // namespace
}  // namespace corral::jail
