#include "runtime/environment.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string_view>
#include <utility>

#include "invocation/random_bytes.h"
#include "runtime/json_codec.h"
#include "runtime/run_state.h"

namespace corral::runtime {
namespace {

char kObjectIdsKey;
char kPristineGlobalsKey;

// Each of these C functions may raise a Lua error (a longjmp): they keep no C++ object with a
// destructor alive across Lua calls.

// A wrapped library function (wrap_field) is a C closure whose upvalues are the original's own
// upvalues followed by the original itself. The wrapper makes its checks and then calls the
// original in place, in the same call frame: to the original (and to luaL_argerror, luaL_where
// and tracebacks) it is still the function the script called, from the script's line, so its
// errors name it ("bad argument #1 to 'setmetatable'") and carry the script's position, as in
// Lua. Calling it through lua_call instead would make the wrapper its caller: '?' and no line.
int call_original(lua_State* L) {
  int original = 1;
  while (lua_type(L, lua_upvalueindex(original + 1)) != LUA_TNONE) ++original;
  return lua_tocfunction(L, lua_upvalueindex(original))(L);
}

lua_Integer object_id(lua_State* L, int index) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kObjectIdsKey);
  lua_pushvalue(L, index);
  lua_rawget(L, -2);
  if (lua_isinteger(L, -1)) {
    lua_Integer id = lua_tointeger(L, -1);
    lua_pop(L, 2);
    return id;
  }
  lua_pop(L, 1);
  lua_Integer id = run_state(L).next_object_id++;
  lua_pushvalue(L, index);
  lua_pushinteger(L, id);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return id;
}

int sandbox_tostring(lua_State* L) {
  luaL_checkany(L, 1);
  push_safe_tostring(L, 1);
  return 1;
}

// print and ctx.log.*: arguments become one log line, joined by the separator.
int log_line(lua_State* L, const char* level, const char* separator) {
  int count = lua_gettop(L);
  luaL_Buffer buffer;
  luaL_buffinit(L, &buffer);
  for (int i = 1; i <= count; ++i) {
    if (i > 1) luaL_addstring(&buffer, separator);
    push_safe_tostring(L, i);
    luaL_addvalue(&buffer);
  }
  luaL_pushresult(&buffer);
  size_t length = 0;
  const char* text = lua_tolstring(L, -1, &length);
  bool kept = false;
  try {
    kept = append_log(run_state(L), level, std::string_view(text, length));
  } catch (const std::exception&) {
    run_state(L).trip(LimitKind::memory, run_state(L).limits.memory_bytes,
                      run_state(L).limits.memory_bytes);
  }
  if (!kept) raise_tripped(L);
  return 0;
}

int sandbox_print(lua_State* L) { return log_line(L, "info", "\t"); }

int ctx_log(lua_State* L) { return log_line(L, lua_tostring(L, lua_upvalueindex(1)), " "); }

// load(chunk [, chunkname [, mode [, env]]]) as Lua's, for source text only; its checks come
// first, in Lua's order, and the parse is charged once they have passed.
int sandbox_load(lua_State* L) {
  size_t length = 0;
  const char* source = lua_tolstring(L, 1, &length);  // a number is loaded as its text, as in Lua
  if (source == nullptr) {
    if (lua_type(L, 1) == LUA_TFUNCTION) {
      return luaL_error(L, "load: only source strings can be loaded (readers are not supported)");
    }
    luaL_optstring(L, 2, "=(load)");
    luaL_checktype(L, 1, LUA_TFUNCTION);  // raises Lua's own "function expected"
  }
  const char* mode = luaL_optstring(L, 3, "bt");
  if (std::strchr(mode, 't') == nullptr)
    return luaL_error(L, "load: binary chunks are not allowed");
  if (!lua_isnoneornil(L, 4)) {
    return luaL_error(L,
                      "load: the env argument is not supported; chunks share the script's globals");
  }
  // Without a name, Lua names the chunk after its source: [string "x = 1"].
  const char* chunk_name = luaL_optstring(L, 2, source);
  if (length > kMaxSourceBytes) {
    return luaL_error(L, "load: source of %d bytes is over the %d byte maximum",
                      static_cast<int>(length), static_cast<int>(kMaxSourceBytes));
  }
  charge_fuel(L, static_cast<int64_t>(length));
  // Always text mode, whatever mode allowed: a binary chunk gets Lua's own refusal.
  if (luaL_loadbufferx(L, source, length, chunk_name, "t") == LUA_OK) return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;  // nil and the message, as load does
}

