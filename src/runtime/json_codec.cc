#include "runtime/json_codec.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <variant>
#include <vector>

#include "runtime/utf8.h"

namespace corral::runtime {
namespace {

// Addresses used as unique registry keys and as the null sentinel.
char kArrayMarkerKey;
char kJsonNullSentinel;

void push_json_at_depth(lua_State* L, const nlohmann::json& value, int depth) {
  // Only references and trivially destructible iterators live in this frame: a Lua error
  // (longjmp) out of here skips no destructor.
  if (depth > kMaxJsonDepth) luaL_error(L, "input nests deeper than %d levels", kMaxJsonDepth);
  if (!lua_checkstack(L, 3)) luaL_error(L, "input nests too deeply for the Lua stack");
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      push_json_null(L);
      return;
    case nlohmann::json::value_t::boolean:
      lua_pushboolean(L, value.get<bool>());
      return;
    case nlohmann::json::value_t::number_integer:
      lua_pushinteger(L, value.get<int64_t>());
      return;
    case nlohmann::json::value_t::number_unsigned: {
      auto number = value.get<uint64_t>();
      if (number <= static_cast<uint64_t>(INT64_MAX)) {
        lua_pushinteger(L, static_cast<lua_Integer>(number));
      } else {
        lua_pushnumber(L, static_cast<lua_Number>(number));
      }
      return;
    }
    case nlohmann::json::value_t::number_float:
      lua_pushnumber(L, value.get<double>());
      return;
    case nlohmann::json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      lua_pushlstring(L, text.data(), text.size());
      return;
    }
    case nlohmann::json::value_t::array: {
      lua_createtable(L, static_cast<int>(std::min<size_t>(value.size(), 1 << 20)), 0);
      lua_Integer index = 1;
      for (auto it = value.begin(); it != value.end(); ++it) {
        push_json_at_depth(L, *it, depth + 1);
        lua_rawseti(L, -2, index++);
      }
      mark_as_array(L, -1);
      return;
    }
    case nlohmann::json::value_t::object: {
      lua_createtable(L, 0, static_cast<int>(std::min<size_t>(value.size(), 1 << 20)));
      for (auto it = value.begin(); it != value.end(); ++it) {
        const std::string& key = it.key();
        lua_pushlstring(L, key.data(), key.size());
        push_json_at_depth(L, it.value(), depth + 1);
        lua_rawset(L, -3);
      }
      return;
    }
    default:
      luaL_error(L, "input holds a value JSON does not define");
  }
}

class Encoder {
 public:
  Encoder(lua_State* L, std::string root, size_t max_bytes)
      : L_(L), root_(std::move(root)), max_bytes_(max_bytes) {}

  EncodedJson encode(int index) {
    value(lua_absindex(L_, index), 0);
    if (result_.size > max_bytes_) result_.text.clear();
    return std::move(result_);
  }

 private:
  using Segment = std::variant<std::string_view, lua_Integer>;

  void put(std::string_view bytes) {
    result_.size += bytes.size();
    if (result_.size <= max_bytes_) result_.text.append(bytes);
  }

  [[noreturn]] void fail(const std::string& why) {
    std::string path = root_;
    for (const auto& segment : path_) {
      if (const auto* key = std::get_if<std::string_view>(&segment)) {
        path += "." + std::string(*key);
      } else {
        path += "[" + std::to_string(std::get<lua_Integer>(segment)) + "]";
      }
    }
    throw EncodeError(path, why);
  }

  void value(int index, int depth) {
    switch (lua_type(L_, index)) {
      case LUA_TNIL:
        put("null");
        return;
      case LUA_TBOOLEAN:
        put(lua_toboolean(L_, index) ? "true" : "false");
        return;
      case LUA_TNUMBER:
        number(index);
        return;
      case LUA_TSTRING:
        string(index);
        return;
      case LUA_TTABLE:
        table(index, depth);
        return;
      case LUA_TLIGHTUSERDATA:
        if (is_json_null(L_, index)) {
          put("null");
          return;
        }
        fail("userdata values cannot be encoded");
      default:
        fail(std::string(lua_typename(L_, lua_type(L_, index))) + " values cannot be encoded");
    }
  }

  void number(int index) {
    char buffer[64];
    int is_integer = 0;
    lua_Integer integer = lua_tointegerx(L_, index, &is_integer);
    if (lua_isinteger(L_, index)) {
      auto end = std::to_chars(buffer, buffer + sizeof buffer, integer).ptr;
      put(std::string_view(buffer, static_cast<size_t>(end - buffer)));
      return;
    }
    double number = lua_tonumber(L_, index);
    if (std::isnan(number)) fail("NaN cannot be encoded in JSON");
    if (std::isinf(number)) fail("infinity cannot be encoded in JSON");
    auto end = std::to_chars(buffer, buffer + sizeof buffer, number).ptr;
    std::string_view text(buffer, static_cast<size_t>(end - buffer));
    put(text);
    // Keep floats recognisable as floats so they read back as floats.
    if (text.find_first_of(".e") == std::string_view::npos) put(".0");
  }

