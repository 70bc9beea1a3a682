// What a published script and its names must look like, checked before anything is stored.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace corral::registry {

inline constexpr size_t kMaxSourceBytes = 512 << 10;
inline constexpr size_t kMaxDescriptionBytes = 2000;
inline constexpr const char* kRuntime = "lua5.4";
// What the broker can offer a script; the policy decides which a tenant gets.
inline const std::vector<std::string> kCapabilities = {"log", "kv", "http", "emit", "secrets"};

// Input a client must correct: `field` names where (a JSON path or "path"), `hint` what to do.
struct InvalidInput : std::runtime_error {
  InvalidInput(std::string field, const std::string& message, std::string hint)
      : std::runtime_error(message), field(std::move(field)), hint(std::move(hint)) {}
  std::string field;
  std::string hint;
  int line = 0;  // source errors only
  int column = 0;
};

// Tenant, script and alias names: 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit, so
// that they sit in a URL path without escaping. `what` says which name ("tenant name").
void check_name(std::string_view what, std::string_view field, std::string_view name);

struct Manifest {
  std::string runtime = kRuntime;
  std::vector<std::string> capabilities;
  bool deterministic = false;
  std::string description;

  nlohmann::json to_json() const;
};

// {"runtime": "lua5.4", "capabilities": [...], "deterministic": bool, "description": string};
// only runtime is required. Throws InvalidInput naming the member that is wrong.
Manifest parse_manifest(const nlohmann::json& manifest);

// Compiles the source without running it (a fresh Lua state, text chunks only): the supervisor
// never runs tenant code. Throws InvalidInput with the line and column of a syntax error, or for a
// source that is empty or too large.
void check_compiles(std::string_view source);

// The script run in a worker to learn whether the source defines a global function handle: the
// source's main chunk runs (as it will on every invocation) and the probe's own handle returns
// the type of what the script left in the global "handle". Line numbers are those of the source.
std::string handle_probe(std::string_view source);

}  // namespace corral::registry