// The options that change the collector are refused; the others, and unknown ones (which Lua
// rejects itself), go to Lua's collectgarbage.
int sandbox_collectgarbage(lua_State* L) {
  static constexpr const char* kRefused[] = {"stop",       "restart",     "setpause",
                                             "setstepmul", "incremental", "generational"};
  const char* option = luaL_optstring(L, 1, "collect");
  for (const char* refused : kRefused) {
    if (std::strcmp(option, refused) == 0) {
      return luaL_error(
          L, "collectgarbage('%s') is not allowed: scripts may not change the collector", option);
    }
  }
  return call_original(L);
}

// Weak tables (__mode) are allowed: see docs/scripting.md, "Memory", for why they are harmless
// here. A finalizer is not: it would run inside the collector, outside the fuel budget. Lua
// marks an object for finalization only if __gc is in its metatable when setmetatable runs,
// so checking here, raw, covers every way to get one.
//
// The check runs only where Lua's setmetatable would succeed (a table, a table metatable, no
// protected metatable in place): otherwise Lua's own error comes first, as in Lua.
int sandbox_setmetatable(lua_State* L) {
  if (lua_type(L, 1) == LUA_TTABLE && lua_type(L, 2) == LUA_TTABLE) {
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) return call_original(L);
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL) {
      return luaL_error(L, "setmetatable: __gc is not allowed (finalizers run outside the budget)");
    }
    lua_pop(L, 1);
  }
  return call_original(L);
}

// Whether Lua's tostring would show the value's address: a reference without __tostring. Only
// those are converted ahead of string.format; a __tostring is left for Lua's own format to call,
// in order, so that an earlier bad argument stops it as in Lua.
bool shows_an_address(lua_State* L, int index) {
  switch (lua_type(L, index)) {
    case LUA_TNIL:
    case LUA_TBOOLEAN:
    case LUA_TNUMBER:
    case LUA_TSTRING:
      return false;
    default:
      if (luaL_getmetafield(L, index, "__tostring") == LUA_TNIL) return true;
      lua_pop(L, 1);
      return false;
  }
}

int sandbox_string_format(lua_State* L) {
  size_t length = 0;
  const char* format = luaL_checklstring(L, 1, &length);
  int argument = 1;
  for (size_t i = 0; i < length; ++i) {
    if (format[i] != '%') continue;
    if (++i < length && format[i] == '%') continue;
    while (i < length && std::strchr("-+ #0", format[i]) != nullptr) ++i;
    while (i < length && format[i] >= '0' && format[i] <= '9') ++i;
    if (i < length && format[i] == '.') ++i;
    while (i < length && format[i] >= '0' && format[i] <= '9') ++i;
    if (i >= length) break;  // the original reports the malformed format
    ++argument;
    if (format[i] == 'p') {
      return luaL_error(L, "string.format: '%%p' is not allowed (it would reveal an address)");
    }
    if (format[i] == 's' && argument <= lua_gettop(L) && shows_an_address(L, argument)) {
      push_safe_tostring(L, argument);
      lua_replace(L, argument);
    }
  }
  return call_original(L);
}

// Lua's limit on the length of a string built by the string library (lstrlib.c, MAXSIZE).
constexpr size_t kMaxStringLibraryResult =
    sizeof(size_t) < sizeof(int) ? SIZE_MAX : static_cast<size_t>(INT_MAX);

