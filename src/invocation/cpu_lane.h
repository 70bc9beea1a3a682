// CPU lanes: on a machine where waking a thread or process on another CPU is costly (a virtual
// machine sends an inter-processor interrupt through its hypervisor for each), a request is
// cheapest when it is read, run and answered on one CPU. corrald splits its threads into lanes,
// one per CPU (api/server.h); a thread of a lane is pinned to the lane's CPU and says so here, so
// that the executor can run the invocation's worker on the same CPU (pool/tenant_pool.h).
//
// Pinning is for short runs only. A script that runs long would hold its lane's CPU against the
// lane's own threads, and a pinned thread cannot move away from it: a quiet tenant served by
// that lane would wait behind a noisy tenant's loop. So while any run has lasted longer than
// kLongRunMs (WorkerProcess::invoke reports them), every lane thread is let go to every CPU and
// workers are not pinned; the last long run to end pins the lane threads back.
#pragma once

#include <cstdint>
#include <vector>

namespace corral {

inline constexpr int64_t kLongRunMs = 1;
// The time slice a lane thread asks the scheduler for (Linux 6.12 and later; the least it grants).
inline constexpr uint64_t kLaneTimeSliceNs = 100'000;

// The CPUs this process may run on, as the kernel allowed them when first asked (before any
// thread was pinned), in increasing order; never empty.
const std::vector<int>& allowed_cpus();

// Makes the calling thread a lane thread of `cpu`: pinned to it (unless a long run is in
// progress), asking for a short time slice (kLaneTimeSliceNs), and recorded as the thread's
// lane CPU until the thread ends. Returns false (and
// records nothing) if `cpu` is not a CPU number or the thread is already a lane thread; pinning
// is only ever a hint for speed, so a refusal by the kernel is ignored.
bool pin_this_thread_to(int cpu);

// The lane CPU of the calling thread (pin_this_thread_to), or -1.
int lane_cpu_of_this_thread();

// False while a long run is in progress: lane threads then run on every CPU, and a worker should
// not be pinned.
bool lanes_pinned();

// A run has lasted longer than kLongRunMs, and has ended. Counted: the first begin lets every
// lane thread go to every CPU, the last end pins them back.
void begin_long_run();
void end_long_run();

}  // namespace corral
