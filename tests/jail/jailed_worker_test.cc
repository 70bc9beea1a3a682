// The real corral-worker under every layer this machine provides: scripts still run, limits
// still hold, a refused syscall is reported by name, and no worker holds the supervisor's
// secrets.
#include <gtest/gtest.h>
#include <sodium.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "jail/jail.h"
#include "pool/worker_process.h"

namespace corral {
namespace {

using nlohmann::json;

jail::LayerSet machine_layers() {
  jail::LayerSet layers;
  for (const auto& status : jail::probe_machine()) {
    if (status.available) layers.add(status.layer);
  }
  return layers;
}

class JailedWorker : public ::testing::Test {
 protected:
  void SetUp() override {
    layers_ = machine_layers();
    if (layers_.has(jail::Layer::cgroup)) {
      cgroups_ = std::make_unique<jail::CgroupManager>(jail::ProbeOptions{}, jail::Ceilings{});
    }
  }

  std::unique_ptr<WorkerProcess> start(const std::string& path = CORRAL_WORKER_PATH,
                                       std::vector<std::string> arguments = {}) {
    WorkerSpec spec;
    spec.worker_path = path;
    spec.arguments = std::move(arguments);
    spec.layers = layers_;
    spec.cgroups = cgroups_.get();
    spec.cgroup_name = "test";
    return std::make_unique<WorkerProcess>(spec);
  }

  static InvocationRequest request(const std::string& source, json input = json::object(),
                                   json limits = json::object()) {
    InvocationRequest request;
    request.invocation_id = new_invocation_id();
    request.source = source;
    request.input = std::move(input);
    request.limits = LimitsPolicy{}.resolve(limits);
    return request;
  }