// The charged functions below make Lua's own checks first, in Lua's order: a call Lua refuses
// goes to the original, which raises (or returns) exactly what Lua does, and costs no more than
// the call. Only work that will really happen is charged, before it happens.

int sandbox_string_rep(lua_State* L) {
  size_t length = 0, separator_length = 0;
  luaL_checklstring(L, 1, &length);
  lua_Integer count = luaL_checkinteger(L, 2);
  luaL_optlstring(L, 3, "", &separator_length);
  if (count <= 0 || length + separator_length == 0) {
    lua_pushliteral(L, "");  // nothing to build: do not loop count times over nothing
    return 1;
  }
  size_t piece = length + separator_length;
  if (piece < length || piece > kMaxStringLibraryResult / static_cast<lua_Unsigned>(count)) {
    return call_original(L);  // "resulting string too large"
  }
  charge_fuel(L, count);
  return call_original(L);
}

// One unit of fuel per element in first..last, computed in unsigned arithmetic: the span of
// hostile bounds can overflow a signed type.
void charge_for_range(lua_State* L, lua_Integer first, lua_Integer last) {
  if (last < first) return;
  auto span = static_cast<lua_Unsigned>(last) - static_cast<lua_Unsigned>(first);
  charge_fuel(
      L, span >= static_cast<lua_Unsigned>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(span) + 1);
}

// ltablib.c's checktab: a table, or a value whose metatable has the metamethods the operation
// needs; otherwise Lua's "table expected".
constexpr int kTableRead = 1, kTableWrite = 2, kTableLength = 4;
void check_table_like(lua_State* L, int arg, int needs) {
  if (lua_type(L, arg) == LUA_TTABLE) return;
  int pushed = 1;
  bool usable = lua_getmetatable(L, arg) != 0;
  for (auto [need, field] : {std::pair{kTableRead, "__index"}, std::pair{kTableWrite, "__newindex"},
                             std::pair{kTableLength, "__len"}}) {
    if (!usable || (needs & need) == 0) continue;
    lua_pushstring(L, field);
    ++pushed;
    usable = lua_rawget(L, -pushed) != LUA_TNIL;
  }
  if (!usable) luaL_checktype(L, arg, LUA_TTABLE);
  lua_pop(L, pushed);
}

int sandbox_table_move(lua_State* L) {
  lua_Integer first = luaL_checkinteger(L, 2);
  lua_Integer last = luaL_checkinteger(L, 3);
  lua_Integer target = luaL_checkinteger(L, 4);
  int destination = lua_isnoneornil(L, 5) ? 1 : 5;
  check_table_like(L, 1, kTableRead);
  check_table_like(L, destination, kTableWrite);
  if (last >= first) {
    luaL_argcheck(L, first > 0 || last < LUA_MAXINTEGER + first, 3, "too many elements to move");
    luaL_argcheck(L, target <= LUA_MAXINTEGER - (last - first + 1) + 1, 4,
                  "destination wrap around");
    charge_for_range(L, first, last);
  }
  return call_original(L);
}

void add_concat_field(lua_State* L, luaL_Buffer* buffer, lua_Integer index) {
  lua_geti(L, 1, index);
  if (!lua_isstring(L, -1)) {
    luaL_error(L, "invalid value (%s) at index %I in table for 'concat'", luaL_typename(L, -1),
               static_cast<LUAI_UACINT>(index));
  }
  luaL_addvalue(buffer);
}

