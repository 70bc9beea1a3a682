// The budgets of one invocation: memory (allocator), fuel and wall time (count hook), logs.
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

void RunState::trip_pending_memory_refusal() {
  if (last_refusal) {
    trip(LimitKind::memory, static_cast<int64_t>(last_refusal->total), limits.memory_bytes);
    last_refusal.reset();
  }
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
  size_t limit = static_cast<size_t>(state.limits.memory_bytes) + state.memory_base;
  size_t after = state.memory_in_use - held + new_size;
  if (new_size > held) {
    // Lua's core retries a refused request once, right after an emergency collection that only
    // frees. So a refusal followed by the same request is that retry; a refusal followed by any
    // other request was final (lauxlib's buffers, for one, raise without retrying). A final
    // refusal, or a retry refused again, trips the limit. The cap holds either way.
    bool is_retry = state.last_refusal && state.last_refusal->block == block &&
                    state.last_refusal->old_size == old_size &&
                    state.last_refusal->new_size == new_size;
    if (state.last_refusal && !is_retry) state.trip_pending_memory_refusal();
    if (after > limit) {
      if (is_retry) state.trip_pending_memory_refusal();
      state.last_refusal = RunState::Refusal{block, old_size, new_size, after - state.memory_base};
      return nullptr;
    }
    state.last_refusal.reset();
  }
  void* grown = std::realloc(block, new_size);
  if (grown == nullptr) return nullptr;
  state.memory_in_use = after;
  if (after > state.memory_peak) state.memory_peak = after;
  return grown;
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
  if (!state.tripped) {
    state.fuel_used += kFuelStep;
    if (state.fuel_used > state.limits.fuel) {
      state.trip(LimitKind::fuel, state.fuel_used, state.limits.fuel);
    } else {
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
