#include "net/origin_pattern.h"

#include <algorithm>
#include <charconv>

namespace corral::net {

namespace {

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c); }

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// A DNS name as a URL may hold it (lowercase already): labels of 1 to 63 letters, digits and '-',
// not starting or ending with '-', 253 bytes at most, and a last label that is not all digits
// (that would be a malformed IPv4 address).
std::optional<std::string> dns_name_problem_lowercase(std::string_view name) {
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

// Digits and dots only: meant as an IPv4 address, so never read as a name.
bool looks_like_ipv4(std::string_view host) {
  return !host.empty() &&
         std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; });
}

}  // namespace

std::optional<std::string> host_name_problem(std::string_view name) {
  std::string lower = lowercase(name);
  if (lower.ends_with('.')) lower.pop_back();
  return dns_name_problem_lowercase(lower);
}

std::optional<int> parse_port(std::string_view text) {
  int port = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || port < 1 ||
      port > 65535) {
    return std::nullopt;
  }
  return port;
}

std::optional<OriginPattern> OriginPattern::parse(std::string_view text, std::string* error) {
  const std::string shape =
      " (write scheme://host[:port], e.g. \"https://api.example.com\", "
      "\"https://*.example.com:8443\" or \"http://127.0.0.1:*\")";
  auto fail = [&](const std::string& what) -> std::optional<OriginPattern> {
    *error = quoted(text) + ": " + what + shape;
    return std::nullopt;
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
    pattern.address = IpAddress::parse(host);
    if (!pattern.address || pattern.address->is_v4())
      return fail(quoted(host) + " is not a valid IPv6 address");
    pattern.host = pattern.address->to_string();
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
      if (auto problem = dns_name_problem_lowercase(name)) return fail(*problem);
      if (name.find('.') == std::string::npos) {
        return fail(
            "a wildcard must be followed by a name of at least two labels "
            "(*.example.com, not *.com)");
      }
    } else if (name.find('*') != std::string::npos) {
      return fail("a host may only start with \"*.\"; '*' elsewhere, or alone, is not allowed");
    } else if (looks_like_ipv4(name)) {
      pattern.address = IpAddress::parse(name);
      if (!pattern.address) return fail(quoted(name) + " is not a valid IPv4 address");
      name = pattern.address->to_string();
    } else if (auto problem = dns_name_problem_lowercase(name)) {
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
  bool bracketed = name.size() >= 2 && name.front() == '[' && name.back() == ']';
  if (bracketed || name.find(':') != std::string::npos) {
    std::optional<IpAddress> requested = IpAddress::parse(name);
    return address && requested && !requested->is_v4() && *requested == *address;
  }
  if (name.ends_with('.')) name.pop_back();
  if (looks_like_ipv4(name)) {
    std::optional<IpAddress> requested = IpAddress::parse(name);
    return address && requested && *requested == *address;
  }
  if (address || dns_name_problem_lowercase(name)) return false;
  if (!any_subdomain) return name == host;
  return name.size() > host.size() + 1 && name.ends_with(host) &&
         name[name.size() - host.size() - 1] == '.';
}

}  // namespace corral::net
