// When corrald dies by SIGKILL, no worker outlives it: not an idle one, not one in the middle of a
// run, and not one still being spawned: before its supervisor released it, or after, while it
// starts with an invocation already waiting in its channel (the parent-death signal it sets
// itself, in its jail's process step, would come too late: spawn.cc sets it before the exec).
// The test process becomes a child subreaper, so that every process corrald leaves behind is
// reparented to it and can be seen and counted.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api/corrald_process.h"

namespace corral::testing {
namespace {

// The direct children of a process, from /proc/PID/task/*/children.
std::set<pid_t> children(const std::string& pid = "self") {
  std::set<pid_t> found;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + pid + "/task")) {
    std::ifstream list(task.path() / "children");
    for (pid_t pid; list >> pid;) found.insert(pid);
  }
  return found;
}

// Reaps what has exited; true once this process has no child left.
bool reap_until_none_left(std::chrono::milliseconds within) {
  auto deadline = std::chrono::steady_clock::now() + within;
  for (;;) {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (children().empty()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A run still going when corrald dies, and for seconds after: a billion instructions take 2.4 s
// of CPU on the test machine, more than the 2 s the workers get to die, so a worker that waited
// for the end of its run (and a write to a closed channel) instead of dying with corrald fails.
const char* kBusy = "function handle() while true do end end";

class SupervisorDeath : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0) << "cannot become a child subreaper";
    ASSERT_TRUE(reap_until_none_left(std::chrono::milliseconds(0)))
        << "the test process has children before the test starts";
  }
  void TearDown() override { prctl(PR_SET_CHILD_SUBREAPER, 0); }

  // Starts corrald, has `callers` threads invoke kBusy at once (each needs a worker of its own,
  // so the pool spawns while runs are in flight), kills corrald after `kill_after`, and returns
  // how many workers corrald had then.
  size_t kill_corrald_while_busy(int callers, std::chrono::milliseconds kill_after) {
    CorraldProcess corrald({"--max-workers", "16", "--spare-workers", "2"});
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < callers; ++i) {
      threads.emplace_back([&] {
        try {
          auto client = corrald.client();
          while (!stop) {
            client.post_json(
                {{"source", kBusy}, {"limits", {{"fuel", 1000000000}, {"timeout_ms", 30000}}}});
          }
        } catch (const std::exception&) {
          // corrald died under the connection: that is the point of the test.
        }
      });
    }
    std::this_thread::sleep_for(kill_after);
    size_t workers = children(std::to_string(corrald.pid())).size();
    EXPECT_EQ(kill(corrald.pid(), SIGKILL), 0);
    corrald.wait();
    stop = true;
    for (auto& thread : threads) thread.join();
    return workers;
  }
};

TEST_F(SupervisorDeath, NoWorkerOutlivesAKilledCorrald) {
  // Several moments: while the first workers are spawned, while runs are in flight, and later.
  for (int kill_after_ms : {30, 120, 400, 900}) {
    size_t workers = kill_corrald_while_busy(6, std::chrono::milliseconds(kill_after_ms));
    // By then six runs have needed a worker each (at 30 ms the first may still be coming).
    if (kill_after_ms >= 120) {
      EXPECT_GT(workers, 0u) << "corrald had no worker " << kill_after_ms << " ms into the load";
    }
    bool none_left = reap_until_none_left(std::chrono::seconds(2));
    EXPECT_TRUE(none_left) << "after killing corrald " << kill_after_ms << " ms into the load, "
                           << children().size() << " of its processes were still alive 2 s later";
    if (!none_left) {
      for (pid_t pid : children()) kill(pid, SIGKILL);
      reap_until_none_left(std::chrono::seconds(5));
    }
  }
}

}  // namespace
}  // namespace corral::testing
