#include "invocation/untrusted_json.h"

#include <string>
#include <utility>
#include <vector>

#include "invocation/invocation.h"

namespace corral {
namespace {

using json = nlohmann::json;

// Names longer than this are cut in a path, and paths longer than the other: the path goes into
// an error a client reads.
constexpr size_t kShownKeyBytes = 64;
constexpr size_t kShownPathBytes = 128;

// Builds the value from the parser's events, as nlohmann's own DOM builder does, and refuses what
// parse_untrusted_json refuses at the event where it shows. A member is inserted when its key is
// read (emplace tells at no extra cost whether the key was there already), and each open container
// keeps where its current member sits, so that an error can name the path without the parse
// having to build one for every value.
class StrictBuilder {
 public:
  explicit StrictBuilder(int max_depth) : max_depth_(max_depth) {}

  json result;

  bool null() { return put(json(nullptr)); }
  bool boolean(bool value) { return put(json(value)); }
  bool number_integer(json::number_integer_t value) { return put(json(value)); }
  bool number_unsigned(json::number_unsigned_t value) { return put(json(value)); }
  bool number_float(json::number_float_t value, const json::string_t&) { return put(json(value)); }
  bool string(json::string_t& value) { return put(json(std::move(value))); }
  bool binary(json::binary_t&) { return false; }  // JSON text has no binary values

  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& name) {
    Level& level = levels_.back();
    auto& members = level.container->get_ref<json::object_t&>();
    auto [member, inserted] = members.try_emplace(std::move(name));
    if (!inserted) {
      throw InvalidRequest(path_to(levels_.size(), &member->first),
                           "the key \"" + cut(member->first) +
                               "\" appears twice in one object; send each key once (readers "
                               "differ on which of the two counts)");
    }
    level.key = &member->first;
    level.member = &member->second;
    return true;
  }

  bool parse_error(std::size_t, const std::string& token,
                   const nlohmann::detail::exception& error) {
    // 406: a number the lexer read but that overflows a double. Every other error is the text
    // not being JSON, reported as the plain parser reports it.
    if (error.id == 406) {
      throw InvalidRequest(path_to(levels_.size(), nullptr),
                           "the number " + cut(token) +
                               " is outside the range of a double (about ±1.8e308), which is as "
                               "far as JSON numbers go here; send a smaller number, or the "
                               "number as a string");
    }
    if (error.id >= 100 && error.id < 200) {
      throw *static_cast<const json::parse_error*>(&error);
    }
    throw InvalidRequest(path_to(levels_.size(), nullptr), "the JSON cannot be read here");
  }

 private:
  struct Level {
    json* container;
    const std::string* key = nullptr;  // an object's member being read
    json* member = nullptr;
  };

  static std::string cut(const std::string& text) {
    if (text.size() <= kShownKeyBytes) return text;
    size_t end = kShownKeyBytes;
    // Never inside a UTF-8 sequence.
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    return text.substr(0, end) + "…";
  }

  // The path of the value being read at `depth` open containers: keys joined by '.', array
  // places as [i] (the element about to be added, for an array whose value is being read), or
  // "body" for the document. `last_key`, if given, stands for the innermost level's key.
  std::string path_to(size_t depth, const std::string* last_key) const {
    std::string path;
    for (size_t i = 0; i < depth; ++i) {
      const Level& level = levels_[i];
      if (level.container->is_array()) {
        size_t size = level.container->size();
        // An inner level is the array's last element; the innermost is the one being read.
        path += "[" + std::to_string(i + 1 < depth ? size - 1 : size) + "]";
      } else {
        const std::string* key = i + 1 == depth && last_key ? last_key : level.key;
        if (!key) continue;
        if (!path.empty()) path += '.';
        path += cut(*key);
      }
    }
    if (path.empty()) return "body";
    // A path as deep as the bound allows is as long as it is useless: its start says where.
    if (path.size() > kShownPathBytes) {
      size_t cut = path.find_last_of(".[", kShownPathBytes);
      path = path.substr(0, cut == 0 || cut == std::string::npos ? kShownPathBytes : cut) + "…";
    }
    return path;
  }

  // Where the next value goes: the document, the open array's end, or the member whose key was
  // just read.
  json* slot() {
    if (levels_.empty()) return &result;
    Level& level = levels_.back();
    if (level.container->is_array()) {
      auto& elements = level.container->get_ref<json::array_t&>();
      elements.emplace_back();
      return &elements.back();
    }
    return level.member;
  }

  bool put(json&& value) {
    *slot() = std::move(value);
    return true;
  }

  bool open(json&& container) {
    if (levels_.size() >= static_cast<size_t>(max_depth_)) {
      throw InvalidRequest(path_to(levels_.size(), nullptr),
                           "the JSON nests deeper than " + std::to_string(max_depth_) + " levels");
    }
    json* place = slot();
    *place = std::move(container);
    levels_.push_back({place});
    return true;
  }

  bool close() {
    levels_.pop_back();
    return true;
  }

  int max_depth_;
  std::vector<Level> levels_;
};

}  // namespace

nlohmann::json parse_untrusted_json(std::string_view text, int max_depth) {
  StrictBuilder builder(max_depth);
  json::sax_parse(text.begin(), text.end(), &builder);
  return std::move(builder.result);
}

std::string describe_json_syntax_error(const nlohmann::json::parse_error& error,
                                       std::string_view text) {
  // error.byte counts from 1 and points at the last character read, one past the end when the
  // text ran out.
  size_t at = error.byte > 0 ? error.byte - 1 : 0;
  if (at >= text.size()) {
    return "the text ends before the JSON does (after " + std::to_string(text.size()) +
           " bytes): it is cut short, or a string, array or object is left open";
  }
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < at; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  auto byte = static_cast<unsigned char>(text[at]);
  std::string shown;
  if (byte >= 0x20 && byte < 0x7F && byte != '\'') {
    shown = std::string("'") + static_cast<char>(byte) + "'";
  } else {
    static constexpr char kHex[] = "0123456789abcdef";
    shown = std::string("the byte 0x") + kHex[byte >> 4] + kHex[byte & 15];
    if (byte >= 0x80) shown += " (JSON text is UTF-8)";
  }
  // A sequence broken after its first byte is found at the byte that breaks it, which may be
  // plain ASCII: the library's message (only classified here, never shown) tells that case.
  if (byte < 0x80 && std::string_view(error.what()).find("UTF-8") != std::string_view::npos)
    shown += ", which ends a byte sequence that is not valid UTF-8 (JSON text is UTF-8)";
  return "it breaks at line " + std::to_string(line) + ", column " +
         std::to_string(at - line_start + 1) + " (byte " + std::to_string(at + 1) + "), at " +
         shown;
}

}  // namespace corral
