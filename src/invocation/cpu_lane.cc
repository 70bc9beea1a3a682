#include "invocation/cpu_lane.h"

#include <sched.h>
#include <sys/syscall.h>
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

// The kernel's struct sched_attr (uapi linux/sched/types.h, which clashes with glibc's sched.h).
struct SchedAttributes {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};

// A request passes through a lane's I/O thread and invocation thread, each woken while workers
// may be running scripts on both CPUs; with the default time slice (0.75 ms times 1 + log2 of the
// CPUs) a woken thread may wait that long at each hop behind a tenant's CPU-bound run, which
// showed in another tenant's p99 (docs/performance.md, "The two floods that do real work").
// Since Linux 6.12 a SCHED_OTHER thread may ask for a shorter slice (sched_runtime), which
// also lets it preempt sooner when it wakes. Best effort: older kernels ignore or refuse it.
void ask_for_a_short_time_slice() {
  SchedAttributes attributes{};
  attributes.size = sizeof attributes;
  attributes.sched_policy = SCHED_OTHER;
  attributes.sched_runtime = kLaneTimeSliceNs;
  syscall(SYS_sched_setattr, 0, &attributes, 0);
}

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
  ask_for_a_short_time_slice();
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
