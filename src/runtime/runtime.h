// The Lua 5.4 runtime: runs invocations in a curated Lua environment in this process.
// It is meant to run inside a corral-worker: it stops runaway scripts only at instruction
// boundaries, so a single long C call (a pathological pattern) needs the supervisor's kill.
#pragma once

#include <memory>

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

// Runs invocations one after another in one Lua state, as a corral-worker does for its tenant.
// Each invocation gets a fresh environment (new globals and library tables; see
// install_fresh_environment); what the state keeps between invocations is only what no script
// can reach or change: the pristine libraries and the compiled chunks of recent sources. A run
// that hits a limit or fails in the host closes the state, and the next one starts a new state.
// Not thread-safe: one invocation at a time.
struct EngineOptions {
  // Leave an ok run's output as JSON text in InvocationResult::output_json, not parsed into
  // `output`: for a caller that only sends it on (corral-worker).
  bool output_as_text = false;
  // Count the CPU time the thread spends between invocations (answering one, reading the next)
  // toward the next one: one reading of the thread's CPU clock per invocation instead of two,
  // for a thread that does nothing else (corral-worker). Each reading is a system call.
  bool count_cpu_between_runs = false;
};

class Engine {
 public:
  explicit Engine(EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // As run_invocation.
  InvocationResult run(const InvocationRequest& request, BrokerLink* broker = nullptr);

  // With count_cpu_between_runs: the next invocation counts from its own start, not from the
  // last one's end (what the thread did meanwhile was not the next invocation's doing).
  void restart_cpu_count();

  struct Resident;  // the kept state: runtime.cc

 private:
  EngineOptions options_;
  std::unique_ptr<Resident> resident_;
};

// Never throws; every way the run can end is an outcome. `crashed` is not produced here: it is
// what the supervisor reports when the process running this dies.
// Capability calls go to `broker`; without one, ctx holds only log.
InvocationResult run_invocation(const InvocationRequest& request, BrokerLink* broker = nullptr);

}  // namespace corral::runtime