// table.concat, as Lua's (ltablib.c, tconcat), charged as it goes: Lua stops at the first value
// that is not a string or a number, so a range far larger than the table only costs the
// elements really visited.
int sandbox_table_concat(lua_State* L) {
  check_table_like(L, 1, kTableRead | kTableLength);
  lua_Integer last = luaL_len(L, 1);
  size_t separator_length = 0;
  const char* separator = luaL_optlstring(L, 2, "", &separator_length);
  lua_Integer index = luaL_optinteger(L, 3, 1);
  last = luaL_optinteger(L, 4, last);
  luaL_Buffer buffer;
  luaL_buffinit(L, &buffer);
  lua_Integer charged_until = index;  // elements before it are paid for
  for (; index < last; ++index) {
    if (index == charged_until) {
      // Unsigned: the span of hostile bounds can overflow a signed type.
      auto remaining = static_cast<lua_Unsigned>(last) - static_cast<lua_Unsigned>(index);
      charged_until = remaining > kFuelStep ? index + kFuelStep : last;
      charge_for_range(L, index, charged_until - 1);
    }
    add_concat_field(L, &buffer, index);
    luaL_addlstring(&buffer, separator, separator_length);
  }
  if (index == last) {
    charge_fuel(L, 1);
    add_concat_field(L, &buffer, index);
  }
  luaL_pushresult(&buffer);
  return 1;
}

int sandbox_table_unpack(lua_State* L) {
  lua_Integer first = luaL_optinteger(L, 2, 1);
  if (lua_isnoneornil(L, 3)) {
    // Lua's default is #t, which may run __len: computed once, and handed on as the argument.
    lua_Integer length = luaL_len(L, 1);
    lua_settop(L, std::max(lua_gettop(L), 3));
    lua_pushinteger(L, length);
    lua_replace(L, 3);
  }
  lua_Integer last = luaL_checkinteger(L, 3);
  if (first <= last) {
    auto span = static_cast<lua_Unsigned>(last) - static_cast<lua_Unsigned>(first);
    if (span >= static_cast<lua_Unsigned>(INT_MAX) ||
        !lua_checkstack(L, static_cast<int>(span) + 1))
      return call_original(L);  // "too many results to unpack"
    charge_for_range(L, first, last);
  }
  return call_original(L);
}

int sandbox_new_coroutine(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  // A new coroutine starts with a fresh hook count: charge one metering step up front so that
  // many short coroutines cannot run unmetered.
  charge_fuel(L, kFuelStep);
  return call_original(L);
}

// Lua calls an xpcall message handler at the point of the error, which for a limit is inside
// the metering hook, where hooks are off: a handler that then loops would run unmetered. Once a
// limit has tripped, the script's handler is skipped and the error passes through unchanged.
int guarded_message_handler(lua_State* L) {
  if (run_state(L).tripped) return 1;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

int finish_xpcall(lua_State* L, int status, lua_KContext results_from) {
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_rotate(L, -2, 1);  // false, error object
    return 2;
  }
  return lua_gettop(L) - static_cast<int>(results_from);
}

// xpcall(f, handler, ...) with the handler guarded as above; yields inside f still work.
int sandbox_xpcall(lua_State* L) {
  int count = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, guarded_message_handler, 1);
  lua_replace(L, 2);
  lua_pushboolean(L, 1);  // the leading true of a successful call
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);  // handler at 2, then true and f below f's arguments
  int status = lua_pcallk(L, count - 2, LUA_MULTRET, 2, 2, finish_xpcall);
  return finish_xpcall(L, status, 2);
}

constexpr int kMaxCloseDepth = 200;

// Closing a coroutine runs its pending __close handlers. A coroutine killed by a limit died
// inside the hook with hooks off, so its handlers would run unmetered: once a limit has
// tripped, nothing is closed and the limit is raised again instead.
int close_coroutine(lua_State* L, lua_State* co) {
  RunState& state = run_state(L);
  if (state.tripped) raise_tripped(L);
  if (state.close_depth >= kMaxCloseDepth) {
    luaL_error(L, "coroutines closed inside __close handlers nest deeper than %d", kMaxCloseDepth);
  }
  ++state.close_depth;
  state.running = co;  // the handlers run in co
  int status = lua_resetthread(co);
  state.running = L;
  --state.close_depth;
  if (state.tripped) raise_tripped(L);
  return status;
}

