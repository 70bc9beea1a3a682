// The curated global environment a script sees: an explicit allowlist (docs/scripting.md).
// Only the wanted libraries are opened; functions that reach the host, reveal addresses or
// change process-wide state are absent or wrapped. Internal to the runtime.
#pragma once

#include <lua.hpp>
#include <string>
#include <vector>

namespace corral::runtime {

inline constexpr size_t kMaxSourceBytes = 1 << 20;

// Builds the pristine globals of a new state: the curated libraries, never seen by a script.
// Allocates, so call it inside a protected call.
void install_environment(lua_State* L);

// Gives the state a fresh environment for one invocation, made from the pristine one: new
// globals, new copies of every library table (so nothing a script changes outlives its
// invocation), the string methods pointed at the new string table, math.random reseeded from the
// kernel, os.clock counting from now, tostring's object numbers from #1. Allocates: call it
// protected.
void install_fresh_environment(lua_State* L);

// Drops the references the state keeps to the last invocation's environment, so that the
// collector can free it. Does not allocate.
void restore_pristine_environment(lua_State* L);

// Pushes a string for the value at index, like tostring: runs __tostring if the value has one,
// and shows tables, functions and other references as "table: #3" (a per-invocation number)
// instead of their memory address.
void push_safe_tostring(lua_State* L, int index);

// Pushes ctx.log: {debug, info, warn, error}, each appending to the captured log.
void push_log_table(lua_State* L);

// Sets, on the ctx table at the top of the stack, the functions of each named capability
// ("kv", "http", "emit", "secrets"; other names are ignored). Allocates: call it protected.
void push_capabilities(lua_State* L, const std::vector<std::string>& capabilities);

}  // namespace corral::runtime