  jail::LayerSet layers_;
  std::unique_ptr<jail::CgroupManager> cgroups_;
};

TEST_F(JailedWorker, RunsScriptsWithEveryAvailableLayer) {
  auto worker = start();
  auto result = worker->invoke(
      request(
          "function handle(input) return {sum = input.a + input.b, day = os.date('%Y-%m-%d', 0), "
          "t = os.time{year = 2020, month = 1, day = 1, hour = 0}, r = math.random(1, 1), c = "
          "os.clock() >= 0} end",
          {{"a", 1}, {"b", 2}}),
      std::chrono::milliseconds(50));
  ASSERT_EQ(result.outcome, Outcome::ok)
      << to_json(result).dump() << " layers " << layers_.to_string();
  EXPECT_EQ(result.output,
            json({{"sum", 3}, {"day", "1970-01-01"}, {"t", 1577836800}, {"r", 1}, {"c", true}}));
  // The same worker serves again (the allowlist covers a whole invocation, not just the first).
  auto again =
      worker->invoke(request("function handle() return string.rep('x', 1000000):len() end"),
                     std::chrono::milliseconds(50));
  ASSERT_EQ(again.outcome, Outcome::ok) << to_json(again).dump();
  EXPECT_EQ(again.output, 1000000);
  EXPECT_TRUE(worker->alive());
}

TEST_F(JailedWorker, LimitsStillEndCleanly) {
  auto worker = start();
  auto memory =
      worker->invoke(request("function handle() local t = {} while true do t[#t + 1] = {} end end",
                             {}, {{"memory_bytes", 16 << 20}}),
                     std::chrono::milliseconds(50));
  EXPECT_EQ(memory.outcome, Outcome::limit_exceeded) << to_json(memory).dump();
  auto fresh = start();
  auto looping = fresh->invoke(
      request("function handle() return string.rep('a', 40000):find('.-.-.-.-.-b') end", {},
              {{"timeout_ms", 100}}),
      std::chrono::milliseconds(50));
  EXPECT_EQ(looping.outcome, Outcome::limit_exceeded) << to_json(looping).dump();
  EXPECT_EQ(looping.limit, LimitKind::wall_time);
}

TEST_F(JailedWorker, RefusedSyscallIsReportedByName) {
  if (!layers_.has(jail::Layer::seccomp)) GTEST_SKIP() << "no seccomp on this machine";
  auto worker = start(JAIL_PROBE_PATH, {"--probe=harmless_syscall"});
  auto result = worker->invoke(request("function handle() end"), std::chrono::milliseconds(50));
  EXPECT_EQ(result.outcome, Outcome::crashed);
  EXPECT_NE(result.message.find("getppid"), std::string::npos) << result.message;
  EXPECT_NE(result.message.find("seccomp"), std::string::npos) << result.message;
  EXPECT_FALSE(worker->alive());
}

TEST_F(JailedWorker, CgroupOomKillIsReportedAsTheCause) {
  if (!layers_.has(jail::Layer::cgroup)) GTEST_SKIP() << "no cgroups delegated on this machine";
  // A cgroup ceiling far below what the Lua allocator would allow: the kernel acts first.
  jail::Ceilings tight;
  tight.cgroup_memory_bytes = 32ll << 20;
  cgroups_ = std::make_unique<jail::CgroupManager>(jail::ProbeOptions{}, tight);
  auto worker = start();
  auto result = worker->invoke(
      request(
          "function handle() local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(4096) .. i end end",
          {}, {{"memory_bytes", 256 << 20}, {"timeout_ms", 10000}, {"fuel", 1000000000}}),
      std::chrono::milliseconds(50));
  EXPECT_EQ(result.outcome, Outcome::crashed) << to_json(result).dump();
  EXPECT_NE(result.message.find("OOM killer"), std::string::npos) << result.message;
}

TEST_F(JailedWorker, UnexecutableWorkerBinarySaysWhyAndWhatToDo) {
  if (!layers_.has(jail::Layer::namespaces)) GTEST_SKIP() << "no user namespaces on this machine";
  auto binary = std::filesystem::temp_directory_path() /
                ("corral-private-worker-" + std::to_string(getpid()));
  std::filesystem::copy_file(CORRAL_WORKER_PATH, binary,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(binary, std::filesystem::perms::owner_all);  // not for nobody
  try {
    start(binary.string());
    ADD_FAILURE() << "a worker binary only root may execute was started as nobody";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("readable and executable by that user"),
              std::string::npos)
        << error.what();
  }
  std::filesystem::remove(binary);
}

// Every readable mapping of process pid, read through /proc/pid/mem as root, but for anonymous
// mappings of more than 64 MiB: neither a worker (2 MiB resident) nor this test has one, and
// under AddressSanitizer they are its shadow memory, 256 MiB of zeros per process that made this
// test take 88 s.
std::string memory_of(pid_t pid) {
  constexpr unsigned long kLargestAnonymousMapping = 64ul << 20;
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::ifstream memory("/proc/" + std::to_string(pid) + "/mem", std::ios::binary);
  std::string line, contents;
  while (std::getline(maps, line)) {
    unsigned long start = 0, end = 0;
    char permissions[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, permissions) != 3 ||
        permissions[0] != 'r')
      continue;
    bool anonymous = line.find('/') == std::string::npos && line.find('[') == std::string::npos;
    if (line.find("[vvar]") != std::string::npos || end - start > (1ul << 30) ||
        (anonymous && end - start > kLargestAnonymousMapping))
      continue;
    std::string region(end - start, '\0');
    memory.clear();
    memory.seekg(static_cast<std::streamoff>(start));
    memory.read(region.data(), static_cast<std::streamsize>(region.size()));
    contents.append(region.data(), static_cast<size_t>(memory.gcount()));
  }
  return contents;
}

TEST_F(JailedWorker, HoldsNoSecretOfTheSupervisor) {
  ASSERT_GE(sodium_init(), 0);
  unsigned char random[24];
  randombytes_buf(random, sizeof random);
  char hex[sizeof random * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, random, sizeof random);
  auto secret = std::make_unique<std::string>(std::string("supervisor-secret-") + hex);
  std::string marker = std::string("invocation-marker-") + std::string(hex).substr(0, 16) + "-seen";

  auto worker = start();
  auto result = worker->invoke(
      request("function handle(input) return #input.marker end", {{"marker", marker}}),
      std::chrono::milliseconds(50));
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  std::string memory = memory_of(worker->pid());
  ASSERT_GT(memory.size(), 100000u) << "could not read the worker's memory";
  // The reader works: what the worker was sent is there...
  EXPECT_NE(memory.find(marker), std::string::npos);
  // ...and what only the supervisor held is not.
  EXPECT_EQ(memory.find(*secret), std::string::npos);
  EXPECT_NE(memory_of(getpid()).find(*secret), std::string::npos);
}

}  // namespace
}  // namespace corral