int sandbox_coroutine_close(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  lua_State* co = lua_tothread(L, 1);
  lua_Debug frame;
  bool running = co == L;
  bool normal = !running && lua_status(co) == LUA_OK && lua_getstack(co, 0, &frame) > 0;
  if (running || normal) {
    return luaL_error(L, "cannot close a %s coroutine", running ? "running" : "normal");
  }
  int status = close_coroutine(L, co);
  if (status == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

// lua_resume, with co as the running thread meanwhile (RunState::running). lua_resume does not
// raise, so the caller is always the running thread again afterwards.
int resume_tracked(lua_State* L, lua_State* co, int count, int* results) {
  RunState& state = run_state(L);
  state.running = co;
  int status = lua_resume(co, L, count, results);
  state.running = L;
  return status;
}

// coroutine.resume, as Lua's own, with the running thread tracked.
int sandbox_coroutine_resume(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  lua_State* co = lua_tothread(L, 1);
  int count = lua_gettop(L) - 1;
  if (!lua_checkstack(co, count)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "too many arguments to resume");
    return 2;
  }
  lua_xmove(L, co, count);
  int results = 0;
  int status = resume_tracked(L, co, count, &results);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, results + 2)) {
      lua_pop(co, results);
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "too many results to resume");
      return 2;
    }
    lua_pushboolean(L, 1);
    lua_xmove(co, L, results);
    return results + 1;
  }
  // The error object, then false below it: co may be L itself (a coroutine resuming itself),
  // where the move is no move at all.
  lua_xmove(co, L, 1);
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

// The function coroutine.wrap returns: resumes its coroutine; on error, closes it (through
// close_coroutine, so limits and nesting stay enforced) and raises the error in the caller.
int resume_wrapped(lua_State* L) {
  lua_State* co = lua_tothread(L, lua_upvalueindex(1));
  int count = lua_gettop(L);
  if (!lua_checkstack(co, count)) return luaL_error(L, "too many arguments to resume");
  lua_xmove(L, co, count);
  int results = 0;
  int status = resume_tracked(L, co, count, &results);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, results + 1)) return luaL_error(L, "too many results to resume");
    lua_xmove(co, L, results);
    return results;
  }
  lua_xmove(co, L, 1);  // the error object
  if (run_state(L).tripped) raise_tripped(L);
  bool memory_error = status == LUA_ERRMEM;
  if (lua_status(co) != LUA_OK && lua_status(co) != LUA_YIELD) {
    int closed = close_coroutine(L, co);
    if (closed != LUA_OK) {
      lua_pop(L, 1);
      lua_xmove(co, L, 1);  // an error in a __close handler replaces the original one
    }
  }
  if (!memory_error && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

int sandbox_coroutine_wrap(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  charge_fuel(L, kFuelStep);
  lua_State* co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, resume_wrapped, 1);
  return 1;
}

void push_random_seed(lua_State* L) {
  lua_Integer seed[2] = {0, 0};
  fill_unpredictable(reinterpret_cast<unsigned char*>(seed), sizeof seed);
  lua_pushinteger(L, seed[0]);
  lua_pushinteger(L, seed[1]);
}

// math.randomseed(x [, y]) seeds deterministically and returns x and y, as in Lua; with no
// argument it reseeds unpredictably (random_bytes.h) and returns nothing, where Lua returns the
// seed it chose: the kernel's bytes are not shown to the script.
int sandbox_randomseed(lua_State* L) {
  if (!lua_isnone(L, 1)) return call_original(L);
  push_random_seed(L);
  call_original(L);
  return 0;
}

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

// os.clock counts this invocation's CPU time only, not the worker process's history.
int sandbox_clock(lua_State* L) {
  lua_pushnumber(L, thread_cpu_seconds() - lua_tonumber(L, lua_upvalueindex(1)));
  return 1;
}

int json_array(lua_State* L) {
  if (lua_isnoneornil(L, 1)) {
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getmetatable(L, 1))
      return luaL_error(L, "json.array: the table already has a metatable");
    lua_settop(L, 1);
  }
  mark_as_array(L, -1);
  return 1;
}

