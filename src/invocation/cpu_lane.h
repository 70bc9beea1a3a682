// CPU lanes: on a machine where waking a thread or process on another CPU is costly (a virtual
// machine sends an inter-processor interrupt through its hypervisor for each), a request is
// cheapest when it is read, run and answered on one CPU. corrald splits its threads into lanes,
// one per CPU (api/server.h); a thread of a lane is pinned to the lane's CPU and says so here, so
// that the executor can run the invocation's worker on the same CPU (pool/tenant_pool.h).
#pragma once

#include <vector>

namespace corral {

// The CPUs this process may run on, as the kernel allowed them when first asked (before any
// thread was pinned), in increasing order; never empty.
const std::vector<int>& allowed_cpus();

// Pins the calling thread to `cpu` and records it as the thread's lane CPU. Returns false (and
// records nothing) if the kernel refuses; pinning is only ever a hint for speed.
bool pin_this_thread_to(int cpu);

// The CPU the calling thread was pinned to by pin_this_thread_to, or -1.
int lane_cpu_of_this_thread();

}  // namespace corral
