// The mapping between JSON and Lua values (docs/scripting.md, "JSON and Lua").
//
//   JSON object  ↔ table with string keys          JSON null ↔ json.null (a sentinel)
//   JSON array   ↔ table with keys 1..n, marked as an array (json.array), so [] round-trips
//   integer      ↔ integer (up to 2^63-1; larger integers become floats)
//   float        ↔ float (shortest text that reads back the same; NaN and infinities refused)
//   string       ↔ string (must be valid UTF-8)
#pragma once

#include <lua.hpp>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace corral::runtime {

inline constexpr int kMaxJsonDepth = 100;

// Registry entries the mapping relies on; call once per state, in a protected call.
void install_json_markers(lua_State* L);
void push_json_null(lua_State* L);
bool is_json_null(lua_State* L, int index);
// Marks the table at index as a JSON array (sets the shared, protected array metatable).
void mark_as_array(lua_State* L, int index);

// Pushes the Lua form of value. Allocates Lua memory, so it may raise: call it only inside a
// protected call. Raises if value nests deeper than kMaxJsonDepth.
void push_json(lua_State* L, const nlohmann::json& value);

// Why a Lua value could not be encoded, and where: path is like "output.items[3].name".
struct EncodeError : std::runtime_error {
  EncodeError(const std::string& path, const std::string& why)
      : std::runtime_error(path + ": " + why), path(path) {}
  std::string path;
};

struct EncodedJson {
  std::string text;  // empty when size > max_bytes
  size_t size = 0;   // the full encoded size, even when it exceeds max_bytes
};

// Encodes the value at index using raw access only: no metamethod runs, nothing is allocated
// in Lua, so hostile values cannot run code here. Throws EncodeError for values JSON cannot
// hold (functions, NaN, cycles, mixed or sparse keys, invalid UTF-8, depth over the maximum).
// Stops keeping text past max_bytes but still measures the full size.
EncodedJson encode_json(lua_State* L, int index, const std::string& root, size_t max_bytes);

}  // namespace corral::runtime
