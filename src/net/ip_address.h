// IPv4 and IPv6 addresses and CIDR ranges, parsed strictly: what the policy's allow_private lists
// are checked against when an operator writes them, and what the HTTP broker and webhook
// deliveries check every address against before connecting.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace corral::net {

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

}  // namespace corral::net
