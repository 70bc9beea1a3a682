#include "runtime/runtime.h"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/environment.h"
#include "runtime/json_codec.h"
#include "runtime/run_state.h"

namespace corral::runtime {
namespace {

constexpr const char* kChunkName = "=script";
constexpr int kTracebackFrames = 8;

double thread_cpu_ms() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

// Chunks compiled from sources at most this long are kept for the next invocation of the same
// source, at most kCachedChunks of them: a worker serves one tenant's few scripts.
constexpr size_t kCacheableSourceBytes = 64 << 10;
constexpr size_t kCachedChunks = 8;

Limits host_limits() {
  Limits limits;
  limits.memory_bytes = INT64_MAX / 2;
  limits.timeout_ms = 0;
  return limits;
}

// Keeps the frames that help a script writer: drops the header and the host's own C frames.
std::string shorten_traceback(std::string_view traceback) {
  std::string kept;
  int frames = 0;
  size_t start = 0;
  while (start < traceback.size() && frames < kTracebackFrames) {
    size_t end = traceback.find('\n', start);
    if (end == std::string_view::npos) end = traceback.size();
    std::string_view line = traceback.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && line.front() == '\t') line.remove_prefix(1);
    if (line.empty() || line == "stack traceback:" || line == "[C]: in ?") continue;
    if (!kept.empty()) kept += '\n';
    kept.append(line);
    ++frames;
  }
  return kept;
}

// The message handler of every protected call into script code: records where the error
// happened and a traceback while the stack is still there. The error object itself is
// returned unchanged.
int message_handler(lua_State* L) {
  RunState& state = run_state(L);
  lua_Debug frame;
  for (int level = 0; lua_getstack(L, level, &frame); ++level) {
    lua_getinfo(L, "Sl", &frame);
    if (frame.currentline > 0 && std::strcmp(frame.source, kChunkName) == 0) {
      state.error_line = frame.currentline;
      break;
    }
  }
  switch (lua_type(L, 1)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
      state.error_message = lua_tostring(L, 1);
      break;
    case LUA_TTABLE:
      try {
        state.error_message = "error object: " + encode_json(L, 1, "error", 4096).text;
      } catch (const std::exception&) {
        state.error_message = "error object is a table value";
      }
      break;
    default:
      state.error_message = std::string("error object is a ") + luaL_typename(L, 1) + " value";
  }
  luaL_traceback(L, L, nullptr, 1);
  state.traceback = lua_tostring(L, -1);
  lua_pop(L, 1);
  return 1;
}

int open_environment(lua_State* L) {
  install_environment(L);
  return 0;
}

int open_fresh_environment(lua_State* L) {
  install_fresh_environment(L);
  return 0;
}

// luaL_ref of the argument, protected: the registry may have to grow.
int reference_value(lua_State* L) {
  lua_settop(L, 1);
  lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
  return 1;
}

int close_environment(lua_State* L) {
  restore_pristine_environment(L);
  return 0;
}

// Pushes handle's two arguments: the decoded input and ctx.
int push_arguments(lua_State* L) {
  const auto& request = *static_cast<const InvocationRequest*>(lua_touserdata(L, 1));
  lua_settop(L, 0);
  push_json(L, request.input);
  lua_createtable(L, 0, 2 + static_cast<int>(request.capabilities.size()));
  push_log_table(L);
  lua_setfield(L, -2, "log");
  push_capabilities(L, request.capabilities);
  lua_pushlstring(L, request.invocation_id.data(), request.invocation_id.size());
  lua_setfield(L, -2, "invocation_id");
  return 2;
}

// Finds where a syntax error is: "script:LINE: ... near 'TOKEN'" gives the line, and the token's
// place in that line gives the column (Lua itself reports no column).
void locate_syntax_error(const std::string& source, const std::string& message, int& line,
                         int& column) {
  std::string prefix = std::string(kChunkName + 1) + ":";
  if (message.rfind(prefix, 0) != 0) return;
  line = std::atoi(message.c_str() + prefix.size());
  if (line <= 0) return;
  size_t begin = 0;
  for (int i = 1; i < line && begin != std::string::npos; ++i) {
    begin = source.find('\n', begin);
    if (begin != std::string::npos) ++begin;
  }
  if (begin == std::string::npos) return;
  size_t end = source.find('\n', begin);
  std::string text =
      source.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  size_t near = message.rfind("near '");
  if (near != std::string::npos) {
    size_t token_begin = near + 6;
    size_t token_end = message.find('\'', token_begin);
    std::string token = message.substr(token_begin, token_end - token_begin);
    // The failing token is usually the last of its kind on the line: earlier ones parsed.
    size_t at = token.empty() ? std::string::npos : text.rfind(token);
    if (at != std::string::npos) column = static_cast<int>(at) + 1;
  } else if (message.find("near <eof>") != std::string::npos) {
    column = static_cast<int>(text.size()) + 1;
  }
}

}  // namespace

