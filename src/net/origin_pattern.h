// The origins a tenant's HTTP grant may reach, as the policy writes them: one parser and one
// matcher for both the policy (which checks and explains the patterns) and the broker (which
// enforces them on the URL it is about to fetch), so that the two can never read a pattern
// differently.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "net/ip_address.h"

namespace corral::net {

// What keeps `name` from being a DNS name that an OriginPattern can name and match (any case,
// one trailing dot ignored): labels of 1 to 63 letters, digits and '-', not starting or ending
// with '-', 253 bytes at most, a last label that is not all digits; nullopt when it is one.
std::optional<std::string> host_name_problem(std::string_view name);

// A port as a URL or a pattern writes it: decimal digits only, 1 to 65535.
std::optional<int> parse_port(std::string_view text);

// "scheme://host[:port]": scheme http or https; host a DNS name, an IPv4 address or a bracketed
// IPv6 address, or "*." followed by a DNS name of at least two labels (any name below it, never the
// name itself); port 1..65535 or "*" (any), and when absent the scheme's own (80 or 443).
// No path, query, user or fragment, and no host "*": every host is named. Names are matched
// without regard to case; addresses as addresses, however they are written.
struct OriginPattern {
  std::string text;    // as written
  std::string scheme;  // "http" or "https"
  std::string host;    // lowercase; without the "*." of a wildcard; IPv6 without brackets
  std::optional<IpAddress> address;  // when host is an IP address
  bool any_subdomain = false;
  std::optional<int> port;  // nullopt: any port

  // nullopt, with *error set to what is wrong and the shape to write, when text is not a pattern.
  static std::optional<OriginPattern> parse(std::string_view text, std::string* error);

  // scheme as given in the URL (any case), host as a DNS name or an IP literal (IPv6 with or
  // without brackets; one trailing dot ignored), port the one the request will connect to. A host
  // that is not a well-formed name or address never matches.
  bool matches(std::string_view scheme, std::string_view host, int port) const;
};

}  // namespace corral::net