// Replaces the C function at the top of the stack by a C closure of wrapper that calls it in
// place (call_original): the closure's upvalues are the original's, then the original.
void replace_by_wrapper(lua_State* L, lua_CFunction wrapper) {
  int original = lua_gettop(L);
  if (!lua_iscfunction(L, original)) luaL_error(L, "only C functions can be wrapped");
  int upvalues = 0;
  while (lua_getupvalue(L, original, upvalues + 1) != nullptr) ++upvalues;
  lua_pushvalue(L, original);
  lua_pushcclosure(L, wrapper, upvalues + 1);
  lua_replace(L, original);
}

// Replaces table[name] (table at -1) by a wrapper of its current value.
void wrap_field(lua_State* L, const char* name, lua_CFunction wrapper) {
  lua_getfield(L, -1, name);
  replace_by_wrapper(L, wrapper);
  lua_setfield(L, -2, name);
}

void remove_field(lua_State* L, const char* name) {
  lua_pushnil(L);
  lua_setfield(L, -2, name);
}

// Opens one standard library without making it global; leaves its table on the stack.
void open_library(lua_State* L, const char* name, lua_CFunction opener) {
  luaL_requiref(L, name, opener, 0);
}

// Makes the table at the top of the stack (left there) the global `name` and the library Lua
// finds functions in when it names them: an error raised in a function called from C (pcall(
// os.time, "x")) or a traceback says 'os.time' because the function is found in
// package.loaded, which scripts cannot reach.
void register_library(lua_State* L, const char* name) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_setglobal(L, name);
}

void install_base(lua_State* L) {
  open_library(L, LUA_GNAME, luaopen_base);  // the globals table itself
  for (const char* name : {"dofile", "loadfile", "warn"}) remove_field(L, name);
  lua_pushcfunction(L, sandbox_load);
  lua_setfield(L, -2, "load");
  lua_pushcfunction(L, sandbox_print);
  lua_setfield(L, -2, "print");
  lua_pushcfunction(L, sandbox_tostring);
  lua_setfield(L, -2, "tostring");
  wrap_field(L, "collectgarbage", sandbox_collectgarbage);
  wrap_field(L, "setmetatable", sandbox_setmetatable);
  lua_pushcfunction(L, sandbox_xpcall);
  lua_setfield(L, -2, "xpcall");
  lua_pop(L, 1);
}

void install_string(lua_State* L) {
  open_library(L, LUA_STRLIBNAME, luaopen_string);
  // Removed from the real table, not just hidden: ("").dump reaches it through the metatable.
  remove_field(L, "dump");
  wrap_field(L, "format", sandbox_string_format);
  wrap_field(L, "rep", sandbox_string_rep);
  lua_setglobal(L, LUA_STRLIBNAME);

  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");  // getmetatable("") answers false; nothing can replace it
  lua_pop(L, 2);
}

void install_table(lua_State* L) {
  open_library(L, LUA_TABLIBNAME, luaopen_table);
  wrap_field(L, "move", sandbox_table_move);
  wrap_field(L, "concat", sandbox_table_concat);
  wrap_field(L, "unpack", sandbox_table_unpack);
  lua_setglobal(L, LUA_TABLIBNAME);
}

void install_math(lua_State* L) {
  open_library(L, LUA_MATHLIBNAME, luaopen_math);
  lua_getfield(L, -1, "randomseed");
  push_random_seed(L);
  lua_call(L, 2, 0);
  wrap_field(L, "randomseed", sandbox_randomseed);
  lua_setglobal(L, LUA_MATHLIBNAME);
}

void install_coroutine(lua_State* L) {
  open_library(L, LUA_COLIBNAME, luaopen_coroutine);
  wrap_field(L, "create", sandbox_new_coroutine);
  lua_pushcfunction(L, sandbox_coroutine_wrap);
  lua_setfield(L, -2, "wrap");
  lua_pushcfunction(L, sandbox_coroutine_resume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, sandbox_coroutine_close);
  lua_setfield(L, -2, "close");
  lua_setglobal(L, LUA_COLIBNAME);
}

