#include "broker/address_rules.h"

#include <string>

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
