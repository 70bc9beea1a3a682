#include "invocation/cpu_lane.h"

#include <sched.h>

namespace corral {
namespace {

thread_local int this_threads_lane_cpu = -1;

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

}  // namespace

const std::vector<int>& allowed_cpus() {
  static const std::vector<int> cpus = read_allowed_cpus();
  return cpus;
}

bool pin_this_thread_to(int cpu) {
  allowed_cpus();  // read before this thread narrows its own mask
  if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) return false;
  this_threads_lane_cpu = cpu;
  return true;
}

int lane_cpu_of_this_thread() { return this_threads_lane_cpu; }

}  // namespace corral
