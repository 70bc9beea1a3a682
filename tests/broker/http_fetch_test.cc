// The HTTP broker against loopback servers this test starts, and the address classifier it relies
// on. Every fetch here goes to 127.0.0.1 (or is refused before any connection is made).
#include "broker/http_fetch.h"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "broker/address_rules.h"
#include "broker/loopback_http_server.h"

namespace corral::broker {
namespace {

using Kind = FetchResult::Kind;
using testing::LoopbackHttpServer;

std::string percent_encode(const std::string& text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string header_value(const nlohmann::json& echo, std::string name) {
  for (const auto& header : echo["headers"]) {
    std::string got = header[0];
    if (got.size() == name.size() &&
        std::equal(got.begin(), got.end(), name.begin(),
                   [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
      return header[1];
    }
  }
  return "(absent)";
}

bool has_header(const HttpHeaders& headers, std::string_view name) {
  for (const auto& [got, value] : headers) {
    if (got.size() == name.size() &&
        std::equal(got.begin(), got.end(), name.begin(),
                   [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
      return true;
    }
  }
  return false;
}

// ---- the address classifier ----

std::string kind_of(std::string_view text) {
  std::optional<IpAddress> address = IpAddress::parse(text);
  if (!address) return "(unparsable)";
  std::optional<SpecialRange> range = classify(*address);
  return range ? std::string(range->kind) : "public";
}

TEST(AddressClassifier, SpecialPurposeIpv4Ranges) {
  EXPECT_EQ(kind_of("10.0.0.1"), "private");
  EXPECT_EQ(kind_of("10.255.255.255"), "private");
  EXPECT_EQ(kind_of("172.16.0.1"), "private");
  EXPECT_EQ(kind_of("172.31.255.255"), "private");
  EXPECT_EQ(kind_of("172.32.0.1"), "public");
  EXPECT_EQ(kind_of("192.168.1.1"), "private");
  EXPECT_EQ(kind_of("169.254.169.254"), "link-local");
  EXPECT_EQ(kind_of("100.64.0.1"), "shared address space (CGNAT)");
  EXPECT_EQ(kind_of("100.127.255.255"), "shared address space (CGNAT)");
  EXPECT_EQ(kind_of("100.128.0.0"), "public");
  EXPECT_EQ(kind_of("127.0.0.1"), "loopback");
  EXPECT_EQ(kind_of("127.255.0.9"), "loopback");
  EXPECT_EQ(kind_of("0.0.0.0"), "unspecified (\"this network\")");
  EXPECT_EQ(kind_of("224.0.0.1"), "multicast");
  EXPECT_EQ(kind_of("255.255.255.255"), "reserved");
  EXPECT_EQ(kind_of("93.184.216.34"), "public");
  EXPECT_EQ(kind_of("8.8.8.8"), "public");
}

TEST(AddressClassifier, SpecialPurposeIpv6Ranges) {
  EXPECT_EQ(kind_of("::1"), "loopback");
  EXPECT_EQ(kind_of("::"), "unspecified");
  EXPECT_EQ(kind_of("fe80::1"), "link-local");
  EXPECT_EQ(kind_of("febf:ffff::1"), "link-local");
  EXPECT_EQ(kind_of("fc00::1"), "unique-local");
  EXPECT_EQ(kind_of("fd12:3456::1"), "unique-local");
  EXPECT_EQ(kind_of("ff02::1"), "multicast");
  EXPECT_EQ(kind_of("2606:4700:4700::1111"), "public");
  EXPECT_EQ(kind_of("[2001:4860:4860::8888]"), "public");
}

TEST(AddressClassifier, Ipv6FormsAreClassifiedByTheIpv4AddressTheyCarry) {
  EXPECT_EQ(kind_of("::ffff:127.0.0.1"), "IPv4-mapped loopback");
  EXPECT_EQ(kind_of("[::ffff:7f00:1]"), "IPv4-mapped loopback");
  EXPECT_EQ(kind_of("::ffff:10.1.2.3"), "IPv4-mapped private");
  EXPECT_EQ(kind_of("::ffff:169.254.169.254"), "IPv4-mapped link-local");
  EXPECT_EQ(kind_of("::ffff:8.8.8.8"), "public");
  EXPECT_EQ(kind_of("64:ff9b::127.0.0.1"), "NAT64 loopback");
  EXPECT_EQ(kind_of("2002:c0a8:0101::1"), "6to4 private");  // 192.168.1.1
  EXPECT_EQ(kind_of("::127.0.0.1"), "IPv4-compatible (deprecated)");
  EXPECT_EQ(kind_of("::8.8.8.8"), "IPv4-compatible (deprecated)");
}

TEST(AddressClassifier, AllowPrivateCoversAnAddressAndTheIpv6FormsCarryingIt) {
  std::string error;
  std::vector<IpRange> allow = {*IpRange::parse("127.0.0.1", &error),
                                *IpRange::parse("10.1.0.0/16", &error)};
  EXPECT_TRUE(address_allowed(*IpAddress::parse("127.0.0.1"), allow));
  EXPECT_TRUE(address_allowed(*IpAddress::parse("::ffff:127.0.0.1"), allow));
  EXPECT_TRUE(address_allowed(*IpAddress::parse("10.1.200.3"), allow));
  EXPECT_FALSE(address_allowed(*IpAddress::parse("127.0.0.2"), allow));
  EXPECT_FALSE(address_allowed(*IpAddress::parse("10.2.0.1"), allow));
  EXPECT_FALSE(address_allowed(*IpAddress::parse("::1"), allow));
  EXPECT_TRUE(address_allowed(*IpAddress::parse("8.8.8.8"), {}));
}

// ---- rules and allow patterns ----

TEST(HttpRulesValidation, NamesEveryBadEntry) {
  HttpRules rules;
  rules.allow = {"https://ok.example.com", "ftp://files.example.com", "https://x.com/path",
                 "http://host:99999"};
  rules.allow_private = {"10.0.0.0/8", "10.0.0.1/8"};
  rules.max_response_bytes = 0;
  rules.timeout_ms = 100LL * 24 * 60 * 60 * 1000;
  std::vector<std::string> errors = validate_rules(rules);
  ASSERT_EQ(errors.size(), 6u);
  EXPECT_NE(errors[0].find("allow[1] \"ftp://files.example.com\""), std::string::npos);
  EXPECT_NE(errors[1].find("allow[2]"), std::string::npos);
  EXPECT_NE(errors[2].find("allow[3]"), std::string::npos);
  EXPECT_NE(errors[3].find("allow_private[1]"), std::string::npos);
  EXPECT_NE(errors[4].find("max_response_bytes"), std::string::npos);
  EXPECT_NE(errors[5].find("timeout_ms"), std::string::npos);
  EXPECT_TRUE(validate_rules(HttpRules{.allow = {"https://*.example.com:*", "http://[::1]:8080"},
                                       .allow_private = {"::1"}})
                  .empty());
  // The policy's parser: every host is named, so "any host" cannot be written.
  EXPECT_EQ(validate_rules(HttpRules{.allow = {"http://*"}}).size(), 1u);
}

TEST(AllowPatterns, WildcardMatchesSubdomainsOnlyNeverTheBareOrALookAlikeDomain) {
  HttpRules rules{.allow = {"https://*.example.com"}};
  EXPECT_EQ(matching_allow_pattern(rules, "https://api.example.com/v1"), "https://*.example.com");
  EXPECT_TRUE(matching_allow_pattern(rules, "https://a.b.example.com/"));
  EXPECT_TRUE(matching_allow_pattern(rules, "https://API.Example.COM./"));
  EXPECT_FALSE(matching_allow_pattern(rules, "https://example.com/"));
  EXPECT_FALSE(matching_allow_pattern(rules, "https://example.com.evil.org/"));
  EXPECT_FALSE(matching_allow_pattern(rules, "https://evilexample.com/"));
  EXPECT_FALSE(matching_allow_pattern(rules, "https://api.example.com:8443/"));
  EXPECT_FALSE(matching_allow_pattern(rules, "http://api.example.com/"));
}

TEST(AllowPatterns, PortsDefaultBySchemeAndStarMeansAny) {
  HttpRules rules{.allow = {"http://a.test", "https://b.test:*", "http://[::ffff:127.0.0.1]:81"}};
  EXPECT_TRUE(matching_allow_pattern(rules, "http://a.test/"));
  EXPECT_TRUE(matching_allow_pattern(rules, "http://a.test:80/"));
  EXPECT_FALSE(matching_allow_pattern(rules, "http://a.test:8080/"));
  EXPECT_TRUE(matching_allow_pattern(rules, "https://b.test:1/"));
  EXPECT_TRUE(matching_allow_pattern(rules, "https://b.test/"));
  // IP literals compare as addresses, whichever way they are written.
  EXPECT_TRUE(matching_allow_pattern(rules, "http://[::ffff:7f00:1]:81/"));
  EXPECT_FALSE(matching_allow_pattern(rules, "http://127.0.0.1:81/"));
}

// ---- fetching ----

class HttpFetchTest : public ::testing::Test {
 protected:
  HttpRules rules_for(const LoopbackHttpServer& server) {
    HttpRules rules;
    rules.allow = {server.origin()};
    rules.allow_private = {"127.0.0.1"};
    rules.max_response_bytes = 64 * 1024;
    rules.timeout_ms = 5000;
    rules.max_redirects = 3;
    rules.max_request_bytes = 16 * 1024;
    return rules;
  }

  FetchResult get(const HttpRules& rules, const std::string& url) {
    return fetcher_.fetch(rules, FetchRequest{.url = url});
  }

  HttpFetcher fetcher_;
  LoopbackHttpServer server_;
};

TEST_F(HttpFetchTest, AllowedFetchReturnsTheResponse) {
  FetchRequest request{.url = server_.url("/echo?x=1"),
                       .method = "post",
                       .headers = {{"X-Custom", "value 1"}, {"Content-Type", "text/plain"}},
                       .body = "hello"};
  FetchResult result = fetcher_.fetch(rules_for(server_), request);
  ASSERT_EQ(result.kind, Kind::ok) << result.message;
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.final_url, server_.url("/echo?x=1"));
  EXPECT_EQ(result.redirects, 0);
  nlohmann::json echo = nlohmann::json::parse(result.body);
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["path"], "/echo?x=1");
  EXPECT_EQ(echo["body"], "hello");
  EXPECT_EQ(header_value(echo, "X-Custom"), "value 1");
  EXPECT_EQ(header_value(echo, "Content-Type"), "text/plain");
  EXPECT_EQ(header_value(echo, "Expect"), "(absent)");
  EXPECT_EQ(header_value(echo, "Accept-Encoding"), "(absent)");
}

TEST_F(HttpFetchTest, EveryAllowedMethodIsSentAsItIs) {
  for (std::string method : {"GET", "HEAD", "PUT", "PATCH", "DELETE"}) {
    FetchRequest request{.url = server_.url("/echo"), .method = method};
    if (method == "PUT" || method == "PATCH") request.body = "b";
    FetchResult result = fetcher_.fetch(rules_for(server_), request);
    ASSERT_EQ(result.kind, Kind::ok) << method << ": " << result.message;
    if (method == "HEAD") {
      EXPECT_EQ(result.body, "");
    } else {
      EXPECT_EQ(nlohmann::json::parse(result.body)["method"], method);
    }
  }
}

TEST_F(HttpFetchTest, MethodOutsideTheSixIsDenied) {
  FetchResult result = fetcher_.fetch(rules_for(server_),
                                      FetchRequest{.url = server_.url("/echo"), .method = "TRACE"});
  EXPECT_EQ(result.kind, Kind::denied);
  EXPECT_EQ(result.rule, "methods");
  EXPECT_NE(result.message.find("\"TRACE\""), std::string::npos) << result.message;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, HostNotAllowedIsDeniedBeforeAnythingIsSent) {
  HttpRules rules = rules_for(server_);
  rules.allow = {"http://api.example.com:*"};
  FetchResult result = get(rules, server_.url("/echo"));
  EXPECT_EQ(result.kind, Kind::denied);
  EXPECT_EQ(result.rule, "allow");
  EXPECT_NE(result.message.find(server_.origin() + " is not in the http allow list"),
            std::string::npos)
      << result.message;
  EXPECT_NE(result.message.find("pattern \"" + server_.origin() + "\""), std::string::npos)
      << result.message;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, SchemeNotAllowedIsDenied) {
  FetchResult ftp = get(rules_for(server_), "ftp://127.0.0.1:" + std::to_string(server_.port()));
  EXPECT_EQ(ftp.kind, Kind::denied);
  EXPECT_EQ(ftp.rule, "schemes");
  EXPECT_NE(ftp.message.find("only http and https"), std::string::npos) << ftp.message;

  FetchResult file = get(rules_for(server_), "file:///etc/passwd");
  EXPECT_EQ(file.kind, Kind::denied);
  EXPECT_EQ(file.rule, "schemes");

  // https to the same host and port is a different origin, which the rules do not name.
  FetchResult https =
      get(rules_for(server_), "https://127.0.0.1:" + std::to_string(server_.port()) + "/echo");
  EXPECT_EQ(https.kind, Kind::denied);
  EXPECT_EQ(https.rule, "allow");
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, PortNotAllowedIsDenied) {
  LoopbackHttpServer other;
  FetchResult result = get(rules_for(server_), other.url("/echo"));
  EXPECT_EQ(result.kind, Kind::denied);
  EXPECT_EQ(result.rule, "allow");
  EXPECT_EQ(other.requests(), 0);
}

TEST_F(HttpFetchTest, CredentialsInTheUrlAreRefused) {
  FetchResult result =
      get(rules_for(server_), "http://user:secret@127.0.0.1:" + std::to_string(server_.port()));
  EXPECT_EQ(result.kind, Kind::denied);
  EXPECT_EQ(result.rule, "url_credentials");
  EXPECT_EQ(result.message.find("secret"), std::string::npos) << result.message;
  EXPECT_EQ(result.final_url.find("secret"), std::string::npos) << result.final_url;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, MalformedUrlIsInvalid) {
  FetchResult result = get(rules_for(server_), "not a url");
  EXPECT_EQ(result.kind, Kind::invalid);
  EXPECT_NE(result.message.find("\"not a url\" is not a valid URL"), std::string::npos)
      << result.message;
}

// A host no allow pattern could name is refused as not a host name, before the allow list: a
// denial would suggest a pattern the policy refuses to parse.
TEST_F(HttpFetchTest, AHostNoPatternCouldNameIsInvalid) {
  HttpRules rules = rules_for(server_);
  for (std::string host : {"bad_name.example", "-lead.example", "a..b.example"}) {
    FetchResult result = get(rules, "http://" + host + "/echo");
    EXPECT_EQ(result.kind, Kind::invalid) << host << ": " << result.message;
    EXPECT_NE(result.message.find("not a host name fetches can reach"), std::string::npos)
        << result.message;
  }
  FetchResult underscore = get(rules, "http://bad_name.example/echo");
  EXPECT_NE(underscore.message.find("contains '_'"), std::string::npos) << underscore.message;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, LiteralLoopbackIsDeniedWithoutAllowPrivate) {
  HttpRules rules = rules_for(server_);
  rules.allow_private.clear();
  FetchResult result = get(rules, server_.url("/echo"));
  EXPECT_EQ(result.kind, Kind::denied);
  EXPECT_EQ(result.rule, "allow_private");
  EXPECT_NE(result.message.find("points to 127.0.0.1 (loopback, 127.0.0.0/8)"), std::string::npos)
      << result.message;
  EXPECT_NE(result.message.find("adding 127.0.0.1 to allow_private"), std::string::npos)
      << result.message;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, NameResolvingToLoopbackIsDeniedUnlessAllowPrivateNamesTheAddress) {
  std::string url = "http://localhost:" + std::to_string(server_.port()) + "/echo";
  HttpRules rules = rules_for(server_);
  rules.allow = {"http://localhost:" + std::to_string(server_.port())};
  rules.allow_private.clear();
  FetchResult denied = get(rules, url);
  EXPECT_EQ(denied.kind, Kind::denied) << denied.message;
  EXPECT_EQ(denied.rule, "allow_private");
  EXPECT_NE(denied.message.find("(loopback, "), std::string::npos) << denied.message;
  EXPECT_EQ(server_.requests(), 0);

  rules.allow_private = {"10.0.0.0/8"};  // some private range, not this one
  EXPECT_EQ(get(rules, url).kind, Kind::denied);

  rules.allow_private = {"127.0.0.1"};
  FetchResult allowed = get(rules, url);
  ASSERT_EQ(allowed.kind, Kind::ok) << allowed.message;
  EXPECT_EQ(server_.requests(), 1);
}

// The review's attack: allow_private names 127.0.0.1 for one origin, and another pattern with a
// wildcard host or port admits names that resolve to loopback (curl resolves *.localhost there
// itself). A private address is reachable only through an origin named exactly: the wildcards
// reach no loopback service, while the origin it was allowed for still works.
TEST_F(HttpFetchTest, AllowPrivateOpensAnAddressOnlyThroughTheOriginNamedExactly) {
  LoopbackHttpServer other;  // another loopback service, never meant to be reached
  HttpRules rules = rules_for(server_);
  rules.allow = {server_.origin(), "http://*.partner.localhost:*", "http://localhost:*",
                 "http://127.0.0.1:*"};
  rules.allow_private = {"127.0.0.1"};
  std::string port = std::to_string(other.port());
  for (std::string url :
       {"http://evil.partner.localhost:" + port + "/echo", "http://localhost:" + port + "/echo",
        "http://127.0.0.1:" + port + "/echo"}) {
    FetchResult result = get(rules, url);
    EXPECT_EQ(result.kind, Kind::denied) << url << ": " << result.message;
    EXPECT_EQ(result.rule, "allow_private") << url;
  }
  EXPECT_EQ(other.requests(), 0) << "a loopback service was reached through a wildcard";
  // A pattern naming an address reaches that address only, even when allow_private is wider.
  rules.allow = {"http://127.0.0.2:" + port};
  rules.allow_private = {"127.0.0.0/8"};
  EXPECT_EQ(get(rules, "http://127.0.0.2:" + port + "/echo").kind, Kind::failed)
      << "nothing listens on 127.0.0.2: the fetch is let through and fails to connect";
  rules = rules_for(server_);
  FetchResult allowed = get(rules, server_.url("/echo"));
  EXPECT_EQ(allowed.kind, Kind::ok) << allowed.message;
}

TEST_F(HttpFetchTest, Ipv4MappedLoopbackIsTreatedAsLoopback) {
  std::string url = "http://[::ffff:127.0.0.1]:" + std::to_string(server_.port()) + "/echo";
  HttpRules rules = rules_for(server_);
  rules.allow = {"http://[::ffff:127.0.0.1]:*"};
  rules.allow_private.clear();
  FetchResult denied = get(rules, url);
  EXPECT_EQ(denied.kind, Kind::denied) << denied.message;
  EXPECT_EQ(denied.rule, "allow_private");
  EXPECT_NE(denied.message.find("::ffff:127.0.0.1 (IPv4-mapped loopback, ::ffff:0:0/96)"),
            std::string::npos)
      << denied.message;
  // The suggested entry is the IPv4 address, which covers both forms.
  EXPECT_NE(denied.message.find("adding 127.0.0.1 to allow_private"), std::string::npos)
      << denied.message;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, RedirectIsFollowedToAnAllowedSecondServer) {
  LoopbackHttpServer second;
  HttpRules rules = rules_for(server_);
  rules.allow.push_back(second.origin());
  std::string target = second.url("/echo/landed");
  FetchResult result = get(rules, server_.url("/redirect?to=" + percent_encode(target)));
  ASSERT_EQ(result.kind, Kind::ok) << result.message;
  EXPECT_EQ(result.redirects, 1);
  EXPECT_EQ(result.final_url, target);
  EXPECT_EQ(nlohmann::json::parse(result.body)["path"], "/echo/landed");
  EXPECT_EQ(second.requests(), 1);
}

TEST_F(HttpFetchTest, RedirectToAForbiddenPortIsDeniedAtThatHop) {
  LoopbackHttpServer second;  // not in the allow list
  std::string target = second.url("/echo");
  FetchResult result =
      get(rules_for(server_), server_.url("/redirect?to=" + percent_encode(target)));
  EXPECT_EQ(result.kind, Kind::denied);
  EXPECT_EQ(result.rule, "allow");
  EXPECT_EQ(result.final_url, target);
  EXPECT_NE(result.message.find("the redirect from " + server_.url("/redirect")), std::string::npos)
      << result.message;
  EXPECT_EQ(server_.requests(), 1);
  EXPECT_EQ(second.requests(), 0);
}

TEST_F(HttpFetchTest, RedirectToAForbiddenHostOrSchemeIsDenied) {
  FetchResult host = get(rules_for(server_),
                         server_.url("/redirect?to=" + percent_encode("http://evil.example/")));
  EXPECT_EQ(host.kind, Kind::denied);
  EXPECT_EQ(host.rule, "allow");
  EXPECT_EQ(host.final_url, "http://evil.example/");

  FetchResult scheme =
      get(rules_for(server_), server_.url("/redirect?to=" + percent_encode("file:///etc/passwd")));
  EXPECT_EQ(scheme.kind, Kind::denied);
  EXPECT_EQ(scheme.rule, "schemes");
}

TEST_F(HttpFetchTest, RedirectToAPrivateAddressIsDeniedAtThatHop) {
  // The first hop's address is allowed; the second's (127.0.0.2) is not.
  HttpRules rules = rules_for(server_);
  rules.allow.push_back("http://127.0.0.2:*");
  FetchResult result =
      get(rules, server_.url("/redirect?to=" + percent_encode("http://127.0.0.2:9/")));
  EXPECT_EQ(result.kind, Kind::denied) << result.message;
  EXPECT_EQ(result.rule, "allow_private");
  EXPECT_NE(result.message.find("127.0.0.2"), std::string::npos) << result.message;
}

TEST_F(HttpFetchTest, TooManyRedirectsFail) {
  FetchResult result = get(rules_for(server_), server_.url("/loop/0"));
  EXPECT_EQ(result.kind, Kind::failed);
  EXPECT_EQ(result.redirects, 3);
  EXPECT_NE(result.message.find("stopped after 3 redirects"), std::string::npos) << result.message;
  EXPECT_EQ(server_.requests(), 4);
}

TEST_F(HttpFetchTest, SeeOtherTurnsAPostIntoAGetWithoutBody) {
  std::string to = percent_encode(server_.url("/echo"));
  FetchRequest request{.url = server_.url("/redirect?status=303&to=" + to),
                       .method = "POST",
                       .headers = {{"Content-Type", "text/plain"}},
                       .body = "payload"};
  FetchResult result = fetcher_.fetch(rules_for(server_), request);
  ASSERT_EQ(result.kind, Kind::ok) << result.message;
  nlohmann::json echo = nlohmann::json::parse(result.body);
  EXPECT_EQ(echo["method"], "GET");
  EXPECT_EQ(echo["body"], "");
  EXPECT_EQ(header_value(echo, "Content-Type"), "(absent)");

  request.url = server_.url("/redirect?status=307&to=" + to);
  result = fetcher_.fetch(rules_for(server_), request);
  ASSERT_EQ(result.kind, Kind::ok) << result.message;
  echo = nlohmann::json::parse(result.body);
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["body"], "payload");
}

TEST_F(HttpFetchTest, HugeResponseIsTooLarge) {
  for (std::string route : {"/huge", "/huge-unannounced"}) {
    FetchResult result = get(rules_for(server_), server_.url(route + "?bytes=10000000"));
    EXPECT_EQ(result.kind, Kind::too_large) << route << ": " << result.message;
    EXPECT_TRUE(result.body.empty());
    EXPECT_NE(result.message.find("max_response_bytes (65536 bytes)"), std::string::npos)
        << result.message;
  }
  FetchResult fits = get(rules_for(server_), server_.url("/huge-unannounced?bytes=65536"));
  EXPECT_EQ(fits.kind, Kind::ok) << fits.message;
  EXPECT_EQ(fits.body.size(), 65536u);
}

TEST_F(HttpFetchTest, SlowResponseTimesOutWithinTheLimit) {
  HttpRules rules = rules_for(server_);
  rules.timeout_ms = 300;
  for (std::string route : {"/slow?ms=5000", "/slow-body?ms=5000"}) {
    auto start = std::chrono::steady_clock::now();
    FetchResult result = get(rules, server_.url(route));
    auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(result.kind, Kind::timed_out) << route << ": " << result.message;
    EXPECT_NE(result.message.find("300 ms"), std::string::npos) << result.message;
    EXPECT_GE(elapsed, std::chrono::milliseconds(250));
    EXPECT_LT(elapsed, std::chrono::milliseconds(1500));
  }
}

TEST_F(HttpFetchTest, RequestTimeoutMayOnlyShortenTheRulesTimeout) {
  HttpRules rules = rules_for(server_);
  rules.timeout_ms = 300;
  auto start = std::chrono::steady_clock::now();
  FetchResult longer = fetcher_.fetch(
      rules, FetchRequest{.url = server_.url("/slow?ms=2000"), .timeout_ms = 60'000});
  EXPECT_EQ(longer.kind, Kind::timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));

  rules.timeout_ms = 10'000;
  start = std::chrono::steady_clock::now();
  FetchResult shorter =
      fetcher_.fetch(rules, FetchRequest{.url = server_.url("/slow?ms=5000"), .timeout_ms = 200});
  EXPECT_EQ(shorter.kind, Kind::timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));

  FetchResult negative =
      fetcher_.fetch(rules, FetchRequest{.url = server_.url("/echo"), .timeout_ms = -1});
  EXPECT_EQ(negative.kind, Kind::invalid);
}

TEST_F(HttpFetchTest, HeaderInjectionIsRefused) {
  const HttpHeaders attempts[] = {
      {{"X-Note", "a\r\nX-Injected: 1"}},
      {{"X-Note", "a\nX-Injected: 1"}},
      {{"X-Note", std::string("a\0b", 3)}},
      {{"X-Injected: 1\r\nX-Note", "a"}},
      {{"X Note", "a"}},
      {{"X-Note:", "a"}},
      {{"", "a"}},
  };
  for (const HttpHeaders& headers : attempts) {
    FetchResult result = fetcher_.fetch(
        rules_for(server_), FetchRequest{.url = server_.url("/echo"), .headers = headers});
    EXPECT_EQ(result.kind, Kind::invalid) << headers[0].first;
    EXPECT_NE(result.message.find("request header 1"), std::string::npos) << result.message;
  }
  FetchResult crlf = fetcher_.fetch(
      rules_for(server_), FetchRequest{.url = server_.url("/echo"), .headers = attempts[0]});
  EXPECT_NE(crlf.message.find("carriage return (CR)"), std::string::npos) << crlf.message;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, CredentialAndHopByHopRequestHeadersAreStripped) {
  FetchRequest request{.url = server_.url("/echo"),
                       .headers = {{"Authorization", "Bearer secret"},
                                   {"Cookie", "session=1"},
                                   {"Proxy-Authorization", "Basic eA=="},
                                   {"Host", "internal.example"},
                                   {"Connection", "X-Custom"},
                                   {"Keep-Alive", "timeout=5"},
                                   {"Transfer-Encoding", "chunked"},
                                   {"Upgrade", "websocket"},
                                   {"TE", "trailers"},
                                   {"X-Custom", "kept"}}};
  FetchResult result = fetcher_.fetch(rules_for(server_), request);
  ASSERT_EQ(result.kind, Kind::ok) << result.message;
  nlohmann::json echo = nlohmann::json::parse(result.body);
  for (std::string name : {"Authorization", "Cookie", "Proxy-Authorization", "Connection",
                           "Keep-Alive", "Transfer-Encoding", "Upgrade", "TE"}) {
    EXPECT_EQ(header_value(echo, name), "(absent)") << name;
  }
  EXPECT_EQ(header_value(echo, "Host"), "127.0.0.1:" + std::to_string(server_.port()));
  EXPECT_EQ(header_value(echo, "X-Custom"), "kept");
  EXPECT_EQ(
      result.stripped_headers,
      (std::vector<std::string>{"Authorization", "Cookie", "Proxy-Authorization", "Host",
                                "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "TE"}));
}

TEST_F(HttpFetchTest, SetCookieAndHopByHopResponseHeadersAreStripped) {
  FetchResult result = get(rules_for(server_), server_.url("/echo"));
  ASSERT_EQ(result.kind, Kind::ok) << result.message;
  EXPECT_FALSE(has_header(result.headers, "Set-Cookie"));
  EXPECT_FALSE(has_header(result.headers, "Connection"));
  EXPECT_FALSE(has_header(result.headers, "X-Hop"));  // named by Connection: hop-by-hop
  EXPECT_TRUE(has_header(result.headers, "X-Kept"));
  EXPECT_TRUE(has_header(result.headers, "Content-Type"));
}

TEST_F(HttpFetchTest, RequestOverMaxRequestBytesIsTooLarge) {
  FetchResult result = fetcher_.fetch(
      rules_for(server_),
      FetchRequest{.url = server_.url("/echo"), .method = "POST", .body = std::string(20000, 'z')});
  EXPECT_EQ(result.kind, Kind::too_large);
  EXPECT_NE(result.message.find("max_request_bytes (16384)"), std::string::npos) << result.message;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, BodyOnAGetIsInvalid) {
  FetchResult result =
      fetcher_.fetch(rules_for(server_), FetchRequest{.url = server_.url("/echo"), .body = "x"});
  EXPECT_EQ(result.kind, Kind::invalid);
  EXPECT_NE(result.message.find("use POST or PUT"), std::string::npos) << result.message;
}

TEST_F(HttpFetchTest, InvalidRulesFailClosed) {
  HttpRules rules = rules_for(server_);
  rules.allow_private = {"127.0.0.1/8"};
  FetchResult result = get(rules, server_.url("/echo"));
  EXPECT_EQ(result.kind, Kind::failed);
  EXPECT_NE(result.message.find("allow_private[0]"), std::string::npos) << result.message;
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(HttpFetchTest, ManyThreadsFetchAtOnce) {
  HttpRules rules = rules_for(server_);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        if (get(rules, server_.url("/echo")).kind == Kind::ok) ++ok;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 40);
}

}  // namespace
}  // namespace corral::broker
