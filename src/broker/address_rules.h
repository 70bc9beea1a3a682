// IP addresses and ranges as the HTTP broker sees them: which addresses are not ordinary public
// Internet hosts (loopback, private, link-local, ...), and whether an operator's allow_private list
// lets a fetch reach one anyway. The broker asks this for every address curl is about to connect
// to, so that a name that resolves (or re-resolves) to an internal address is caught at the socket.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "net/ip_address.h"

namespace corral::broker {

using net::IpAddress;
using net::IpRange;

// A special-purpose range an address fell in: "127.0.0.0/8" and "loopback".
struct SpecialRange {
  std::string_view cidr;
  std::string_view kind;
};

// The special-purpose range (RFC 6890 and friends) holding address, or nullopt for an ordinary
// public address. Covered: unspecified and "this network", loopback, private (RFC 1918),
// shared/CGNAT (100.64/10), link-local (169.254/16, fe80::/10), unique-local (fc00::/7),
// site-local, multicast, broadcast, reserved, benchmarking, documentation and discard ranges.
// IPv6 forms carrying an IPv4 address are classified by the address they carry, with the kind
// prefixed ("IPv4-mapped loopback"); one carrying a public IPv4 address is public, except the
// deprecated IPv4-compatible form, which is always refused.
std::optional<SpecialRange> classify(const IpAddress& address);

// Whether the broker may connect to address: it is public, or one of allow_private's ranges holds
// it or the IPv4 address it carries. allow_private must hold valid ranges (see IpRange::parse).
bool address_allowed(const IpAddress& address, const std::vector<IpRange>& allow_private);

}  // namespace corral::broker
