// The Lua 5.4 runtime: runs one invocation in a fresh, curated Lua state in this process.
// It is meant to run inside a corral-worker: it stops runaway scripts only at instruction
// boundaries, so a single long C call (a pathological pattern) needs the supervisor's kill.
#pragma once

#include "invocation/invocation.h"

namespace corral::runtime {

// Never throws; every way the run can end is an outcome. `crashed` is not produced here: it is
// what the supervisor reports when the process running this dies.
InvocationResult run_invocation(const InvocationRequest& request);

}  // namespace corral::runtime
