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
  // The allocator never fails an allocation for going over limits.memory_bytes: a failed
  // allocation makes Lua run an emergency collection in the middle of whatever the VM was doing,
  // the path through the engine that corral keeps out of reach (docs/scripting.md, "Memory").
  // It lets the allocation through, sets memory_over and arms the hook of the running thread
  // to fire at its next instruction; there (or in the next C function that charges fuel, or
  // when the run ends) a full collection is run, and if the invocation still holds more than
  // the limit, the memory limit trips. Only an allocation past the hard ceiling (see
  // memory_ceiling) is refused, and only after the limit has tripped.
  bool memory_over = false;
  // Allocations the allocator refused (each one lets Lua run an emergency collection).
  int64_t memory_refusals = 0;
  // The thread that runs now (the main one, or the coroutine resumed last), whose hook the
  // allocator arms. Kept current by the resume and close wrappers and the hook itself.
  lua_State* running = nullptr;

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

// The allocator given to lua_newstate: counts what the state holds and records the peak; past
// limits.memory_bytes it marks the run (RunState::memory_over) instead of failing; past the
// hard ceiling it trips the limit and refuses.
void* metered_alloc(void* ud, void* block, size_t old_size, size_t new_size);

// What the invocation may hold, beyond its base, before an allocation is refused: the limit,
// then room for the one allocation that crosses it (a table part doubling) and for what a C
// function allocates before it returns to a point where the limit is checked. A long string gets
// twice the room, so that the string made from a buffer the allocator let through is not
// refused either; all within the room the jail's cgroup leaves (at most 112 MiB past the limit).
size_t memory_ceiling(int64_t memory_bytes, bool long_string);

// At a point where the VM is consistent (the hook, a C function, the end of the run): if the
// allocator let the state go over the limit, runs a full collection, then trips the memory
// limit if the invocation still holds more than limits.memory_bytes. Never raises; returns
// false when a limit has tripped.
bool settle_memory(lua_State* L);

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
