#include "registry/validation.h"

#include <lua.hpp>
#include <memory>

#include "policy/grants.h"

namespace corral::registry {

namespace {

constexpr const char* kChunkName = "=script";

// "script:LINE: message near 'TOKEN'" → line, and the column of the token on that line (Lua
// reports no column; the failing token is usually the last of its kind on the line).
void locate(std::string_view source, const std::string& message, int& line, int& column) {
  std::string prefix = "script:";
  if (message.rfind(prefix, 0) != 0) return;
  line = std::atoi(message.c_str() + prefix.size());
  if (line <= 0) return;
  size_t begin = 0;
  for (int i = 1; i < line && begin != std::string_view::npos; ++i) {
    begin = source.find('\n', begin);
    if (begin != std::string_view::npos) ++begin;
  }
  if (begin == std::string_view::npos) return;
  size_t end = source.find('\n', begin);
  std::string_view text = source.substr(begin, end == std::string_view::npos ? end : end - begin);
  size_t near = message.rfind("near '");
  if (near != std::string::npos) {
    size_t token_begin = near + 6;
    std::string token = message.substr(token_begin, message.find('\'', token_begin) - token_begin);
    size_t at = token.empty() ? std::string_view::npos : text.rfind(token);
    if (at != std::string_view::npos) column = static_cast<int>(at) + 1;
  } else if (message.find("near <eof>") != std::string::npos) {
    column = static_cast<int>(text.size()) + 1;
  }
  if (column == 0) column = 1;
}

}  // namespace

void check_name(std::string_view what, std::string_view field, std::string_view name) {
  if (auto problem = policy::name_problem(name, what)) {
    throw InvalidInput(std::string(field), *problem,
                       "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
                       "digit");
  }
}

nlohmann::json Manifest::to_json() const {
  return {{"runtime", runtime},
          {"capabilities", capabilities},
          {"deterministic", deterministic},
          {"description", description}};
}

Manifest parse_manifest(const nlohmann::json& json) {
  const std::string shape =
      "send \"manifest\": {\"runtime\": \"lua5.4\", \"capabilities\": [\"log\", ...], "
      "\"deterministic\": false, \"description\": \"...\"}";
  if (!json.is_object())
    throw InvalidInput("manifest", "the manifest must be a JSON object", shape);
  for (const auto& [key, value] : json.items()) {
    if (key != "runtime" && key != "capabilities" && key != "deterministic" &&
        key != "description") {
      throw InvalidInput("manifest." + key, "the manifest has an unknown member \"" + key + "\"",
                         "the members are runtime, capabilities, deterministic and description");
    }
  }
  Manifest manifest;
  if (!json.contains("runtime"))
    throw InvalidInput("manifest.runtime", "the manifest names no runtime", shape);
  if (!json["runtime"].is_string() || json["runtime"] != kRuntime) {
    throw InvalidInput("manifest.runtime",
                       "the runtime " + json["runtime"].dump() + " is not supported",
                       "set \"runtime\": \"lua5.4\", the only runtime this server offers");
  }
  if (json.contains("capabilities")) {
    const auto& requested = json["capabilities"];
    if (!requested.is_array()) {
      throw InvalidInput("manifest.capabilities", "capabilities must be an array of names", shape);
    }
    for (size_t i = 0; i < requested.size(); ++i) {
      std::string where = "manifest.capabilities[" + std::to_string(i) + "]";
      std::string known = "the known capabilities are log, kv, http, emit and secrets";
      if (!requested[i].is_string())
        throw InvalidInput(where, "a capability must be a string", known);
      std::string name = requested[i];
      if (std::find(kCapabilities.begin(), kCapabilities.end(), name) == kCapabilities.end()) {
        throw InvalidInput(where, "unknown capability \"" + name + "\"", known);
      }
      if (std::find(manifest.capabilities.begin(), manifest.capabilities.end(), name) !=
          manifest.capabilities.end()) {
        throw InvalidInput(where, "capability \"" + name + "\" is listed twice",
                           "list each capability once");
      }
      manifest.capabilities.push_back(name);
    }
  }
  if (json.contains("deterministic")) {
    if (!json["deterministic"].is_boolean()) {
      throw InvalidInput("manifest.deterministic", "deterministic must be true or false", shape);
    }
    manifest.deterministic = json["deterministic"];
  }
  if (json.contains("description")) {
    if (!json["description"].is_string()) {
      throw InvalidInput("manifest.description", "the description must be a string", shape);
    }
    manifest.description = json["description"];
    if (manifest.description.size() > kMaxDescriptionBytes) {
      throw InvalidInput("manifest.description",
                         "the description is " + std::to_string(manifest.description.size()) +
                             " bytes; at most " + std::to_string(kMaxDescriptionBytes) +
                             " are allowed",
                         "shorten the description; put longer documentation beside the script");
    }
  }
  return manifest;
}

void check_compiles(std::string_view source) {
  if (source.empty()) {
    throw InvalidInput("source", "the source is empty",
                       "send the script's text; it must define function handle(input, ctx)");
  }
  if (source.size() > kMaxSourceBytes) {
    throw InvalidInput("source",
                       "the source is " + std::to_string(source.size()) + " bytes; at most " +
                           std::to_string(kMaxSourceBytes) + " are allowed",
                       "split the script or move data out of it into the input");
  }
  std::unique_ptr<lua_State, decltype(&lua_close)> state(luaL_newstate(), lua_close);
  if (!state)
    throw std::runtime_error("cannot create a Lua state to compile the script (out of memory)");
  int status = luaL_loadbufferx(state.get(), source.data(), source.size(), kChunkName, "t");
  if (status == LUA_OK) return;
  std::string message =
      lua_tostring(state.get(), -1) ? lua_tostring(state.get(), -1) : "unknown error";
  InvalidInput error("source", "syntax error: " + message,
                     "fix the source at the line and column given and publish again");
  if (status == LUA_ERRSYNTAX) locate(source, message, error.line, error.column);
  if (error.line > 0) {
    error.field = "source:" + std::to_string(error.line) + ":" + std::to_string(error.column);
  }
  throw error;
}

std::string handle_probe(std::string_view source) {
  // Everything the probe needs is captured on the source's first line, before the script can
  // replace rawget or type, and the main chunk becomes a function so that a trailing "return"
  // in it stays legal.
  std::string probe =
      "local __corral_rawget, __corral_type, __corral_env = rawget, type, _ENV; "
      "local __corral_main = function(...) ";
  probe.append(source);
  probe.append(
      "\nend\n__corral_main(...)\n"
      "local __corral_kind = __corral_type(__corral_rawget(__corral_env, 'handle'))\n"
      "function handle() return __corral_kind end\n");
  return probe;
}

}  // namespace corral::registry
