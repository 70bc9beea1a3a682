// `corral policy explain http.fetch URL` and the broker must give the same answer for every URL.
// Both match with net::OriginPattern, but each finds the URL's origin its own way (explain by
// splitting the text, the broker with the libcurl parser that will fetch it), so this checks that
// the two agree over patterns of every shape and URLs written every way a script might.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "broker/http_fetch.h"
#include "policy/policy.h"

namespace corral::broker {
namespace {

const std::vector<std::string> kPatterns = {
    "https://api.example.com", "http://*.example.org:*",         "https://10.1.2.3:8443",
    "https://[2001:db8::1]",   "http://Mixed.Case.Example:8080", "https://hooks.example.net:443",
};

const std::vector<std::string> kUrls = {
    "https://api.example.com/v1/orders",
    "https://API.EXAMPLE.COM/",
    "https://api.example.com./x",
    "https://api.example.com:443/",
    "https://api.example.com:8443/",
    "http://api.example.com/",
    "https://example.com/",
    "https://x.api.example.com/",
    "https://api.example.com.evil.org/",
    "https://evilapi.example.com/",
    "http://a.example.org/",
    "http://a.b.example.org:9000/path?q=1",
    "http://example.org/",
    "https://a.example.org/",
    "http://a.example.org.evil.net/",
    "http://xexample.org/",
    "https://10.1.2.3:8443/",
    "https://10.1.2.3/",
    "http://10.1.2.3:8443/",
    "https://10.1.2.4:8443/",
    "https://[2001:db8::1]/",
    "https://[2001:DB8:0:0::1]/",
    "https://[2001:db8::2]/",
    "https://[2001:db8::1]:8443/",
    "http://mixed.case.example:8080/",
    "http://MIXED.case.Example.:8080/a",
    "http://mixed.case.example/",
    "https://hooks.example.net/",
    "https://hooks.example.net:443/",
    "https://hooks.example.net:444/",
    "https://api.example.com/#fragment",
    "https://api.example.com?x=1",
};

std::string policy_text() {
  std::string allow;
  for (const auto& pattern : kPatterns)
    allow += (allow.empty() ? "" : ", ") + ("\"" + pattern + "\"");
  return "tenants:\n  acme:\n    capabilities:\n      http: {allow: [" + allow + "]}\n";
}

TEST(ExplainAgreesWithTheBroker, OnEveryUrlForEveryPattern) {
  policy::Policy policy = policy::Policy::parse(policy_text());
  HttpRules rules;
  rules.allow = kPatterns;
  ASSERT_TRUE(validate_rules(rules).empty());
  int allowed = 0;
  for (const auto& url : kUrls) {
    policy::Decision explained = policy.explain("acme", "http.fetch " + url);
    std::optional<std::string> enforced = matching_allow_pattern(rules, url);
    EXPECT_EQ(explained.allowed, enforced.has_value())
        << url << ": explain says " << explained.reason << "; the broker "
        << (enforced ? "admits it by " + *enforced : std::string("refuses it"));
    allowed += enforced.has_value();
  }
  // Both answers occur, so that agreement is not agreement on "no" (or "yes") throughout.
  EXPECT_GT(allowed, 5);
  EXPECT_LT(allowed, static_cast<int>(kUrls.size()) - 5);
}

}  // namespace
}  // namespace corral::broker
