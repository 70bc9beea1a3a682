#include "policy/grants.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace corral::policy {

namespace {

constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxTopicLength = 128;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c); }

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

}  // namespace

std::string_view to_string(KvScope scope) { return scope == KvScope::tenant ? "tenant" : "script"; }

OriginPattern parse_origin_pattern(std::string_view text) {
  std::string error;
  std::optional<OriginPattern> pattern = OriginPattern::parse(text, &error);
  if (!pattern) throw std::invalid_argument(error);
  return *pattern;
}

AddressRange AddressRange::parse(std::string_view text) {
  std::string error;
  std::optional<net::IpRange> range = net::IpRange::parse(text, &error);
  if (!range) throw std::invalid_argument(error);
  return AddressRange{std::string(text), *range};
}

std::optional<size_t> HttpGrant::matching_pattern(std::string_view scheme, std::string_view host,
                                                  int port) const {
  for (size_t i = 0; i < allow.size(); ++i) {
    if (allow[i].matches(scheme, host, port)) return i;
  }
  return std::nullopt;
}

bool valid_topic(std::string_view topic) {
  if (topic.empty() || topic.size() > kMaxTopicLength) return false;
  return std::all_of(topic.begin(), topic.end(), [](char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '-' || c == ':' || c == '/';
  });
}

void check_topic_pattern(std::string_view pattern) {
  const std::string rule =
      "; a topic is 1 to 128 letters, digits, '.', '_', '-', ':' or '/', and a pattern is a topic "
      "or a prefix followed by '*' (\"orders.*\", or \"*\" for every topic)";
  if (pattern.empty()) throw std::invalid_argument("the topic pattern is empty" + rule);
  std::string_view prefix = pattern;
  if (prefix.ends_with('*')) prefix.remove_suffix(1);
  if (prefix.find('*') != std::string_view::npos) {
    throw std::invalid_argument(quoted(pattern) + ": '*' may appear only at the end" + rule);
  }
  if (!prefix.empty() && !valid_topic(prefix))
    throw std::invalid_argument(quoted(pattern) + " is not a valid topic pattern" + rule);
}

bool topic_matches(std::string_view pattern, std::string_view topic) {
  if (!valid_topic(topic)) return false;
  if (pattern.ends_with('*')) return topic.starts_with(pattern.substr(0, pattern.size() - 1));
  return topic == pattern;
}

std::optional<size_t> EmitGrant::matching_topic(std::string_view topic) const {
  for (size_t i = 0; i < topics.size(); ++i) {
    if (topic_matches(topics[i], topic)) return i;
  }
  return std::nullopt;
}

bool SecretsGrant::allows(std::string_view name) const {
  if (name_problem(name)) return false;
  return !names || std::find(names->begin(), names->end(), name) != names->end();
}

bool SecretsGrant::is_reference_only(std::string_view name) const {
  return std::find(reference_only.begin(), reference_only.end(), name) != reference_only.end();
}

const SecretBinding* SecretsGrant::binding(std::string_view name) const {
  for (const SecretBinding& binding : bind) {
    if (binding.name == name) return &binding;
  }
  return nullptr;
}

PublicKey PublicKey::parse(std::string_view text) {
  const std::string rule =
      "; give the standard base64 of a 32-byte Ed25519 public key "
      "(44 characters, as `corral keygen` prints it)";
  std::string decoded;
  uint32_t buffer = 0;
  int bits = 0;
  size_t padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    int value;
    if (c >= 'A' && c <= 'Z')
      value = c - 'A';
    else if (c >= 'a' && c <= 'z')
      value = c - 'a' + 26;
    else if (is_digit(c))
      value = c - '0' + 52;
    else if (c == '+')
      value = 62;
    else if (c == '/')
      value = 63;
    else if (c == '=' && i + 2 >= text.size() && text.size() % 4 == 0) {
      ++padding;
      continue;
    } else {
      throw std::invalid_argument("the key is not base64: character " + std::to_string(i + 1) +
                                  " is '" + std::string(1, c) + "'" + rule);
    }
    if (padding > 0) {
      throw std::invalid_argument("the key is not base64: '=' may only end it" + rule);
    }
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      decoded.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  if (decoded.size() != 32) {
    throw std::invalid_argument("the key decodes to " + std::to_string(decoded.size()) +
                                " bytes; an Ed25519 public key is 32" + rule);
  }
  PublicKey key;
  key.base64 = std::string(text);
  std::memcpy(key.bytes.data(), decoded.data(), 32);
  return key;
}

std::optional<std::string> name_problem(std::string_view name, std::string_view what) {
  const std::string subject = "the " + std::string(what);
  if (name.empty()) return subject + " is empty";
  if (name.size() > kMaxNameLength) {
    return subject + " is " + std::to_string(name.size()) + " bytes long; at most " +
           std::to_string(kMaxNameLength) + " are allowed";
  }
  if (!is_alnum(name[0])) return subject + " must start with a letter or digit";
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (!is_alnum(c) && c != '.' && c != '_' && c != '-') {
      auto byte = static_cast<unsigned char>(c);
      std::string shown = byte >= 0x20 && byte < 0x7f
                              ? std::string("'") + c + "'"
                              : "byte 0x" + std::string(1, "0123456789abcdef"[byte >> 4]) +
                                    "0123456789abcdef"[byte & 15];
      return subject + " contains " + shown + " at position " + std::to_string(i + 1);
    }
  }
  return std::nullopt;
}

}  // namespace corral::policy