// Scripts live in UTC: the host's time zone is none of their business, and reading it would
// mean opening /etc/localtime, which the jailed worker cannot (and must not) do. os.date
// formats as if every format began with "!".
int sandbox_os_date(lua_State* L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 2);
    lua_pushliteral(L, "!%c");
    lua_replace(L, 1);
  } else if (lua_type(L, 1) == LUA_TSTRING && lua_tostring(L, 1)[0] != '!') {
    lua_pushliteral(L, "!");
    lua_pushvalue(L, 1);
    lua_concat(L, 2);
    lua_replace(L, 1);
  }
  return call_original(L);
}

lua_Integer time_field(lua_State* L, const char* name, lua_Integer fallback) {
  int type = lua_getfield(L, 1, name);
  lua_Integer value = fallback;
  if (type == LUA_TNIL) {
    if (fallback < 0) luaL_error(L, "field '%s' missing in date table", name);
  } else {
    int is_integer = 0;
    value = lua_tointegerx(L, -1, &is_integer);
    if (!is_integer) luaL_error(L, "field '%s' is not an integer", name);
    if (value < INT_MIN / 2 || value > INT_MAX / 2)
      luaL_error(L, "field '%s' is out-of-bound", name);
  }
  lua_pop(L, 1);
  return value;
}

// os.time(table) reads the table as a UTC date (timegm, not the host's mktime); the table is
// not normalised in place.
int sandbox_os_time(lua_State* L) {
  if (lua_isnoneornil(L, 1)) return call_original(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  tm date{};
  date.tm_year = static_cast<int>(time_field(L, "year", -1) - 1900);
  date.tm_mon = static_cast<int>(time_field(L, "month", -1) - 1);
  date.tm_mday = static_cast<int>(time_field(L, "day", -1));
  date.tm_hour = static_cast<int>(time_field(L, "hour", 12));
  date.tm_min = static_cast<int>(time_field(L, "min", 0));
  date.tm_sec = static_cast<int>(time_field(L, "sec", 0));
  errno = 0;
  time_t seconds = timegm(&date);
  if (seconds == static_cast<time_t>(-1) && errno != 0) {
    return luaL_error(L, "time result cannot be represented in this installation");
  }
  lua_pushinteger(L, static_cast<lua_Integer>(seconds));
  return 1;
}

void install_os(lua_State* L) {
  open_library(L, LUA_OSLIBNAME, luaopen_os);
  lua_createtable(L, 0, 3);
  const std::pair<const char*, lua_CFunction> sandboxed_functions[] = {{"time", sandbox_os_time},
                                                                       {"date", sandbox_os_date}};
  for (auto [name, sandboxed] : sandboxed_functions) {
    lua_getfield(L, -2, name);
    replace_by_wrapper(L, sandboxed);
    lua_setfield(L, -2, name);
  }
  lua_pushnumber(L, thread_cpu_seconds());
  lua_pushcclosure(L, sandbox_clock, 1);
  lua_setfield(L, -2, "clock");
  register_library(L, LUA_OSLIBNAME);  // in place of the full os library, which stays unreachable
  lua_pop(L, 2);
}

void install_json(lua_State* L) {
  install_json_markers(L);
  lua_createtable(L, 0, 2);
  push_json_null(L);
  lua_setfield(L, -2, "null");
  lua_pushcfunction(L, json_array);
  lua_setfield(L, -2, "array");
  register_library(L, "json");
  lua_pop(L, 1);
}

}  // namespace

void install_environment(lua_State* L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kPristineGlobalsKey);
  install_base(L);
  install_string(L);
  install_table(L);
  install_math(L);
  open_library(L, LUA_UTF8LIBNAME, luaopen_utf8);
  lua_setglobal(L, LUA_UTF8LIBNAME);
  install_coroutine(L);
  install_os(L);
  install_json(L);
}

