// The engine behind ctx.http.fetch: the supervisor performs a script's HTTP request with libcurl,
// under rules the policy supplies, and hands back what came back. It is the only way a script's
// bytes reach another machine, so everything here fails closed.
//
// What a fetch may do:
//   - Scheme http or https, and a scheme, host and port that one of the rules' allow patterns
//     admits. No credentials in the URL (user:password@). Methods GET, HEAD, POST, PUT, PATCH,
//     DELETE (any letter case; sent upper case); GET and HEAD carry no body.
//   - Each address curl is about to connect to is checked at the socket (not at name lookup, so a
//     name that re-resolves to an internal address between checks is still caught): loopback,
//     private, link-local, unique-local, CGNAT, multicast, unspecified and the other
//     special-purpose ranges (see address_rules.h), and IPv6 forms that carry such an IPv4
//     address, are refused unless allow_private holds the address. `localhost` is allowed by an
//     allow pattern naming it and still refused unless allow_private holds 127.0.0.1 or ::1.
//   - Redirects (301, 302, 303, 307, 308 with a Location) are followed by the broker, not curl,
//     at most max_redirects of them; each hop is checked as above before anything is sent to it.
//     303, and 301/302 after a POST, continue as GET without the body (HEAD stays HEAD); 307/308
//     resend the method and body. Exceeding max_redirects fails the fetch.
//   - Request headers: a name must be an RFC 9110 token and a value may not contain CR, LF, NUL
//     or other control characters except tab; otherwise the fetch is refused as invalid (header
//     injection). Hop-by-hop headers (Connection, Keep-Alive, Proxy-*, TE, Trailer,
//     Transfer-Encoding, Upgrade), Host, Expect, Content-Length (curl computes these) and
//     credential headers (Authorization, Cookie, Proxy-Authorization) are not sent. They are
//     stripped rather than refused, as the issue asks, and named in FetchResult::stripped_headers
//     so the caller can tell the script why its Authorization header had no effect. The one
//     exception is a credential header the broker filled from a secret (credential_headers),
//     which is sent only with confined_to set, so it too reaches no origin its secret is not
//     bound to, on any hop.
//   - Response headers: Set-Cookie, Set-Cookie2 and hop-by-hop headers are removed. The body is
//     returned as received: nothing is decompressed (Accept-Encoding is not sent unless the script
//     sends it), so max_response_bytes bounds exactly what is held in memory.
//   - Limits: the response body of every hop is at most max_response_bytes (and its headers at
//     most kMaxResponseHeaderBytes) or the fetch ends as too_large; the whole fetch, across all
//     hops, ends as timed_out after timeout_ms (a request's own timeout_ms can only shorten it);
//     the request (URL, header names and values, body) is at most max_request_bytes.
//   - Environment: no proxy (whatever *_proxy says), no .netrc, no cookie engine, no signals,
//     protocols limited to http and https, TLS peers verified against the system's CA store.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/origin_pattern.h"

namespace corral::broker {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRules {
  // Patterns "scheme://host[:port]". scheme is http or https. host is a name (compared without
  // regard to case or a trailing dot), an IP literal (IPv6 in brackets, compared as an address),
  // "*.name" (any name ending in ".name", at any depth; never "name" itself nor a look-alike such
  // as "name.evil.org"), or "*" (any host; the address rules still apply). port is a number or
  // "*"; left out, it is the scheme's default (80, 443). Nothing may follow the port.
  std::vector<std::string> allow{};
  // IP addresses or CIDR ranges ("127.0.0.1", "10.1.0.0/16", "fd00::/8") a fetch may connect to
  // although they are special-purpose (loopback, private, ...). An IPv4 entry also covers the
  // IPv6 forms carrying that address (::ffff:127.0.0.1).
  std::vector<std::string> allow_private{};
  int64_t max_response_bytes = 1 << 20;
  int64_t timeout_ms = 10'000;
  int64_t max_redirects = 5;
  int64_t max_request_bytes = 1 << 20;
};

// Everything wrong with rules, one sentence per problem naming the field and index
// ("allow[1] \"ftp://x\": the scheme must be http or https"); empty when they are valid. A fetch
// under invalid rules fails without sending anything, so policy validation should call this.
std::vector<std::string> validate_rules(const HttpRules& rules);

// The allow pattern admitting url's scheme, host and port, or nullopt when none does or url is not
// an absolute http(s) URL. Address rules are not consulted: no name is looked up. For explaining a
// decision and for tests; fetch() applies the same check to every hop.
std::optional<std::string> matching_allow_pattern(const HttpRules& rules, std::string_view url);

// Origins every hop of a fetch must go to, besides the allow list: the broker sets one for each
// secret whose value it put into the request (broker/secret_reference.h).
struct HopConfinement {
  std::string secret;                       // named in the denial
  std::vector<net::OriginPattern> origins;  // a hop must match one of them
  std::string rule;                         // FetchResult::rule when a hop matches none
};

struct FetchRequest {
  std::string url{};
  std::string method = "GET";
  HttpHeaders headers{};
  std::string body{};
  int64_t timeout_ms = 0;  // 0: the rules' timeout; otherwise the smaller of the two
  // A hop (the first request or a redirect's target) whose origin misses any of these is denied
  // before anything is sent to it, so what the request carries reaches only those origins.
  std::vector<HopConfinement> confined_to{};
  // Indices into headers of Authorization or Cookie headers to send although the contract above
  // strips them: the broker's, carrying a secret's value, and only with confined_to set.
  std::vector<size_t> credential_headers{};
};

struct FetchResult {
  enum class Kind {
    ok,         // a response arrived (any status, 4xx and 5xx included)
    invalid,    // the request is malformed: bad URL, method, header or timeout; nothing was sent
    denied,     // a rule refused the request or a hop; `rule` names it
    too_large,  // the response, or the request itself, exceeded its size limit
    timed_out,  // the fetch took longer than its timeout
    failed,     // the remote could not be reached or misbehaved, or too many redirects
  };
  Kind kind = Kind::failed;
  int status = 0;         // of the last response; 0 when none arrived
  HttpHeaders headers;    // of the last response, in order, less the stripped ones; set when ok
  std::string body;       // of the last response; empty unless kind is ok
  std::string final_url;  // the URL of the last hop attempted, without any user:password@
  int redirects = 0;      // redirects followed
  // For denied: the rule that refused, as the HttpRules field ("allow", "allow_private") or the
  // fixed rule ("schemes", "methods", "url_credentials").
  std::string rule;
  // For anything but ok: a sentence saying what happened, to which URL or address, and what to do.
  std::string message;
  // Request header names the broker did not send (see the contract above), in request order.
  std::vector<std::string> stripped_headers;
};

std::string_view to_string(FetchResult::Kind kind);

// Response headers beyond this many bytes end a fetch as too_large.
inline constexpr int64_t kMaxResponseHeaderBytes = 64 * 1024;

// Stateless apart from libcurl's process-wide initialisation, done once by the first
// constructor (which throws std::runtime_error if libcurl cannot start: nothing could be fetched);
// fetch() may be called from many threads at once. fetch() blocks for up to the
// fetch's timeout: call it off any I/O thread.
class HttpFetcher {
 public:
  HttpFetcher();
  FetchResult fetch(const HttpRules& rules, const FetchRequest& request) const;
};

}  // namespace corral::broker
