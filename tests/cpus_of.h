// The CPUs a thread or process may run on, as the kernel reports them (for the CPU lane tests).
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <set>

namespace corral {

inline std::set<int> cpus_of(pid_t thread_or_process) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::set<int> cpus;
  if (sched_getaffinity(thread_or_process, sizeof set, &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.insert(cpu);
  }
  return cpus;
}

}  // namespace corral