// The state an Engine keeps between invocations: its allocator counts against `host` (no
// limit) while no invocation runs, and against the invocation's RunState while one does.
struct Engine::Resident {
  RunState host{host_limits()};
  lua_State* L = nullptr;
  struct Chunk {
    std::string source;
    int ref;
  };
  std::vector<Chunk> chunks;      // most recently used last
  int running_chunk = LUA_NOREF;  // the kept chunk the invocation runs, whose _ENV is its globals
  double cpu_ms_at_last_finish = -1;  // the thread's CPU clock when the last invocation finished

  ~Resident() { discard(); }

  // Makes the state if there is none. False if memory for it cannot be had.
  bool ready() {
    if (L) return true;
    L = lua_newstate(metered_alloc, &host);
    if (!L) return false;
    *static_cast<RunState**>(lua_getextraspace(L)) = &host;
    lua_pushcfunction(L, open_environment);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
      discard();
      return false;
    }
    lua_gc(L, LUA_GCCOLLECT);
    return true;
  }

  // Closes the state; the next invocation makes a new one. `counted` is the RunState whose
  // allocator count is current.
  void discard(RunState* counted = nullptr) {
    if (!L) return;
    if (counted) host.memory_in_use = counted->memory_in_use;
    lua_setallocf(L, metered_alloc, &host);
    *static_cast<RunState**>(lua_getextraspace(L)) = &host;
    lua_close(L);
    L = nullptr;
    chunks.clear();
    running_chunk = LUA_NOREF;
    host.memory_in_use = 0;
  }

  // Pushes the compiled chunk of `source` if it is kept, with its _ENV set to the current
  // globals. False (nothing pushed) if it is not kept.
  bool push_chunk(const std::string& source) {
    for (size_t i = 0; i < chunks.size(); ++i) {
      if (chunks[i].source != source) continue;
      std::rotate(chunks.begin() + static_cast<std::ptrdiff_t>(i),
                  chunks.begin() + static_cast<std::ptrdiff_t>(i) + 1, chunks.end());
      running_chunk = chunks.back().ref;
      lua_rawgeti(L, LUA_REGISTRYINDEX, running_chunk);
      set_chunk_environment(-1);
      return true;
    }
    return false;
  }

  static bool worth_keeping(const std::string& source) {
    return source.size() <= kCacheableSourceBytes;
  }

  // Keeps the chunk held by registry reference `ref` for later runs of `source`.
  void keep_chunk(const std::string& source, int ref) {
    if (chunks.size() == kCachedChunks) {
      luaL_unref(L, LUA_REGISTRYINDEX, chunks.front().ref);
      chunks.erase(chunks.begin());
    }
    chunks.push_back({source, ref});
    running_chunk = ref;
  }

  // A kept chunk's first upvalue is its _ENV: pointed at the globals of the invocation running
  // it, and back at the pristine ones afterwards, so that no invocation's globals outlive it.
  void set_chunk_environment(int index) {
    index = lua_absindex(L, index);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    if (!lua_setupvalue(L, index, 1)) lua_pop(L, 1);
  }

  void release_running_chunk() {
    if (running_chunk == LUA_NOREF) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, running_chunk);
    set_chunk_environment(-1);
    lua_pop(L, 1);
    running_chunk = LUA_NOREF;
  }
};

