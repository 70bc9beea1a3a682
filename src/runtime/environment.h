// The curated global environment a script sees: an explicit allowlist (docs/scripting.md).
// Only the wanted libraries are opened; functions that reach the host, reveal addresses or
// change process-wide state are absent or wrapped. Internal to the runtime.
#pragma once

#include <lua.hpp>

#include <string>
#include <vector>

namespace corral::runtime {

inline constexpr size_t kMaxSourceBytes = 1 << 20;

// Builds the globals of a fresh state. Allocates, so call it inside a protected call.
void install_environment(lua_State* L);

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
