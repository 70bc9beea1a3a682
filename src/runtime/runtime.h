// The Lua 5.4 runtime: runs one invocation in a fresh, curated Lua state in this process.
// It is meant to run inside a corral-worker: it stops runaway scripts only at instruction
// boundaries, so a single long C call (a pathological pattern) needs the supervisor's kill.
#pragma once

#include "invocation/invocation.h"

namespace corral::runtime {

// Carries a run's capability calls (ctx.kv.get, ctx.http.fetch, …) out of the runtime and
// brings back the answer. In corral-worker it is the channel to the supervisor's broker.
// The call is {"op": "kv.get", "args": [...]}; the reply is {"ok": value}, or
// {"error": {"kind": "denied" | "error", "message": "..."}}, or
// {"limit": {"used": N, "allowed": M}} when the supervisor counts too many calls.
class BrokerLink {
 public:
  virtual ~BrokerLink() = default;
  // Throws std::runtime_error when the answer cannot be had (a broken channel).
  virtual std::string call(const std::string& call_json) = 0;
};

// Never throws; every way the run can end is an outcome. `crashed` is not produced here: it is
// what the supervisor reports when the process running this dies.
// Capability calls go to `broker`; without one, ctx holds only log.
InvocationResult run_invocation(const InvocationRequest& request, BrokerLink* broker = nullptr);

}  // namespace corral::runtime
