#include "invocation/cpu_lane.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>

namespace corral {
namespace {

struct LaneThread {
  pid_t tid;
  int cpu;
};

// Every lane thread alive, and the long runs in progress; one mutex, taken only when a lane
// thread starts or ends and when a long run begins or ends.
struct Lanes {
  std::mutex mutex;
  std::vector<LaneThread> threads;
  int64_t long_runs = 0;
  std::atomic<bool> pinned{true};
};

Lanes& lanes() {
  static Lanes* state = new Lanes;  // never destroyed: lane threads may end after static teardown
  return *state;
}

std::vector<int> read_allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  return cpus;
}

// -1: every allowed CPU.
void place(pid_t tid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0) {
    CPU_SET(cpu, &set);
  } else {
    for (int allowed : allowed_cpus()) CPU_SET(allowed, &set);
  }
  sched_setaffinity(tid, sizeof set, &set);
}

// Forgets the thread's lane when it ends, so that its thread id, which the kernel may give to a
// later thread, is never placed again.
struct LaneMembership {
  int cpu = -1;
  ~LaneMembership() {
    if (cpu < 0) return;
    Lanes& state = lanes();
    std::lock_guard lock(state.mutex);
    pid_t self = gettid();
    std::erase_if(state.threads, [self](const LaneThread& thread) { return thread.tid == self; });
  }
};

thread_local LaneMembership this_thread_lane;

}  // namespace

const std::vector<int>& allowed_cpus() {
  static const std::vector<int> cpus = read_allowed_cpus();
  return cpus;
}

bool pin_this_thread_to(int cpu) {
  allowed_cpus();  // read before this thread narrows its own mask
  if (cpu < 0 || cpu >= CPU_SETSIZE || this_thread_lane.cpu >= 0) return false;
  Lanes& state = lanes();
  std::lock_guard lock(state.mutex);
  pid_t self = gettid();
  state.threads.push_back({self, cpu});
  this_thread_lane.cpu = cpu;
  if (state.long_runs == 0) place(self, cpu);
  return true;
}

int lane_cpu_of_this_thread() { return this_thread_lane.cpu; }

bool lanes_pinned() { return lanes().pinned.load(std::memory_order_relaxed); }

void begin_long_run() {
  Lanes& state = lanes();
  std::lock_guard lock(state.mutex);
  if (state.long_runs++ > 0) return;
  state.pinned.store(false, std::memory_order_relaxed);
  for (const auto& thread : state.threads) place(thread.tid, -1);
}

void end_long_run() {
  Lanes& state = lanes();
  std::lock_guard lock(state.mutex);
  if (state.long_runs == 0 || --state.long_runs > 0) return;
  for (const auto& thread : state.threads) place(thread.tid, thread.cpu);
  state.pinned.store(true, std::memory_order_relaxed);
}

}  // namespace corral