namespace {

class Invocation {
 public:
  Invocation(Engine::Resident& resident, const InvocationRequest& request, BrokerLink* broker,
             const EngineOptions& options)
      : resident_(resident), options_(options), request_(request), state_(request.limits) {
    result_.invocation_id = request.invocation_id;
    state_.broker = broker;
    double cpu_start_ms = options.count_cpu_between_runs && resident.cpu_ms_at_last_finish >= 0
                              ? resident.cpu_ms_at_last_finish
                              : thread_cpu_ms();
    state_.cpu_start_seconds = cpu_start_ms / 1000;
  }

  // An invocation that did not finish (an exception) leaves the state in no known shape.
  ~Invocation() {
    if (attached_) resident_.discard(&state_);
  }

  InvocationResult run() {
    execute();
    finish();
    return std::move(result_);
  }

 private:
  void execute() {
    if (request_.source.size() > kMaxSourceBytes) {
      return invalid("the source is " + std::to_string(request_.source.size()) +
                     " bytes, over the maximum of " + std::to_string(kMaxSourceBytes));
    }
    if (!resident_.ready()) {
      state_.trip(LimitKind::memory, 1, state_.limits.memory_bytes);
      return;
    }
    lua_State* L = resident_.L;
    attach();

    lua_pushcfunction(L, open_fresh_environment);
    if (protect(lua_pcall(L, 0, 0, 0)) != LUA_OK) return;

    lua_pushcfunction(L, message_handler);
    int handler = lua_gettop(L);

    if (!resident_.push_chunk(request_.source)) {
      int status =
          luaL_loadbufferx(L, request_.source.data(), request_.source.size(), kChunkName, "t");
      if (protect(status) != LUA_OK) {
        if (status != LUA_ERRSYNTAX) return;
        std::string message = lua_tostring(L, -1);
        locate_syntax_error(request_.source, message, result_.line, result_.column);
        return invalid("syntax error: " + message);
      }
      if (Engine::Resident::worth_keeping(request_.source)) {
        lua_pushcfunction(L, reference_value);
        lua_pushvalue(L, -2);
        if (protect(lua_pcall(L, 1, 1, 0)) != LUA_OK) return;
        resident_.keep_chunk(request_.source, static_cast<int>(lua_tointeger(L, -1)));
        lua_pop(L, 1);
      }
    }
    if (!settle_memory(L)) return;  // compiling may have gone past the limit
    install_meter(L);
    if (protect(lua_pcall(L, 0, 0, handler)) != LUA_OK) return script_error();

    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_pushliteral(L, "handle");
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) != LUA_TFUNCTION) {
      return invalid(
          "the script defines no global function 'handle'; define it as "
          "'function handle(input, ctx) ... end'");
    }
    lua_pushcfunction(L, push_arguments);
    lua_pushlightuserdata(L, const_cast<InvocationRequest*>(&request_));
    if (protect(lua_pcall(L, 1, 2, 0)) != LUA_OK) {
      return invalid(std::string("the input cannot be given to the script: ") +
                     lua_tostring(L, -1));
    }
    if (protect(lua_pcall(L, 2, 1, handler)) != LUA_OK) return script_error();
    encode_output();
  }

  // Counts the state's memory against this invocation from here on.
  void attach() {
    lua_State* L = resident_.L;
    state_.memory_in_use = resident_.host.memory_in_use;
    state_.memory_base = state_.memory_in_use;
    state_.memory_peak = state_.memory_in_use;
    lua_setallocf(L, metered_alloc, &state_);
    *static_cast<RunState**>(lua_getextraspace(L)) = &state_;
    state_.running = L;
    attached_ = true;
  }

  // Hands the state back for the next invocation: nothing of this one stays reachable, and what
  // it allocated is collected. A state that hit a limit is closed instead: a limit can stop a
  // library function halfway, and the next invocation must not find its leftovers.
  void detach() {
    if (!attached_) return;
    attached_ = false;
    if (state_.tripped) return resident_.discard(&state_);
    lua_State* L = resident_.L;
    lua_sethook(L, nullptr, 0, 0);
    lua_settop(L, 0);
    resident_.host.memory_in_use = state_.memory_in_use;
    lua_setallocf(L, metered_alloc, &resident_.host);
    *static_cast<RunState**>(lua_getextraspace(L)) = &resident_.host;
    lua_pushcfunction(L, close_environment);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) return resident_.discard();
    resident_.release_running_chunk();
    lua_gc(L, LUA_GCCOLLECT);
  }

  // Memory errors become the memory limit: only a refused allocation raises one, and the
  // allocator trips the limit before it refuses (this is the backstop).
  int protect(int status) {
    if (status == LUA_ERRMEM) {
      state_.trip(LimitKind::memory, static_cast<int64_t>(state_.memory_used()) + 1,
                  state_.limits.memory_bytes);
    }
    return status;
  }

  void encode_output() {
    try {
      auto encoded =
          encode_json(resident_.L, -1, "output", static_cast<size_t>(request_.limits.output_bytes));
      if (encoded.size > static_cast<size_t>(request_.limits.output_bytes)) {
        state_.trip(LimitKind::output_size, static_cast<int64_t>(encoded.size),
                    request_.limits.output_bytes);
        return;
      }
      if (options_.output_as_text) {
        result_.output_json = std::move(encoded.text);
      } else {
        result_.output = nlohmann::json::parse(encoded.text);
      }
      result_.outcome = Outcome::ok;
    } catch (const EncodeError& error) {
      result_.outcome = Outcome::script_error;
      result_.message = std::string("the result cannot be encoded as JSON: ") + error.what();
    }
  }

  void invalid(std::string message) {
    result_.outcome = Outcome::invalid;
    result_.message = std::move(message);
  }

  void script_error() {
    result_.outcome = denied_uncaught() ? Outcome::denied : Outcome::script_error;
    result_.message =
        state_.error_message.empty() ? "the script raised an error" : state_.error_message;
    result_.line = state_.error_line;
    result_.traceback = shorten_traceback(state_.traceback);
  }

  // The script ended with the error a denied capability call raised, perhaps re-raised with
  // error(e), which prefixes a position.
  bool denied_uncaught() const {
    const std::string& message = state_.error_message;
    for (const auto& denial : state_.denials) {
      if (message.size() >= denial.size() &&
          message.compare(message.size() - denial.size(), denial.size(), denial) == 0) {
        return true;
      }
    }
    return false;
  }

  void finish() {
    // The host's own flags decide, never the script's messages: a limit that tripped wins
    // whatever the script did afterwards. Memory let through past the limit since the last
    // check is settled now.
    if (attached_) settle_memory(resident_.L);
    if (state_.tripped) {
      result_.outcome = Outcome::limit_exceeded;
      result_.limit = state_.tripped;
      result_.used = state_.tripped_used;
      result_.allowed = state_.tripped_allowed;
      result_.message = std::string(to_string(*state_.tripped)) + " limit exceeded";
      result_.line = 0;
      result_.column = 0;
      result_.traceback.clear();
      result_.output = nullptr;
      result_.output_json.clear();
    }
    detach();
    result_.logs = std::move(state_.logs);
    result_.stats.fuel_used = state_.fuel_used;
    result_.stats.memory_peak_bytes = static_cast<int64_t>(state_.memory_peak - state_.memory_base);
    auto started = state_.deadline - std::chrono::milliseconds(request_.limits.timeout_ms);
    result_.stats.wall_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    double cpu_now_ms = thread_cpu_ms();
    result_.stats.cpu_ms = cpu_now_ms - state_.cpu_start_seconds * 1000;
    resident_.cpu_ms_at_last_finish = cpu_now_ms;
  }

  Engine::Resident& resident_;
  const EngineOptions& options_;
  const InvocationRequest& request_;
  RunState state_;
  bool attached_ = false;
  InvocationResult result_;
};

}  // namespace

Engine::Engine(EngineOptions options)
    : options_(options), resident_(std::make_unique<Resident>()) {}
Engine::~Engine() = default;

InvocationResult Engine::run(const InvocationRequest& request, BrokerLink* broker) {
  try {
    return Invocation(*resident_, request, broker, options_).run();
  } catch (const std::exception& error) {
    InvocationResult result;
    result.invocation_id = request.invocation_id;
    result.outcome = Outcome::crashed;
    result.message = std::string("the runtime failed: ") + error.what();
    return result;
  }
}

void Engine::restart_cpu_count() { resident_->cpu_ms_at_last_finish = -1; }

InvocationResult run_invocation(const InvocationRequest& request, BrokerLink* broker) {
  return Engine().run(request, broker);
}

}  // namespace corral::runtime
