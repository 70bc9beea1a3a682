#include "policy/grants.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace corral::policy {

namespace {

constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxTopicLength = 128;

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c); }

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

std::optional<int> parse_port(std::string_view text) {
  int port = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || port < 1 ||
      port > 65535) {
    return std::nullopt;
  }
  return port;
}

// A DNS name as a URL may hold it (lowercase already): labels of 1 to 63 letters, digits and '-',
// not starting or ending with '-', 253 bytes at most, and a last label that is not all digits
// (that would be a malformed IPv4 address).
std::optional<std::string> dns_name_problem(std::string_view name) {
  if (name.empty()) return "the host name is empty";
  if (name.size() > 253) return "the host name is longer than 253 bytes";
  size_t begin = 0;
  std::string_view last;
  while (true) {
    size_t end = name.find('.', begin);
    std::string_view label =
        name.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
    if (label.empty())
      return "the host name has an empty label (two dots in a row, or a dot at an end)";
    if (label.size() > 63) return "a label of the host name is longer than 63 bytes";
    if (label.front() == '-' || label.back() == '-')
      return "a label of the host name starts or ends with '-'";
    for (char c : label) {
      if (!is_alnum(c) && c != '-') {
        return std::string("the host name contains '") + c +
               "'; names hold only letters, digits, '-' and dots";
      }
    }
    last = label;
    if (end == std::string_view::npos) break;
    begin = end + 1;
  }
  if (std::all_of(last.begin(), last.end(), is_digit))
    return "the host is neither a valid IPv4 address nor a name (its last label is a number)";
  return std::nullopt;
}

// The canonical text of an IP literal, or nullopt when text is not one.
std::optional<std::string> canonical_ipv4(std::string_view text) {
  std::string copy(text);
  in_addr address{};
  if (inet_pton(AF_INET, copy.c_str(), &address) != 1) return std::nullopt;
  char out[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &address, out, sizeof out);
  return std::string(out);
}

std::optional<std::string> canonical_ipv6(std::string_view text) {
  std::string copy(text);
  in6_addr address{};
  if (inet_pton(AF_INET6, copy.c_str(), &address) != 1) return std::nullopt;
  char out[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &address, out, sizeof out);
  return std::string(out);
}

bool looks_like_ipv4(std::string_view host) {
  return !host.empty() &&
         std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; });
}

}  // namespace

std::string_view to_string(KvScope scope) { return scope == KvScope::tenant ? "tenant" : "script"; }

OriginPattern OriginPattern::parse(std::string_view text) {
  const std::string shape =
      " (write scheme://host[:port], e.g. \"https://api.example.com\", "
      "\"https://*.example.com:8443\" or \"http://127.0.0.1:*\")";
  auto fail = [&](const std::string& what) -> OriginPattern {
    throw std::invalid_argument(quoted(text) + ": " + what + shape);
  };
  OriginPattern pattern;
  pattern.text = std::string(text);
  size_t separator = text.find("://");
  if (separator == std::string_view::npos) return fail("there is no scheme");
  pattern.scheme = lowercase(text.substr(0, separator));
  if (pattern.scheme != "http" && pattern.scheme != "https")
    return fail("the scheme must be http or https, not " + quoted(pattern.scheme));
  std::string_view authority = text.substr(separator + 3);
  size_t stray = authority.find_first_of("/?#@\\");
  if (stray != std::string_view::npos) {
    if (authority[stray] == '@') return fail("user names and passwords are not allowed");
    return fail("a pattern names an origin only; remove " + quoted(authority.substr(stray)));
  }
  std::string_view host = authority;
  std::optional<std::string_view> port_text;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return fail("the IPv6 address has no closing ']'");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) return fail("expected ':' and a port after ']'");
      port_text = after.substr(1);
    }
    auto canonical = canonical_ipv6(host);
    if (!canonical) return fail(quoted(host) + " is not a valid IPv6 address");
    pattern.host = *canonical;
  } else {
    size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port_text = authority.substr(colon + 1);
    }
    std::string name = lowercase(host);
    if (name.starts_with("*.")) {
      pattern.any_subdomain = true;
      name = name.substr(2);
      if (name.find('*') != std::string::npos) return fail("'*' may appear only once, first");
      if (auto problem = dns_name_problem(name)) return fail(*problem);
      if (name.find('.') == std::string::npos) {
        return fail(
            "a wildcard must be followed by a name of at least two labels "
            "(*.example.com, not *.com)");
      }
    } else if (name.find('*') != std::string::npos) {
      return fail("a host may only start with \"*.\"; '*' elsewhere, or alone, is not allowed");
    } else if (looks_like_ipv4(name)) {
      auto canonical = canonical_ipv4(name);
      if (!canonical) return fail(quoted(name) + " is not a valid IPv4 address");
      name = *canonical;
    } else if (auto problem = dns_name_problem(name)) {
      return fail(*problem);
    }
    pattern.host = name;
  }
  if (!port_text) {
    pattern.port = pattern.scheme == "https" ? 443 : 80;
  } else if (*port_text != "*") {
    pattern.port = parse_port(*port_text);
    if (!pattern.port)
      return fail("the port must be a number from 1 to 65535, or '*' for any port");
  }
  return pattern;
}

bool OriginPattern::matches(std::string_view request_scheme, std::string_view request_host,
                            int request_port) const {
  if (lowercase(request_scheme) != scheme) return false;
  if (port && *port != request_port) return false;
  std::string name = lowercase(request_host);
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']')
    name = name.substr(1, name.size() - 2);
  if (name.find(':') != std::string::npos) {
    auto canonical = canonical_ipv6(name);
    return !any_subdomain && canonical && *canonical == host;
  }
  if (name.ends_with('.')) name.pop_back();
  if (looks_like_ipv4(name)) {
    auto canonical = canonical_ipv4(name);
    return !any_subdomain && canonical && *canonical == host;
  }
  if (dns_name_problem(name)) return false;
  if (!any_subdomain) return name == host;
  return name.size() > host.size() + 1 && name.ends_with(host) &&
         name[name.size() - host.size() - 1] == '.';
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
