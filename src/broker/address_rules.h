// IP addresses and ranges as the HTTP broker sees them: which addresses are not ordinary public
// Internet hosts (loopback, private, link-local, ...), and whether an operator's allow_private list
// lets a fetch reach one anyway. The broker asks this for every address curl is about to connect
// to, so that a name that resolves (or re-resolves) to an internal address is caught at the socket.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral::broker {

// One IPv4 or IPv6 address. IPv6 forms that carry an IPv4 address stay IPv6 here; embedded_v4()
// exposes the address they carry.
class IpAddress {
 public:
  // Accepts dotted-quad IPv4 ("10.0.0.1") and IPv6 in any textual form, with or without the
  // brackets a URL puts around it ("::1", "[::ffff:127.0.0.1]"). No zone ids, no shorthand IPv4
  // ("127.1"). nullopt when text is not such an address.
  static std::optional<IpAddress> parse(std::string_view text);
  // nullopt for families other than AF_INET and AF_INET6, or a length too short for the family.
  static std::optional<IpAddress> from_sockaddr(const sockaddr* address, socklen_t length);

  bool is_v4() const { return v4_; }
  // 4 bytes for IPv4, 16 for IPv6, in network order.
  const uint8_t* bytes() const { return bytes_.data(); }
  int bit_count() const { return v4_ ? 32 : 128; }
  bool bit(int index) const { return (bytes_[index / 8] >> (7 - index % 8)) & 1; }

  // The IPv4 address an IPv6 address stands for when it is IPv4-mapped (::ffff:a.b.c.d),
  // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:aabb:ccdd::); connecting to
  // one of these can reach that IPv4 host. nullopt for IPv4 addresses and other IPv6 addresses.
  std::optional<IpAddress> embedded_v4() const;

  // Canonical text: dotted quad, or RFC 5952 IPv6 without brackets.
  std::string to_string() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  friend class IpRange;
  bool v4_ = true;
  std::array<uint8_t, 16> bytes_{};
};

// A CIDR range of one family ("10.0.0.0/8", "fd00::/8"); a bare address is a range of one.
class IpRange {
 public:
  // nullopt, with *error set to a sentence saying what is wrong, when text is not an address or a
  // CIDR range, or when it has bits set beyond its prefix ("10.0.0.1/8": did you mean 10.0.0.0/8?).
  static std::optional<IpRange> parse(std::string_view text, std::string* error);

  // A range holds only addresses of its own family: 127.0.0.0/8 does not hold ::ffff:127.0.0.1
  // (address_allowed() handles that pairing).
  bool contains(const IpAddress& address) const;
  std::string to_string() const;

 private:
  IpRange(IpAddress first, int prefix) : first_(first), prefix_(prefix) {}
  IpAddress first_;
  int prefix_;
};

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
