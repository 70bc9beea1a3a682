// ctx's capability functions (docs/scripting.md, "Capabilities"). Each call is encoded as JSON,
// counted against the subrequests limit, and handed to the BrokerLink; the runtime itself
// reaches nothing outside the process.
#include <lua.hpp>
#include <string>

#include "broker/secret_reference.h"
#include "runtime/environment.h"
#include "runtime/json_codec.h"
#include "runtime/run_state.h"

namespace corral::runtime {
namespace {

// An argument of a capability call (a kv value, an http body) may be at most this large when
// encoded; the broker's own limits are usually smaller.
constexpr size_t kMaxArgumentBytes = 4u << 20;
// The first argument of every call but http.fetch names something: a kv key (at most 4,096 bytes
// under any policy), a topic or a secret. A longer one is refused here, before it is encoded and
// sent: a denied call with a huge name would cost the supervisor its parse for nothing.
constexpr size_t kMaxNameBytes = 4096;

enum class CallEnd { value, error, tripped };

// The C++ half of a call: everything that may throw happens here, so that the Lua error raised
// afterwards (a longjmp) crosses no live C++ object. What to hand to Lua is left in `state`.
CallEnd perform_call(lua_State* L, RunState& state, const char* op, int argc) {
  state.reply = nullptr;
  state.reply_error.clear();
  if (state.tripped) return CallEnd::tripped;
  if (state.broker == nullptr) {
    state.reply_error = std::string("ctx.") + op + " is not available: this run has no broker";
    return CallEnd::error;
  }
  if (++state.subrequests_used > state.limits.subrequests) {
    state.trip(LimitKind::subrequests, state.subrequests_used, state.limits.subrequests);
    return CallEnd::tripped;
  }
  if (std::string_view(op) != "http.fetch" && argc >= 1 && lua_type(L, 1) == LUA_TSTRING) {
    size_t length = 0;
    lua_tolstring(L, 1, &length);
    if (length > kMaxNameBytes) {
      state.reply_error = std::string("ctx.") + op + " argument 1 is " + std::to_string(length) +
                          " bytes, over the " + std::to_string(kMaxNameBytes) +
                          " byte maximum of a key, topic or secret name; use a shorter one";
      return CallEnd::error;
    }
  }
  try {
    // The encoder already gives JSON text: the call is assembled from it rather than parsed and
    // printed again.
    std::string call = nlohmann::json({{"op", op}}).dump();
    call.pop_back();
    call += ",\"args\":[";
    for (int i = 1; i <= argc; ++i) {
      if (i > 1) call += ',';
      if (lua_isnoneornil(L, i)) {
        call += "null";
        continue;
      }
      std::string where = std::string("ctx.") + op + " argument " + std::to_string(i);
      auto encoded = encode_json(L, i, where, kMaxArgumentBytes);
      if (encoded.size > kMaxArgumentBytes) {
        state.reply_error = where + " is " + std::to_string(encoded.size) +
                            " bytes as JSON, over the " + std::to_string(kMaxArgumentBytes) +
                            " byte maximum of a capability call";
        return CallEnd::error;
      }
      call += encoded.text;
    }
    call += "]}";
    nlohmann::json reply = parse_untrusted_json(state.broker->call(call));
    if (reply.contains("ok")) {
      state.reply = std::move(reply["ok"]);
      return CallEnd::value;
    }
    if (reply.contains("limit")) {
      const auto& limit = reply["limit"];
      state.trip(LimitKind::subrequests, limit.value("used", state.subrequests_used),
                 limit.value("allowed", state.limits.subrequests));
      return CallEnd::tripped;
    }
    const auto& error = reply.at("error");
    state.reply_error = error.at("message").get<std::string>();
    if (error.value("kind", "") == "denied") state.denials.push_back(state.reply_error);
    return CallEnd::error;
  } catch (const EncodeError& error) {
    state.reply_error = std::string("ctx.") + op + ": " + error.what();
  } catch (const std::exception& error) {
    state.reply_error = std::string("ctx.") + op + " failed: " + error.what();
  }
  return CallEnd::error;
}

// Upvalues: the op name ("kv.get") and how many arguments it takes.
int capability_call(lua_State* L) {
  const char* op = lua_tostring(L, lua_upvalueindex(1));
  int argc = static_cast<int>(lua_tointeger(L, lua_upvalueindex(2)));
  RunState& state = run_state(L);
  switch (perform_call(L, state, op, argc)) {
    case CallEnd::tripped:
      raise_tripped(L);
    case CallEnd::error:
      lua_pushlstring(L, state.reply_error.data(), state.reply_error.size());
      return lua_error(L);
    case CallEnd::value:
      // An absent value (a missing kv key, a missing secret) is nil, not json.null.
      if (state.reply.is_null()) {
        lua_pushnil(L);
      } else {
        push_json(L, state.reply);
      }
      return 1;
  }
  return 0;
}

// ctx.secrets.ref(name): the text the broker replaces with the secret's value in an http.fetch
// to an origin bound to it (broker/secret_reference.h). Made here, not by the broker: it holds
// nothing secret and unlocks only what the binding allows, so it costs no subrequest.
int secret_ref(lua_State* L) {
  size_t length = 0;
  const char* name = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &length) : nullptr;
  if (name == nullptr || !broker::reference_name_valid(std::string_view(name, length))) {
    return luaL_error(L,
                      "ctx.secrets.ref: the name (argument 1) must be a secret name, 1 to 64 "
                      "letters, digits, '.', '_' or '-'");
  }
  // Pushed with lua_pushfstring: a Lua error (a longjmp) while pushing must cross no C++ object.
  lua_pushfstring(L, "%s%s%s", broker::kReferenceOpen.data(), name, broker::kReferenceClose.data());
  return 1;
}

void push_call(lua_State* L, const char* op, int argc) {
  lua_pushstring(L, op);
  lua_pushinteger(L, argc);
  lua_pushcclosure(L, capability_call, 2);
}

struct Operation {
  const char* field;
  const char* op;
  int argc;
};

void set_table_of(lua_State* L, const char* name, std::initializer_list<Operation> operations) {
  lua_createtable(L, 0, static_cast<int>(operations.size()));
  for (const auto& operation : operations) {
    push_call(L, operation.op, operation.argc);
    lua_setfield(L, -2, operation.field);
  }
  lua_setfield(L, -2, name);
}

}  // namespace

void push_capabilities(lua_State* L, const std::vector<std::string>& capabilities) {
  for (const auto& name : capabilities) {
    if (name == "kv") {
      set_table_of(L, "kv",
                   {{"get", "kv.get", 1},
                    {"put", "kv.put", 2},
                    {"delete", "kv.delete", 1},
                    {"list", "kv.list", 1}});
    } else if (name == "http") {
      set_table_of(L, "http", {{"fetch", "http.fetch", 1}});
    } else if (name == "secrets") {
      set_table_of(L, "secrets", {{"get", "secrets.get", 1}});
      lua_getfield(L, -1, "secrets");
      lua_pushcfunction(L, secret_ref);
      lua_setfield(L, -2, "ref");
      lua_pop(L, 1);
    } else if (name == "emit") {
      push_call(L, "emit", 2);
      lua_setfield(L, -2, "emit");
    }
  }
}

}  // namespace corral::runtime
