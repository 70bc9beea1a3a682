// Everything one invocation's Lua state knows about its budgets, reached from C functions
// through the state's extra space. Internal to the runtime.
#pragma once

#include <chrono>
#include <cstdint>
#include <lua.hpp>
#include <optional>
#include <string>
#include <vector>

#include "invocation/invocation.h"
#include "runtime/runtime.h"

namespace corral::runtime {

// Lua instructions between two calls of the metering hook. Fuel is counted in these steps.
inline constexpr int kFuelStep = 1000;

struct RunState {
  explicit RunState(const Limits& limits);

  Limits limits;

  // The first limit that tripped. Once set, every later hook call raises again (pcall cannot
  // swallow it), and the result is limit_exceeded whatever the script returns.
  std::optional<LimitKind> tripped;
  int64_t tripped_used = 0;
  int64_t tripped_allowed = 0;
  void trip(LimitKind limit, int64_t used, int64_t allowed);

  // The thread's CPU clock, in seconds, when the invocation started (-1 when unknown).
  double cpu_start_seconds = -1;

  // Memory, maintained by the allocator. A state kept across invocations already holds
  // memory_base bytes (its pristine environment and compiled chunks) when an invocation starts;
  // the limit and the peak count what the invocation holds beyond that.
  size_t memory_in_use = 0;
  size_t memory_peak = 0;
  size_t memory_base = 0;
  // What the invocation holds now. The collector may free some of the base (a compiled chunk
  // let go), so this saturates at zero.
  size_t memory_used() const {
    return memory_in_use > memory_base ? memory_in_use - memory_base : 0;
  }
  struct Refusal {
    const void* block;
    size_t old_size;
    size_t new_size;
    size_t total;  // what the state would have held
  };
  std::optional<Refusal> last_refusal;
  // Trips the memory limit for a refusal that turned out to be final.
  void trip_pending_memory_refusal();

  int64_t fuel_used = 0;
  std::chrono::steady_clock::time_point deadline;

  std::vector<LogEntry> logs;
  int64_t log_bytes = 0;

  // Filled by the message handler when the script raises.
  std::string error_message;
  std::string traceback;
  int error_line = 0;

  // coroutine.close and the reset of a failed coroutine.wrap nest through __close handlers
  // without Lua 5.4.4 counting C stack (fixed upstream in 5.4.5): corral counts them itself.
  int close_depth = 0;

  int64_t next_object_id = 1;  // for tostring of tables and functions, which hides addresses

  // Capability calls: where they go, how many were made, and the reply being handed to Lua
  // (kept here, not in a C++ local, because a Lua error unwinds with longjmp).
  BrokerLink* broker = nullptr;
  int64_t subrequests_used = 0;
  nlohmann::json reply;
  std::string reply_error;
  // Messages of the errors raised for denied calls: an invocation that ends with one of them
  // uncaught is `denied`, not `script_error`.
  std::vector<std::string> denials;
};

inline RunState& run_state(lua_State* L) { return **static_cast<RunState**>(lua_getextraspace(L)); }

// The allocator given to lua_newstate: refuses any allocation that would take the state above
// limits.memory_bytes, and records the peak.
void* metered_alloc(void* ud, void* block, size_t old_size, size_t new_size);

// Installs the fuel and wall-time hook on L (coroutines inherit it).
void install_meter(lua_State* L);

// Charges fuel for work done outside the VM (C functions whose cost grows with an argument,
// new coroutines). Raises the fuel error if the budget is spent.
void charge_fuel(lua_State* L, int64_t amount);

// Raises the Lua error for the tripped limit; never returns.
[[noreturn]] void raise_tripped(lua_State* L);

// Appends a log entry, or trips log_size when the captured total would exceed the limit and
// returns false: the caller then raises with raise_tripped once its own locals are gone
// (a Lua error is a longjmp and must not cross live C++ objects).
bool append_log(RunState& state, const char* level, std::string_view message);

}  // namespace corral::runtime