  void string_literal(std::string_view text) {
    size_t invalid = utf8_first_invalid(text);
    if (invalid != std::string_view::npos) {
      fail("string is not valid UTF-8 (byte " + std::to_string(invalid + 1) + ")");
    }
    put("\"");
    size_t run = 0;  // start of the pending run of bytes that need no escaping
    for (size_t i = 0; i < text.size(); ++i) {
      auto c = static_cast<unsigned char>(text[i]);
      if (c >= 0x20 && c != '"' && c != '\\') continue;
      put(text.substr(run, i - run));
      run = i + 1;
      switch (c) {
        case '"':
          put("\\\"");
          break;
        case '\\':
          put("\\\\");
          break;
        case '\n':
          put("\\n");
          break;
        case '\r':
          put("\\r");
          break;
        case '\t':
          put("\\t");
          break;
        case '\b':
          put("\\b");
          break;
        case '\f':
          put("\\f");
          break;
        default: {
          static constexpr char kHex[] = "0123456789abcdef";
          char escape[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
          put(std::string_view(escape, sizeof escape));
        }
      }
    }
    put(text.substr(run));
    put("\"");
  }

  void string(int index) {
    size_t length = 0;
    const char* data = lua_tolstring(L_, index, &length);
    string_literal(std::string_view(data, length));
  }

  void table(int index, int depth) {
    if (depth >= kMaxJsonDepth)
      fail("nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    const void* identity = lua_topointer(L_, index);
    for (const void* open : open_tables_) {
      if (open == identity) fail("table contains itself (a cycle cannot be encoded)");
    }
    if (!lua_checkstack(L_, 4)) fail("nests too deeply for the Lua stack");

    bool marked_array = has_array_marker(index);
    size_t count = 0;
    bool all_strings = true;
    bool all_sequence_integers = true;
    lua_Integer largest = 0;
    lua_pushnil(L_);
    while (lua_next(L_, index) != 0) {
      lua_pop(L_, 1);
      ++count;
      if (lua_type(L_, -1) == LUA_TSTRING) {
        all_sequence_integers = false;
      } else {
        all_strings = false;
        if (lua_isinteger(L_, -1) && lua_tointeger(L_, -1) >= 1) {
          largest = std::max(largest, lua_tointeger(L_, -1));
        } else {
          all_sequence_integers = false;
        }
      }
    }
    open_tables_.push_back(identity);
    if (count == 0) {
      put(marked_array ? "[]" : "{}");
    } else if (all_sequence_integers && static_cast<size_t>(largest) == count) {
      array(index, count, depth);
    } else if (all_strings && !marked_array) {
      object(index, depth);
    } else if (all_sequence_integers) {
      fail("sparse array (" + std::to_string(count) + " values, largest index " +
           std::to_string(largest) + "); fill the holes with json.null");
    } else if (marked_array) {
      fail("table marked as an array has keys that are not 1..n");
    } else {
      fail("table mixes key types (JSON objects need string keys, arrays the keys 1..n)");
    }
    open_tables_.pop_back();
  }

  void array(int index, size_t count, int depth) {
    put("[");
    for (size_t i = 1; i <= count; ++i) {
      if (i > 1) put(",");
      lua_rawgeti(L_, index, static_cast<lua_Integer>(i));
      path_.emplace_back(static_cast<lua_Integer>(i));
      value(lua_gettop(L_), depth + 1);
      path_.pop_back();
      lua_pop(L_, 1);
    }
    put("]");
  }

  // Members come out sorted by key, so the same table always encodes to the same text (Lua's
  // own iteration order changes from run to run with its hash seed).
  void object(int index, int depth) {
    put("{");
    struct Member {
      std::string_view key;
      size_t begin, end;  // of `"key":value` in result_.text
    };
    std::vector<Member> members;
    size_t members_start = result_.size;
    lua_pushnil(L_);
    while (lua_next(L_, index) != 0) {
      if (!members.empty()) put(",");
      size_t length = 0;
      const char* key = lua_tolstring(L_, -2, &length);  // a string: checked by table()
      std::string_view key_text(key, length);
      size_t begin = result_.size;
      path_.emplace_back(key_text);
      string_literal(key_text);
      put(":");
      value(lua_gettop(L_), depth + 1);
      path_.pop_back();
      members.push_back({key_text, begin, result_.size});
      lua_pop(L_, 1);
    }
    // Past max_bytes the text is dropped anyway; only the size still matters.
    if (result_.size <= max_bytes_ && members.size() > 1) {
      std::sort(members.begin(), members.end(),
                [](const Member& a, const Member& b) { return a.key < b.key; });
      std::string sorted;
      sorted.reserve(result_.size - members_start);
      for (const auto& member : members) {
        if (!sorted.empty()) sorted += ',';
        sorted.append(result_.text, member.begin, member.end - member.begin);
      }
      result_.text.replace(members_start, std::string::npos, sorted);
    }
    put("}");
  }

  bool has_array_marker(int index) {
    if (!lua_getmetatable(L_, index)) return false;
    lua_rawgetp(L_, LUA_REGISTRYINDEX, &kArrayMarkerKey);
    bool marked = lua_rawequal(L_, -1, -2);
    lua_pop(L_, 2);
    return marked;
  }

  lua_State* L_;
  std::string root_;
  size_t max_bytes_;
  EncodedJson result_;
  std::vector<Segment> path_;
  std::vector<const void*> open_tables_;
};

}  // namespace

void install_json_markers(lua_State* L) {
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "json.array");
  lua_setfield(L, -2, "__metatable");  // scripts can neither read nor replace it
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kArrayMarkerKey);
}

void push_json_null(lua_State* L) { lua_pushlightuserdata(L, &kJsonNullSentinel); }

bool is_json_null(lua_State* L, int index) {
  return lua_type(L, index) == LUA_TLIGHTUSERDATA && lua_touserdata(L, index) == &kJsonNullSentinel;
}

void mark_as_array(lua_State* L, int index) {
  index = lua_absindex(L, index);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kArrayMarkerKey);
  lua_setmetatable(L, index);
}

void push_json(lua_State* L, const nlohmann::json& value) { push_json_at_depth(L, value, 0); }

EncodedJson encode_json(lua_State* L, int index, const std::string& root, size_t max_bytes) {
  return Encoder(L, root, max_bytes).encode(index);
}

}  // namespace corral::runtime
