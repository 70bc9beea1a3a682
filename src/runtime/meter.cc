// The budgets of one invocation: memory (allocator), fuel and wall time (count hook), logs.
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "runtime/run_state.h"
#include "runtime/utf8.h"

namespace corral::runtime {

RunState::RunState(const Limits& run_limits) : limits(run_limits) {
  deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limits.timeout_ms);
}

void RunState::trip(LimitKind limit, int64_t used, int64_t allowed) {
  if (tripped) return;  // the first limit reached is the one reported
  tripped = limit;
  tripped_used = used;
  tripped_allowed = allowed;
}

namespace {

// Lua passes a new object's type tag as old_size when it allocates one; a long string is
// LUA_VLNGSTR (lobject.h: makevariant(LUA_TSTRING, 1)).
constexpr size_t kLongStringTag = LUA_TSTRING | (1 << 4);

// Room past the limit for the allocation that crosses it: a table part that doubles holds its
// old part and the new one (twice as large) at once, up to this much.
constexpr size_t kMostCrossingRoom = 48u << 20;
// And for what a C function allocates before it returns to a check (Lua's stack, at most
// LUAI_MAXSTACK slots; the parse of a 1 MiB source).
constexpr size_t kCeilingSlack = 16u << 20;
// Never more past the limit than this: the jail's cgroup gives a worker 128 MiB beyond the
// largest heap a policy allows (pool/jail_setup.cc, ceilings_for), and the worker itself needs
// some of that.
constexpr size_t kMostRoom = 112u << 20;

size_t saturating_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

void meter_hook(lua_State* L, lua_Debug*);

// Makes the running thread stop at its next instruction, where the hook settles the memory.
// lua_sethook may be called at any point, even from a signal handler: it only sets fields.
void stop_soon(RunState& state) {
  if (state.running != nullptr) lua_sethook(state.running, meter_hook, LUA_MASKCOUNT, 1);
}

}  // namespace

size_t memory_ceiling(int64_t memory_bytes, bool long_string) {
  size_t limit = static_cast<size_t>(memory_bytes);
  size_t room = 2 * std::min(limit, kMostCrossingRoom / 2) + kCeilingSlack;
  if (long_string) room *= 2;
  return saturating_add(limit, std::min(room, kMostRoom));
}

void* metered_alloc(void* ud, void* block, size_t old_size, size_t new_size) {
  auto& state = *static_cast<RunState*>(ud);
  // When block is null, old_size is a type tag, not a size.
  size_t held = block != nullptr ? old_size : 0;
  if (new_size == 0) {
    std::free(block);
    state.memory_in_use -= held;
    return nullptr;
  }
  size_t after = state.memory_in_use - held + new_size;
  size_t used = after > state.memory_base ? after - state.memory_base : 0;
  if (new_size > held) {
    if (used > static_cast<size_t>(state.limits.memory_bytes)) {
      bool long_string = block == nullptr && old_size == kLongStringTag;
      if (used > memory_ceiling(state.limits.memory_bytes, long_string)) {
        // Lua answers a refusal with an emergency collection; by now the run has ended.
        state.trip(LimitKind::memory, static_cast<int64_t>(used), state.limits.memory_bytes);
        ++state.memory_refusals;
        stop_soon(state);
        return nullptr;
      }
      if (!state.memory_over) {
        state.memory_over = true;
        stop_soon(state);
      }
    }
  }
  void* grown = std::realloc(block, new_size);
  if (grown == nullptr) {
    // The process itself is out of memory (RLIMIT_AS, or the machine): the run cannot go on.
    state.trip(LimitKind::memory, static_cast<int64_t>(used), state.limits.memory_bytes);
    ++state.memory_refusals;
    stop_soon(state);
    return nullptr;
  }
  state.memory_in_use = after;
  if (after > state.memory_peak) state.memory_peak = after;
  return grown;
}

bool settle_memory(lua_State* L) {
  RunState& state = run_state(L);
  if (state.memory_over && !state.tripped) {
    // A full collection, not an emergency one: the VM is between instructions here, and
    // garbage must not count as held memory (the emergency collection used to see to that).
    lua_gc(L, LUA_GCCOLLECT);
    state.memory_over = false;
    if (state.memory_used() > static_cast<size_t>(state.limits.memory_bytes)) {
      state.trip(LimitKind::memory, static_cast<int64_t>(state.memory_used()),
                 state.limits.memory_bytes);
    }
  }
  return !state.tripped;
}

[[noreturn]] void raise_tripped(lua_State* L) {
  RunState& state = run_state(L);
  // Keep raising at every instruction of this coroutine until the run unwinds.
  lua_sethook(L, lua_gethook(L), LUA_MASKCOUNT, 1);
  const char* name = to_string(state.tripped.value_or(LimitKind::fuel)).data();
  luaL_error(L, "%s limit exceeded", name);
  std::abort();  // luaL_error does not return
}

namespace {

void meter_hook(lua_State* L, lua_Debug*) {
  RunState& state = run_state(L);
  state.running = L;
  if (!state.tripped) {
    state.fuel_used += kFuelStep;
    settle_memory(L);
    if (!state.tripped && lua_gethookcount(L) != kFuelStep) {
      // The allocator armed this hook to fire at once; back to the usual step. (The step
      // charged above may be more than ran since the last one: never less.)
      lua_sethook(L, meter_hook, LUA_MASKCOUNT, kFuelStep);
    }
    if (state.fuel_used > state.limits.fuel) {
      state.trip(LimitKind::fuel, state.fuel_used, state.limits.fuel);
    } else if (!state.tripped) {
      auto now = std::chrono::steady_clock::now();
      if (now >= state.deadline) {
        auto started = state.deadline - std::chrono::milliseconds(state.limits.timeout_ms);
        auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count();
        state.trip(LimitKind::wall_time, elapsed, state.limits.timeout_ms);
      }
    }
  }
  if (state.tripped) raise_tripped(L);
}

}  // namespace

void install_meter(lua_State* L) { lua_sethook(L, meter_hook, LUA_MASKCOUNT, kFuelStep); }

void charge_fuel(lua_State* L, int64_t amount) {
  RunState& state = run_state(L);
  state.running = L;
  settle_memory(L);
  if (!state.tripped) {
    state.fuel_used += amount;
    if (state.fuel_used > state.limits.fuel) {
      state.trip(LimitKind::fuel, state.fuel_used, state.limits.fuel);
    }
  }
  if (state.tripped) raise_tripped(L);
}

bool append_log(RunState& state, const char* level, std::string_view message) {
  int64_t total = state.log_bytes + static_cast<int64_t>(message.size());
  if (total > state.limits.log_bytes) {
    state.trip(LimitKind::log_size, total, state.limits.log_bytes);
    return false;
  }
  state.log_bytes = total;
  state.logs.push_back({level, sanitize_utf8(message)});
  return true;
}

}  // namespace corral::runtime
