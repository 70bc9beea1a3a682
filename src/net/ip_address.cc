#include "net/ip_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace corral::net {

namespace {

bool has_prefix(const uint8_t* bytes, std::initializer_list<uint8_t> prefix) {
  return std::memcmp(bytes, prefix.begin(), prefix.size()) == 0;
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

}  // namespace corral::net
