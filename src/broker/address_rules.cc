#include "broker/address_rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace corral::broker {

namespace {

struct SpecialEntry {
  std::string_view cidr;
  std::string_view kind;
};

// Most specific first where ranges nest (::1 and :: before ::/96), since the first hit names the
// range in the denial.
constexpr SpecialEntry kSpecialV4[] = {
    {"0.0.0.0/8", "unspecified (\"this network\")"},
    {"10.0.0.0/8", "private"},
    {"100.64.0.0/10", "shared address space (CGNAT)"},
    {"127.0.0.0/8", "loopback"},
    {"169.254.0.0/16", "link-local"},
    {"172.16.0.0/12", "private"},
    {"192.0.0.0/24", "IETF protocol assignments"},
    {"192.0.2.0/24", "documentation"},
    {"192.88.99.0/24", "6to4 relay anycast"},
    {"192.168.0.0/16", "private"},
    {"198.18.0.0/15", "benchmarking"},
    {"198.51.100.0/24", "documentation"},
    {"203.0.113.0/24", "documentation"},
    {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved"},  // includes the broadcast address 255.255.255.255
};

constexpr SpecialEntry kSpecialV6[] = {
    {"::/128", "unspecified"},
    {"::1/128", "loopback"},
    {"::/96", "IPv4-compatible (deprecated)"},
    {"100::/64", "discard-only"},
    {"2001:db8::/32", "documentation"},
    {"fc00::/7", "unique-local"},
    {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local (deprecated)"},
    {"ff00::/8", "multicast"},
};

// Kinds for the IPv6 forms that carry an IPv4 address, as "<prefix> <kind of the IPv4 address>".
// Spelled out because SpecialRange holds views into static storage.
struct EmbeddedKind {
  std::string_view v4_kind;
  std::string_view mapped, nat64, six_to_four;
};

constexpr EmbeddedKind kEmbeddedKinds[] = {
    {"unspecified (\"this network\")", "IPv4-mapped unspecified", "NAT64 unspecified",
     "6to4 unspecified"},
    {"private", "IPv4-mapped private", "NAT64 private", "6to4 private"},
    {"shared address space (CGNAT)", "IPv4-mapped shared address space (CGNAT)",
     "NAT64 shared address space (CGNAT)", "6to4 shared address space (CGNAT)"},
    {"loopback", "IPv4-mapped loopback", "NAT64 loopback", "6to4 loopback"},
    {"link-local", "IPv4-mapped link-local", "NAT64 link-local", "6to4 link-local"},
    {"IETF protocol assignments", "IPv4-mapped IETF protocol assignments",
     "NAT64 IETF protocol assignments", "6to4 IETF protocol assignments"},
    {"documentation", "IPv4-mapped documentation", "NAT64 documentation", "6to4 documentation"},
    {"6to4 relay anycast", "IPv4-mapped 6to4 relay anycast", "NAT64 6to4 relay anycast",
     "6to4 6to4 relay anycast"},
    {"benchmarking", "IPv4-mapped benchmarking", "NAT64 benchmarking", "6to4 benchmarking"},
    {"multicast", "IPv4-mapped multicast", "NAT64 multicast", "6to4 multicast"},
    {"reserved", "IPv4-mapped reserved", "NAT64 reserved", "6to4 reserved"},
};

bool has_prefix(const uint8_t* bytes, std::initializer_list<uint8_t> prefix) {
  return std::memcmp(bytes, prefix.begin(), prefix.size()) == 0;
}

struct ParsedSpecial {
  IpRange range;
  SpecialEntry entry;
};

std::vector<ParsedSpecial> parse_table(const auto& table) {
  std::vector<ParsedSpecial> parsed;
  std::string error;
  for (const SpecialEntry& entry : table) {
    // The tables are constants; one that failed to parse would be a typo the classifier tests
    // catch.
    if (auto range = IpRange::parse(entry.cidr, &error)) parsed.push_back({*range, entry});
  }
  return parsed;
}

std::optional<SpecialRange> find_special(const IpAddress& address) {
  static const std::vector<ParsedSpecial> v4 = parse_table(kSpecialV4);
  static const std::vector<ParsedSpecial> v6 = parse_table(kSpecialV6);
  for (const ParsedSpecial& special : address.is_v4() ? v4 : v6) {
    if (special.range.contains(address))
      return SpecialRange{special.entry.cidr, special.entry.kind};
  }
  return std::nullopt;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  std::string copy(text);
  IpAddress address;
  if (inet_pton(AF_INET, copy.c_str(), address.bytes_.data()) == 1) {
    address.v4_ = true;
    return address;
  }
  if (inet_pton(AF_INET6, copy.c_str(), address.bytes_.data()) == 1) {
    address.v4_ = false;
    return address;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* socket_address,
                                                  socklen_t length) {
  IpAddress address;
  if (socket_address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    sockaddr_in v4;
    std::memcpy(&v4, socket_address, sizeof v4);
    address.v4_ = true;
    std::memcpy(address.bytes_.data(), &v4.sin_addr, 4);
    return address;
  }
  if (socket_address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    sockaddr_in6 v6;
    std::memcpy(&v6, socket_address, sizeof v6);
    address.v4_ = false;
    std::memcpy(address.bytes_.data(), &v6.sin6_addr, 16);
    return address;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::embedded_v4() const {
  if (v4_) return std::nullopt;
  const uint8_t* b = bytes_.data();
  constexpr uint8_t kZeros[10] = {};
  auto carried = [](const uint8_t* four) {
    IpAddress v4;
    v4.v4_ = true;
    std::memcpy(v4.bytes_.data(), four, 4);
    return v4;
  };
  if (std::memcmp(b, kZeros, 10) == 0 && b[10] == 0xff && b[11] == 0xff) return carried(b + 12);
  if (std::memcmp(b, kZeros, 10) == 0 && b[10] == 0 && b[11] == 0) {
    // ::/96 less :: and ::1, which are IPv6's own unspecified and loopback addresses.
    bool own = b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1;
    return own ? std::nullopt : std::optional(carried(b + 12));
  }
  if (has_prefix(b, {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0})) return carried(b + 12);
  if (has_prefix(b, {0x20, 0x02})) return carried(b + 2);
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4_ ? AF_INET : AF_INET6, bytes_.data(), text, sizeof text);
  return text;
}

std::optional<IpRange> IpRange::parse(std::string_view text, std::string* error) {
  std::string_view address_text = text;
  std::optional<int> prefix;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    address_text = text.substr(0, slash);
    std::string_view digits = text.substr(slash + 1);
    int value = -1;
    auto [end, status] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || status != std::errc() || end != digits.data() + digits.size()) {
      *error = "\"" + std::string(text) + "\" has no valid prefix length after '/'";
      return std::nullopt;
    }
    prefix = value;
  }
  std::optional<IpAddress> address = IpAddress::parse(address_text);
  if (!address) {
    *error = "\"" + std::string(text) +
             "\" is not an IP address or CIDR range (write one like 10.0.0.0/8, 192.168.1.5 or "
             "fd00::/8)";
    return std::nullopt;
  }
  int bits = address->bit_count();
  if (!prefix) prefix = bits;
  if (*prefix < 0 || *prefix > bits) {
    *error = "\"" + std::string(text) + "\" has prefix length " + std::to_string(*prefix) +
             ", but an IPv" + (address->is_v4() ? "4" : "6") + " prefix is 0 to " +
             std::to_string(bits);
    return std::nullopt;
  }
  for (int index = *prefix; index < bits; ++index) {
    if (address->bit(index)) {
      // Masking silently would widen or shift what the operator believes they allowed.
      IpAddress masked = *address;
      for (int clear = *prefix; clear < bits; ++clear) {
        masked.bytes_[clear / 8] &= static_cast<uint8_t>(~(1u << (7 - clear % 8)));
      }
      *error = "\"" + std::string(text) + "\" has bits set beyond its /" + std::to_string(*prefix) +
               " prefix; did you mean " + masked.to_string() + "/" + std::to_string(*prefix) + "?";
      return std::nullopt;
    }
  }
  return IpRange(*address, *prefix);
}

bool IpRange::contains(const IpAddress& address) const {
  if (address.is_v4() != first_.is_v4()) return false;
  for (int index = 0; index < prefix_; ++index) {
    if (address.bit(index) != first_.bit(index)) return false;
  }
  return true;
}

std::string IpRange::to_string() const {
  return first_.to_string() + "/" + std::to_string(prefix_);
}

std::optional<SpecialRange> classify(const IpAddress& address) {
  std::optional<IpAddress> carried = address.embedded_v4();
  if (!carried) return find_special(address);
  const uint8_t* b = address.bytes();
  bool mapped = b[10] == 0xff;
  bool nat64 = b[0] == 0x00 && b[1] == 0x64;
  bool six_to_four = b[0] == 0x20;
  if (!mapped && !nat64 && !six_to_four) return find_special(address);  // IPv4-compatible
  std::optional<SpecialRange> inner = find_special(*carried);
  if (!inner) return std::nullopt;
  std::string_view cidr = mapped ? "::ffff:0:0/96" : nat64 ? "64:ff9b::/96" : "2002::/16";
  for (const EmbeddedKind& kind : kEmbeddedKinds) {
    if (kind.v4_kind == inner->kind) {
      return SpecialRange{cidr, mapped ? kind.mapped : nat64 ? kind.nat64 : kind.six_to_four};
    }
  }
  return SpecialRange{cidr, "IPv6 form of a special-purpose IPv4 address"};
}

bool address_allowed(const IpAddress& address, const std::vector<IpRange>& allow_private) {
  if (!classify(address)) return true;
  std::optional<IpAddress> carried = address.embedded_v4();
  for (const IpRange& range : allow_private) {
    if (range.contains(address) || (carried && range.contains(*carried))) return true;
  }
  return false;
}

}  // namespace corral::broker
