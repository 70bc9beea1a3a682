// Origin patterns as the policy and the broker both read them (the policy's tests cover names
// and wildcards through its face; here, what the two used to read differently).
#include "net/origin_pattern.h"

#include <gtest/gtest.h>

#include <string>

namespace corral::net {
namespace {

OriginPattern pattern(std::string_view text) {
  std::string error;
  std::optional<OriginPattern> parsed = OriginPattern::parse(text, &error);
  if (!parsed) ADD_FAILURE() << text << ": " << error;
  return parsed.value();
}

std::string refusal(std::string_view text) {
  std::string error;
  EXPECT_FALSE(OriginPattern::parse(text, &error)) << text;
  return error;
}

TEST(OriginPattern, EveryHostIsNamed) {
  EXPECT_NE(refusal("http://*").find("'*' elsewhere, or alone, is not allowed"), std::string::npos);
  EXPECT_NE(refusal("https://*:443").find("is not allowed"), std::string::npos);
  EXPECT_NE(refusal("https://*.com").find("at least two labels"), std::string::npos);
  EXPECT_NE(refusal("https://a_b.example").find("contains '_'"), std::string::npos);
}

TEST(OriginPattern, AddressesMatchAsAddressesHoweverWritten) {
  OriginPattern v6 = pattern("http://[2001:DB8:0:0::1]:81");
  EXPECT_EQ(v6.host, "2001:db8::1");
  EXPECT_TRUE(v6.matches("http", "[2001:db8::1]", 81));
  EXPECT_TRUE(v6.matches("http", "2001:0db8::0:1", 81));
  EXPECT_FALSE(v6.matches("http", "[2001:db8::2]", 81));

  OriginPattern mapped = pattern("http://[::ffff:127.0.0.1]:81");
  EXPECT_TRUE(mapped.matches("http", "[::ffff:7f00:1]", 81));
  EXPECT_FALSE(mapped.matches("http", "127.0.0.1", 81));  // another family, another address

  OriginPattern v4 = pattern("https://10.1.2.3");
  EXPECT_TRUE(v4.matches("https", "10.1.2.3", 443));
  EXPECT_FALSE(v4.matches("https", "[::ffff:10.1.2.3]", 443));
  EXPECT_FALSE(v4.matches("https", "10.1.2.3.example", 443));  // a name, not the address
  EXPECT_FALSE(v4.matches("https", "010.1.2.3", 443));         // no lenient address forms

  EXPECT_NE(refusal("http://[10.1.2.3]").find("not a valid IPv6 address"), std::string::npos);
  EXPECT_NE(refusal("http://10.1.2").find("not a valid IPv4 address"), std::string::npos);
}

TEST(OriginPattern, ANameNeverMatchesAnAddressNorAnAddressPatternAName) {
  OriginPattern name = pattern("http://localhost:8080");
  EXPECT_TRUE(name.matches("http", "LOCALHOST.", 8080));
  EXPECT_FALSE(name.matches("http", "127.0.0.1", 8080));
  EXPECT_FALSE(name.matches("http", "[::1]", 8080));
  OriginPattern wildcard = pattern("http://*.example.org:*");
  EXPECT_TRUE(wildcard.matches("http", "a.example.org", 1));
  EXPECT_FALSE(wildcard.matches("http", "[::1]", 1));
}

}  // namespace
}  // namespace corral::net