namespace {

// Makes the table at the top of the stack (left there) the globals: of chunks loaded from now
// on, of tracebacks (which name a global function by finding it in the loaded-modules table),
// and of the string methods (what ("x"):upper() looks in is its `string`).
void use_globals(lua_State* L) {
  int globals = lua_gettop(L);
  lua_pushvalue(L, globals);
  lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, globals);
  lua_setfield(L, -2, LUA_GNAME);
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_getfield(L, globals, LUA_STRLIBNAME);
  lua_setfield(L, -2, "__index");
  lua_settop(L, globals);
}

// A new table with the same fields as the table at index (values shared, not copied).
void push_shallow_copy(lua_State* L, int index) {
  index = lua_absindex(L, index);
  lua_createtable(L, 0, 32);
  lua_pushnil(L);
  while (lua_next(L, index) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
}

}  // namespace

void install_fresh_environment(lua_State* L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kPristineGlobalsKey);
  int pristine = lua_gettop(L);
  lua_createtable(L, 0, 48);
  int fresh = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, pristine) != 0) {
    // Library tables are copied: a script that changes string.upper or math.pi changes its own
    // copy. Their functions hold no script-reachable state but math.random's, reseeded below.
    if (lua_type(L, -1) == LUA_TTABLE && !lua_rawequal(L, -1, pristine)) {
      push_shallow_copy(L, -1);
      lua_replace(L, -2);
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, fresh);
  }
  lua_pushvalue(L, fresh);
  lua_setfield(L, fresh, LUA_GNAME);

  lua_getfield(L, fresh, LUA_MATHLIBNAME);
  lua_getfield(L, -1, "randomseed");
  // Reseeded unpredictably (random_bytes.h): no sequence carries over from an earlier invocation.
  lua_call(L, 0, 0);
  lua_pop(L, 1);

  // os.clock starts where the invocation started its CPU count, which saves a clock call.
  RunState* run = *static_cast<RunState**>(lua_getextraspace(L));
  lua_getfield(L, fresh, LUA_OSLIBNAME);
  lua_pushnumber(
      L, run && run->cpu_start_seconds >= 0 ? run->cpu_start_seconds : thread_cpu_seconds());
  lua_pushcclosure(L, sandbox_clock, 1);
  lua_setfield(L, -2, "clock");
  lua_pop(L, 1);

  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kObjectIdsKey);

  use_globals(L);
  lua_settop(L, pristine - 1);
}

void restore_pristine_environment(lua_State* L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kPristineGlobalsKey);
  use_globals(L);
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kObjectIdsKey);
}

void push_safe_tostring(lua_State* L, int index) {
  index = lua_absindex(L, index);
  if (luaL_callmeta(L, index, "__tostring")) {
    if (!lua_isstring(L, -1)) luaL_error(L, "'__tostring' must return a string");
    lua_tolstring(L, -1, nullptr);  // a number becomes its text, as in Lua
    return;
  }
  switch (lua_type(L, index)) {
    case LUA_TNIL:
    case LUA_TBOOLEAN:
    case LUA_TNUMBER:
    case LUA_TSTRING:
      luaL_tolstring(L, index, nullptr);
      return;
    default:
      if (is_json_null(L, index)) {
        lua_pushliteral(L, "json.null");
        return;
      }
      lua_Integer id = object_id(L, index);
      // A __name in the metatable names the kind, as in Lua ("point: #3").
      int name_type = luaL_getmetafield(L, index, "__name");
      const char* kind = name_type == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, index);
      lua_pushfstring(L, "%s: #%I", kind, static_cast<LUAI_UACINT>(id));
      if (name_type != LUA_TNIL) lua_remove(L, -2);
  }
}

void push_log_table(lua_State* L) {
  lua_createtable(L, 0, 4);
  for (const char* level : {"debug", "info", "warn", "error"}) {
    lua_pushstring(L, level);
    lua_pushcclosure(L, ctx_log, 1);
    lua_setfield(L, -2, level);
  }
}

}  // namespace corral::runtime
