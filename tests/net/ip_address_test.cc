// Addresses and CIDR ranges as operators write them in allow_private and as the broker checks
// resolved addresses against them.
#include "net/ip_address.h"

#include <gtest/gtest.h>

#include <string>

namespace corral::net {
namespace {

IpRange range(std::string_view text) {
  std::string error;
  std::optional<IpRange> parsed = IpRange::parse(text, &error);
  if (!parsed) ADD_FAILURE() << text << ": " << error;
  return parsed.value();
}

bool holds(std::string_view range_text, std::string_view address_text) {
  std::optional<IpAddress> address = IpAddress::parse(address_text);
  if (!address) ADD_FAILURE() << address_text << " did not parse";
  return range(range_text).contains(*address);
}

TEST(IpAddressParse, TakesBothFamiliesWithOrWithoutBracketsAndNothingElse) {
  EXPECT_TRUE(IpAddress::parse("10.0.0.1")->is_v4());
  EXPECT_FALSE(IpAddress::parse("::1")->is_v4());
  EXPECT_EQ(IpAddress::parse("[2001:DB8::1]")->to_string(), "2001:db8::1");
  EXPECT_FALSE(IpAddress::parse("127.1"));         // shorthand IPv4
  EXPECT_FALSE(IpAddress::parse("fe80::1%eth0"));  // zone id
  EXPECT_FALSE(IpAddress::parse("localhost"));
  EXPECT_FALSE(IpAddress::parse(""));
  EXPECT_FALSE(IpAddress::parse("[]"));
}

TEST(IpRange, HoldsAddressesOfItsFamilyWithinThePrefix) {
  EXPECT_TRUE(holds("10.0.0.0/8", "10.255.1.2"));
  EXPECT_FALSE(holds("10.0.0.0/8", "11.0.0.1"));
  EXPECT_TRUE(holds("127.0.0.1", "127.0.0.1"));  // a bare address is a range of one
  EXPECT_FALSE(holds("127.0.0.1", "127.0.0.2"));
  EXPECT_TRUE(holds("192.168.0.0/23", "192.168.1.255"));
  EXPECT_FALSE(holds("192.168.0.0/23", "192.168.2.0"));
  EXPECT_TRUE(holds("fd00::/8", "fd12:3456::1"));
  EXPECT_FALSE(holds("fd00::/8", "fe80::1"));
  EXPECT_TRUE(holds("0.0.0.0/0", "8.8.8.8"));
  // Of its own family only: the broker pairs IPv6 forms with the IPv4 address they carry.
  EXPECT_FALSE(holds("10.0.0.0/8", "::ffff:10.1.2.3"));
  EXPECT_FALSE(holds("fd00::/8", "10.0.0.1"));
}

TEST(IpRange, RefusesMalformedRangesWithAHint) {
  std::string error;
  EXPECT_FALSE(IpRange::parse("10.0.0.1/8", &error));
  EXPECT_NE(error.find("did you mean 10.0.0.0/8?"), std::string::npos) << error;
  EXPECT_FALSE(IpRange::parse("fd00::1/8", &error));
  EXPECT_NE(error.find("did you mean fd00::/8?"), std::string::npos) << error;
  EXPECT_FALSE(IpRange::parse("10.0.0.0/33", &error));
  EXPECT_NE(error.find("an IPv4 prefix is 0 to 32"), std::string::npos) << error;
  EXPECT_FALSE(IpRange::parse("fd00::/129", &error));
  EXPECT_NE(error.find("an IPv6 prefix is 0 to 128"), std::string::npos) << error;
  EXPECT_FALSE(IpRange::parse("localhost", &error));
  EXPECT_NE(error.find("not an IP address or CIDR range"), std::string::npos) << error;
  EXPECT_FALSE(IpRange::parse("10.0.0.0/", &error));
  EXPECT_NE(error.find("no valid prefix length"), std::string::npos) << error;
  EXPECT_FALSE(IpRange::parse("10.0.0.0/8x", &error));
  EXPECT_EQ(range("fd00::/8").to_string(), "fd00::/8");
}

}  // namespace
}  // namespace corral::net
