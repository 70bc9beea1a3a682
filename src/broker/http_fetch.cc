#include "broker/http_fetch.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "broker/address_rules.h"
#include "net/origin_pattern.h"

namespace corral::broker {

namespace {

using Clock = std::chrono::steady_clock;

// ---- text helpers ----

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// RFC 9110 token characters, the only ones allowed in a header name.
bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

int default_port(std::string_view scheme) { return scheme == "https" ? 443 : 80; }

// Names compare without case or one trailing dot: "Example.COM." is example.com.
std::string normalise_name(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return lower(host);
}

// ---- libcurl plumbing ----

void initialise_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error(
          "libcurl could not be initialised (curl_global_init failed); the HTTP broker cannot "
          "run. Check that the TLS library libcurl uses is installed correctly.");
    }
  });
}

struct UrlDeleter {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};
using UrlHandle = std::unique_ptr<CURLU, UrlDeleter>;

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
struct ListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

std::optional<std::string> url_part(CURLU* url, CURLUPart part, unsigned flags = 0) {
  char* text = nullptr;
  if (curl_url_get(url, part, &text, flags) != CURLUE_OK || text == nullptr) return std::nullopt;
  std::string out(text);
  curl_free(text);
  return out;
}

std::string url_text(CURLU* url) { return url_part(url, CURLUPART_URL).value_or("(unprintable)"); }

// Parses text as an absolute URL, or, with base, as a reference relative to base (a Location).
// Schemes curl does not know are accepted here so that the allowlist check can name them.
UrlHandle parse_url(std::string_view text, CURLU* base, std::string* error) {
  if (text.find('\0') != std::string_view::npos) {
    *error = "it contains a NUL byte";
    return nullptr;
  }
  UrlHandle url(base ? curl_url_dup(base) : curl_url());
  if (!url) throw std::bad_alloc();
  std::string copy(text);
  CURLUcode code = curl_url_set(url.get(), CURLUPART_URL, copy.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (code != CURLUE_OK) {
    *error = curl_url_strerror(code);
    return nullptr;
  }
  curl_url_set(url.get(), CURLUPART_FRAGMENT, nullptr, 0);  // never sent; keep final_url honest
  return url;
}

// ---- allow patterns (net::OriginPattern, the parser the policy uses) ----

// Where a URL points, as the allowlist compares it.
struct Destination {
  std::string scheme;
  std::string host;  // normalised name, or the IP literal as curl prints it
  std::optional<IpAddress> address;
  int port = 0;
};

Destination destination_of(CURLU* url) {
  Destination destination;
  destination.scheme = lower(url_part(url, CURLUPART_SCHEME).value_or(""));
  std::string host = url_part(url, CURLUPART_HOST).value_or("");
  destination.address = IpAddress::parse(host);
  destination.host = destination.address ? host : normalise_name(host);
  destination.port = net::parse_port(url_part(url, CURLUPART_PORT, CURLU_DEFAULT_PORT).value_or(""))
                         .value_or(default_port(destination.scheme));
  return destination;
}

bool admits(const net::OriginPattern& pattern, const Destination& destination) {
  return pattern.matches(destination.scheme, destination.host, destination.port);
}

// Keeps deadline arithmetic far from overflow; no fetch needs longer.
constexpr int64_t kMaxTimeoutMs = 24 * 60 * 60 * 1000;

struct CompiledRules {
  std::vector<net::OriginPattern> allow;
  std::vector<IpRange> allow_private;
  std::vector<std::string> errors;
};

CompiledRules compile(const HttpRules& rules) {
  CompiledRules compiled;
  for (size_t i = 0; i < rules.allow.size(); ++i) {
    std::string error;
    if (auto pattern = net::OriginPattern::parse(rules.allow[i], &error)) {
      compiled.allow.push_back(std::move(*pattern));
    } else {
      compiled.errors.push_back("allow[" + std::to_string(i) + "] " + error);
    }
  }
  for (size_t i = 0; i < rules.allow_private.size(); ++i) {
    std::string error;
    if (auto range = IpRange::parse(rules.allow_private[i], &error)) {
      compiled.allow_private.push_back(*range);
    } else {
      compiled.errors.push_back("allow_private[" + std::to_string(i) + "]: " + error);
    }
  }
  auto positive = [&](int64_t value, std::string_view name) {
    if (value <= 0) {
      compiled.errors.push_back(std::string(name) + " is " + std::to_string(value) +
                                "; it must be greater than 0");
    }
  };
  positive(rules.max_response_bytes, "max_response_bytes");
  positive(rules.timeout_ms, "timeout_ms");
  if (rules.timeout_ms > kMaxTimeoutMs) {
    compiled.errors.push_back("timeout_ms is " + std::to_string(rules.timeout_ms) +
                              "; it may be at most " + std::to_string(kMaxTimeoutMs) +
                              " (one day)");
  }
  positive(rules.max_request_bytes, "max_request_bytes");
  if (rules.max_redirects < 0) {
    compiled.errors.push_back("max_redirects is " + std::to_string(rules.max_redirects) +
                              "; it must be 0 or more");
  }
  return compiled;
}

// ---- one fetch ----

constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};

// Request headers never sent, and why each group is left out: hop-by-hop headers concern one
// connection, which is the broker's; Host, Expect and Content-Length are curl's to write (a forged
// Host could reach a virtual host the allowlist never named); credentials are not the script's to
// send (see the contract in the header).
bool stripped_from_request(std::string_view name) {
  static constexpr std::string_view kStripped[] = {
      "connection",        "keep-alive",    "te",    "trailer",
      "transfer-encoding", "upgrade",       "host",  "expect",
      "content-length",    "authorization", "cookie"};
  std::string lowered = lower(name);
  if (lowered.starts_with("proxy-")) return true;
  return std::find(std::begin(kStripped), std::end(kStripped), lowered) != std::end(kStripped);
}

// Headers that describe a request body, dropped with it when a redirect turns a POST into a GET.
bool describes_body(std::string_view name) {
  return iequals(name, "content-type") || iequals(name, "content-encoding") ||
         iequals(name, "content-language") || iequals(name, "content-location");
}

bool stripped_from_response(std::string_view name, const std::vector<std::string>& connection) {
  static constexpr std::string_view kStripped[] = {
      "set-cookie", "set-cookie2", "connection",       "keep-alive",       "te",
      "trailer",    "upgrade",     "proxy-connection", "transfer-encoding"};
  std::string lowered = lower(name);
  if (lowered.starts_with("proxy-")) return true;
  if (std::find(std::begin(kStripped), std::end(kStripped), lowered) != std::end(kStripped)) {
    return true;
  }
  // Connection: lists further headers meant only for this hop.
  return std::find(connection.begin(), connection.end(), lowered) != connection.end();
}

HttpHeaders clean_response_headers(const HttpHeaders& raw) {
  std::vector<std::string> connection_listed;
  for (const auto& [name, value] : raw) {
    if (!iequals(name, "connection")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view item = trim(rest.substr(0, comma));
      if (!item.empty()) connection_listed.push_back(lower(item));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  HttpHeaders clean;
  for (const auto& header : raw) {
    if (!stripped_from_response(header.first, connection_listed)) clean.push_back(header);
  }
  return clean;
}

// What one transfer's callbacks see and record.
// The private addresses a destination may reach, decided by the allow patterns that admit it: an
// allow_private range opens a private address only through an origin named exactly. A pattern
// with an address for host reaches that address alone (when allow_private holds it); one with an
// exact name and an exact port reaches allow_private's ranges (the operator named that origin and
// said where it lives); a wildcard host or port never reaches a private address, since names under
// it are chosen by whoever controls their DNS, and any port would open every loopback service.
void add_private_reachable(const net::OriginPattern& pattern, const std::vector<IpRange>& ranges,
                           std::vector<IpRange>& reachable) {
  if (pattern.any_subdomain || !pattern.port) return;
  if (pattern.address) {
    if (!address_allowed(*pattern.address, ranges)) return;
    std::string ignored;
    if (auto only = IpRange::parse(pattern.address->to_string(), &ignored))
      reachable.push_back(*only);
    if (auto carried = pattern.address->embedded_v4()) {
      if (auto only = IpRange::parse(carried->to_string(), &ignored)) reachable.push_back(*only);
    }
    return;
  }
  reachable.insert(reachable.end(), ranges.begin(), ranges.end());
}

struct Hop {
  // What on_open_socket lets this hop connect to besides public addresses.
  std::vector<IpRange> private_reachable;
  int64_t body_limit = 0;
  std::string body;
  HttpHeaders headers;  // of the latest response; an interim 1xx response's are discarded
  int64_t header_bytes = 0;
  bool body_too_large = false;
  bool headers_too_large = false;
  std::vector<std::string> refused;  // "127.0.0.1, a loopback address (127.0.0.0/8)"
  std::string first_refused_address;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* hop = static_cast<Hop*>(user);
  size_t bytes = size * count;
  if (static_cast<int64_t>(hop->body.size() + bytes) > hop->body_limit) {
    hop->body_too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  hop->body.append(data, bytes);
  return bytes;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* hop = static_cast<Hop*>(user);
  size_t bytes = size * count;
  hop->header_bytes += static_cast<int64_t>(bytes);
  if (hop->header_bytes > kMaxResponseHeaderBytes) {
    hop->headers_too_large = true;
    return 0;
  }
  std::string_view line(data, bytes);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.starts_with("HTTP/")) {
    hop->headers.clear();  // a new response (after 1xx) starts
  } else if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
    if (!hop->headers.empty()) hop->headers.back().second += " " + std::string(trim(line));
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    hop->headers.emplace_back(std::string(trim(line.substr(0, colon))),
                              std::string(trim(line.substr(colon + 1))));
  }
  return bytes;
}

// Sees the very address curl is about to connect to, after every lookup, so a name that resolves
// differently at connect time than at any earlier check cannot slip past.
curl_socket_t on_open_socket(void* user, curlsocktype, curl_sockaddr* target) {
  auto* hop = static_cast<Hop*>(user);
  std::optional<IpAddress> address = IpAddress::from_sockaddr(&target->addr, target->addrlen);
  if (!address) {
    hop->refused.push_back("an address of unsupported family " + std::to_string(target->family));
    return CURL_SOCKET_BAD;
  }
  if (!address_allowed(*address, hop->private_reachable)) {
    std::optional<SpecialRange> range = classify(*address);
    hop->refused.push_back(address->to_string() + " (" + std::string(range->kind) + ", " +
                           std::string(range->cidr) + ")");
    if (hop->first_refused_address.empty()) {
      // The IPv4 address an IPv6 form carries is the entry that covers both forms.
      hop->first_refused_address = address->embedded_v4().value_or(*address).to_string();
    }
    return CURL_SOCKET_BAD;
  }
  // CLOEXEC: the supervisor starts worker processes, which must never inherit this socket.
  return socket(target->family, target->socktype | SOCK_CLOEXEC, target->protocol);
}

class Fetch {
 public:
  Fetch(const HttpRules& rules, const CompiledRules& compiled, const FetchRequest& request)
      : rules_(rules), compiled_(compiled), request_(request) {}

  FetchResult run();

 private:
  FetchResult& deny(std::string rule, std::string message) {
    result_.kind = FetchResult::Kind::denied;
    result_.rule = std::move(rule);
    result_.message = std::move(message);
    return result_;
  }
  FetchResult& end(FetchResult::Kind kind, std::string message) {
    result_.kind = kind;
    result_.message = std::move(message);
    return result_;
  }

  bool check_request();
  // Checks url against the allowlist, for the first request or (with from) a redirect's target.
  bool check_destination(CURLU* url, const std::string& from);
  // One request/response exchange with the current URL. Returns false when the fetch has ended.
  bool transfer(Hop& hop);

  const HttpRules& rules_;
  const CompiledRules& compiled_;
  const FetchRequest& request_;
  FetchResult result_;
  // Set by check_destination for the destination it admitted (add_private_reachable).
  std::vector<IpRange> private_reachable_;

  std::string method_;
  HttpHeaders headers_;  // to send
  std::string body_;
  UrlHandle url_;
  int64_t timeout_ms_ = 0;
  Clock::time_point deadline_;
};

bool Fetch::check_request() {
  method_ = request_.method;
  for (char& c : method_) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (std::find(std::begin(kMethods), std::end(kMethods), method_) == std::end(kMethods)) {
    deny("methods", "method " + quoted(request_.method) +
                        " is not allowed; use GET, HEAD, POST, PUT, PATCH or DELETE");
    return false;
  }
  if (request_.timeout_ms < 0) {
    end(FetchResult::Kind::invalid, "timeout_ms is " + std::to_string(request_.timeout_ms) +
                                        "; give a positive number of milliseconds, or leave it "
                                        "out to use the policy's limit of " +
                                        std::to_string(rules_.timeout_ms) + " ms");
    return false;
  }
  timeout_ms_ = request_.timeout_ms > 0 ? std::min(request_.timeout_ms, rules_.timeout_ms)
                                        : rules_.timeout_ms;

  int64_t request_bytes = static_cast<int64_t>(request_.url.size() + request_.body.size());
  for (size_t i = 0; i < request_.headers.size(); ++i) {
    const auto& [name, value] = request_.headers[i];
    request_bytes += static_cast<int64_t>(name.size() + value.size() + 4);
    std::string where = "request header " + std::to_string(i + 1);
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char)) {
      std::string shown;
      for (char c : name) {
        shown += std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "?";
      }
      end(FetchResult::Kind::invalid,
          where + " has an invalid name " + quoted(shown) +
              "; a header name is letters, digits and !#$%&'*+-.^_`|~ only (no spaces, colons "
              "or line breaks)");
      return false;
    }
    for (char c : value) {
      auto byte = static_cast<unsigned char>(c);
      if ((byte < 0x20 && c != '\t') || byte == 0x7f) {
        end(FetchResult::Kind::invalid,
            where + " (" + name + ") has a value containing " +
                (c == '\r'   ? std::string("a carriage return (CR)")
                 : c == '\n' ? std::string("a line feed (LF)")
                 : c == '\0' ? std::string("a NUL byte")
                             : "control character " + std::to_string(byte)) +
                ", which could inject headers; remove line breaks and control characters from "
                "header values");
        return false;
      }
    }
    bool credential_kept =
        !request_.confined_to.empty() &&
        (iequals(name, "authorization") || iequals(name, "cookie")) &&
        std::find(request_.credential_headers.begin(), request_.credential_headers.end(), i) !=
            request_.credential_headers.end();
    if (stripped_from_request(name) && !credential_kept) {
      result_.stripped_headers.push_back(name);
    } else {
      headers_.emplace_back(name, std::string(trim(value)));
    }
  }

  std::string error;
  url_ = parse_url(request_.url, nullptr, &error);
  if (!url_) {
    end(FetchResult::Kind::invalid, "url " + quoted(request_.url) + " is not a valid URL (" +
                                        error + "); give an absolute http:// or https:// URL");
    return false;
  }
  result_.final_url = url_text(url_.get());
  if (!check_destination(url_.get(), "")) return false;

  if (!request_.body.empty() && (method_ == "GET" || method_ == "HEAD")) {
    end(FetchResult::Kind::invalid, method_ + " requests carry no body, but this one has " +
                                        std::to_string(request_.body.size()) +
                                        " bytes; use POST or PUT to send a body");
    return false;
  }
  if (request_bytes > rules_.max_request_bytes) {
    end(FetchResult::Kind::too_large,
        "the request to " + result_.final_url + " is " + std::to_string(request_bytes) +
            " bytes (URL, headers and body), more than max_request_bytes (" +
            std::to_string(rules_.max_request_bytes) + "); send less");
    return false;
  }
  body_ = request_.body;
  return true;
}

bool Fetch::check_destination(CURLU* url, const std::string& from) {
  if (url_part(url, CURLUPART_USER) || url_part(url, CURLUPART_PASSWORD)) {
    // Never repeat the password: messages reach logs and the audit trail.
    curl_url_set(url, CURLUPART_USER, nullptr, 0);
    curl_url_set(url, CURLUPART_PASSWORD, nullptr, 0);
    curl_url_set(url, CURLUPART_OPTIONS, nullptr, 0);
    result_.final_url = url_text(url);
    std::string where =
        from.empty() ? result_.final_url : "the redirect from " + from + " to " + result_.final_url;
    deny("url_credentials", where +
                                " carried credentials (user:password@) in the URL, which the "
                                "broker never sends; remove them from the URL");
    return false;
  }
  std::string shown = url_text(url);
  std::string context = from.empty() ? "" : "the redirect from " + from + " to ";
  std::string subject = context.empty() ? shown : context + shown;
  Destination destination = destination_of(url);
  if (destination.scheme != "http" && destination.scheme != "https") {
    deny("schemes", subject + " uses scheme " + quoted(destination.scheme) +
                        "; fetches may use only http and https");
    return false;
  }
  if (url_part(url, CURLUPART_ZONEID)) {
    end(FetchResult::Kind::invalid,
        subject + " names an IPv6 zone (%...), which fetches may not use; remove it");
    return false;
  }
  const std::string& host = destination.host;
  // The allow list's own reading of a name (net::OriginPattern): a host no pattern could name is
  // refused as such, rather than denied with a suggested pattern that cannot be written.
  if (!destination.address) {
    if (auto problem = net::host_name_problem(host)) {
      end(FetchResult::Kind::invalid,
          subject + " has host " + quoted(host) + ", which is not a host name fetches can reach: " +
              *problem + " (write non-ASCII names in their xn-- punycode form)");
      return false;
    }
  }
  bool admitted = false;
  private_reachable_.clear();
  for (const net::OriginPattern& pattern : compiled_.allow) {
    if (!admits(pattern, destination)) continue;
    admitted = true;
    add_private_reachable(pattern, compiled_.allow_private, private_reachable_);
  }
  std::string origin = destination.scheme + "://" + host + ":" + std::to_string(destination.port);
  if (admitted) {
    for (const HopConfinement& confinement : request_.confined_to) {
      bool bound = std::any_of(
          confinement.origins.begin(), confinement.origins.end(),
          [&](const net::OriginPattern& pattern) { return admits(pattern, destination); });
      if (bound) continue;
      std::string patterns;
      for (const net::OriginPattern& pattern : confinement.origins) {
        patterns += (patterns.empty() ? "" : ", ") + pattern.text;
      }
      deny(confinement.rule,
           (context.empty() ? "" : context + shown + " was refused, and nothing was sent to it: ") +
               "the request carries secret " + quoted(confinement.secret) + ", which is bound to " +
               patterns + ", not to " + origin +
               "; send it only to those origins, or have the operator bind it to this one");
      return false;
    }
    return true;
  }
  bool default_port_used = destination.port == default_port(destination.scheme);
  std::string suggestion = destination.scheme + "://" + host +
                           (default_port_used ? "" : ":" + std::to_string(destination.port));
  deny("allow", (context.empty() ? "" : context + shown + " was refused: ") + origin +
                    " is not in the http allow list; the operator can allow it with the pattern " +
                    quoted(suggestion));
  return false;
}

bool Fetch::transfer(Hop& hop) {
  int64_t remaining_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
  if (remaining_ms <= 0) {
    end(FetchResult::Kind::timed_out, "the fetch of " + result_.final_url +
                                          " did not finish within its time limit of " +
                                          std::to_string(timeout_ms_) + " ms");
    return false;
  }
  std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  if (!easy) throw std::bad_alloc();
  CURL* e = easy.get();
  char error_text[CURL_ERROR_SIZE] = {};

  bool has_content_type = false;
  std::unique_ptr<curl_slist, ListDeleter> list;
  auto add = [&](const std::string& line) {
    curl_slist* grown = curl_slist_append(list.get(), line.c_str());
    if (!grown) throw std::bad_alloc();
    list.release();
    list.reset(grown);
  };
  for (const auto& [name, value] : headers_) {
    has_content_type = has_content_type || iequals(name, "content-type");
    // "Name;" is curl's spelling of a header with an empty value ("Name:" would remove it).
    add(value.empty() ? name + ";" : name + ": " + value);
  }
  add("Expect:");                               // no 100-continue round trip
  if (!has_content_type) add("Content-Type:");  // curl would claim a form body otherwise

  curl_easy_setopt(e, CURLOPT_CURLU, url_.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error_text);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(e, CURLOPT_NETRC, static_cast<long>(CURL_NETRC_IGNORED));
  curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "corral-broker/1");
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(remaining_ms));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &hop);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &hop);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &hop);

  if (method_ == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    // Refuses early when Content-Length already says the body is too big. Not for HEAD, whose
    // Content-Length describes a body that never comes.
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(hop.body_limit));
    if (method_ == "GET") {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
      if (method_ != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method_.c_str());
      if (method_ != "DELETE" || !body_.empty()) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body_.data());
      }
    }
  }

  CURLcode code = curl_easy_perform(e);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  result_.status = static_cast<int>(status);
  if (code == CURLE_OK) return true;

  const std::string& url = result_.final_url;
  if (hop.body_too_large || code == CURLE_FILESIZE_EXCEEDED) {
    end(FetchResult::Kind::too_large,
        "the response from " + url + " is larger than max_response_bytes (" +
            std::to_string(hop.body_limit) +
            " bytes); ask for less (a narrower query, paging, a Range header) or have the "
            "operator raise the limit");
  } else if (hop.headers_too_large) {
    end(FetchResult::Kind::too_large, "the response headers from " + url + " exceed " +
                                          std::to_string(kMaxResponseHeaderBytes) +
                                          " bytes; the server is misbehaving");
  } else if (code == CURLE_OPERATION_TIMEDOUT) {
    end(FetchResult::Kind::timed_out,
        "the fetch of " + url + " did not finish within its time limit of " +
            std::to_string(timeout_ms_) +
            " ms; the server may be slow, or the limit too tight for it");
  } else if (!hop.refused.empty() && code == CURLE_COULDNT_CONNECT) {
    std::string addresses;
    for (const std::string& refused : hop.refused) {
      addresses += (addresses.empty() ? "" : " and ") + refused;
    }
    deny("allow_private",
         url + (result_.redirects > 0 ? " (reached by a redirect)" : "") + " points to " +
             addresses +
             ", which fetches may not reach through this origin; the operator can "
             "allow it by adding " +
             (hop.first_refused_address.empty() ? "the address" : hop.first_refused_address) +
             " to allow_private and naming the origin exactly in allow (a private address is "
             "never reached through a wildcard host or port)");
  } else {
    std::string detail = error_text[0] ? error_text : curl_easy_strerror(code);
    end(FetchResult::Kind::failed, "could not fetch " + url + ": " + detail +
                                       "; check that the URL is right and the server is up");
  }
  return false;
}

FetchResult Fetch::run() {
  if (!compiled_.errors.empty()) {
    std::string problems;
    for (const std::string& error : compiled_.errors) {
      problems += (problems.empty() ? "" : "; ") + error;
    }
    return end(FetchResult::Kind::failed, "the http rules are invalid, so nothing was fetched: " +
                                              problems + " (the operator must correct the policy)");
  }
  if (!check_request()) return result_;
  deadline_ = Clock::now() + std::chrono::milliseconds(timeout_ms_);

  for (;;) {
    Hop hop;
    hop.private_reachable = private_reachable_;
    hop.body_limit = rules_.max_response_bytes;
    if (!transfer(hop)) return result_;

    int status = result_.status;
    bool redirect =
        status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
    const std::string* location = nullptr;
    for (const auto& [name, value] : hop.headers) {
      if (iequals(name, "location")) location = &value;
    }
    if (!redirect || location == nullptr) {
      result_.kind = FetchResult::Kind::ok;
      result_.headers = clean_response_headers(hop.headers);
      result_.body = std::move(hop.body);
      return result_;
    }

    std::string from = result_.final_url;
    std::string error;
    UrlHandle next = parse_url(*location, url_.get(), &error);
    if (!next) {
      return end(FetchResult::Kind::failed, from + " redirected to " + quoted(*location) +
                                                ", which is not a valid URL (" + error + ")");
    }
    std::string next_text = url_text(next.get());
    if (result_.redirects >= rules_.max_redirects) {
      return end(FetchResult::Kind::failed,
                 "stopped after " + std::to_string(result_.redirects) +
                     " redirects (max_redirects); " + from + " redirected again, to " + next_text +
                     ". Fetch the final URL directly, or check for a redirect loop");
    }
    result_.final_url = next_text;
    if (!check_destination(next.get(), from)) return result_;
    url_ = std::move(next);
    ++result_.redirects;

    bool becomes_get = (status == 303 && method_ != "HEAD") ||
                       ((status == 301 || status == 302) && method_ == "POST");
    if (becomes_get) {
      method_ = "GET";
      body_.clear();
      std::erase_if(headers_, [](const auto& header) { return describes_body(header.first); });
    }
  }
}

}  // namespace

std::string_view to_string(FetchResult::Kind kind) {
  switch (kind) {
    case FetchResult::Kind::ok:
      return "ok";
    case FetchResult::Kind::invalid:
      return "invalid";
    case FetchResult::Kind::denied:
      return "denied";
    case FetchResult::Kind::too_large:
      return "too_large";
    case FetchResult::Kind::timed_out:
      return "timed_out";
    case FetchResult::Kind::failed:
      return "failed";
  }
  return "unknown";
}

std::vector<std::string> validate_rules(const HttpRules& rules) { return compile(rules).errors; }

std::optional<std::string> matching_allow_pattern(const HttpRules& rules, std::string_view url) {
  CompiledRules compiled = compile(rules);
  std::string error;
  UrlHandle parsed = parse_url(url, nullptr, &error);
  if (!parsed || url_part(parsed.get(), CURLUPART_USER)) return std::nullopt;
  Destination destination = destination_of(parsed.get());
  for (const net::OriginPattern& pattern : compiled.allow) {
    if (admits(pattern, destination)) return pattern.text;
  }
  return std::nullopt;
}

HttpFetcher::HttpFetcher() { initialise_curl_once(); }

FetchResult HttpFetcher::fetch(const HttpRules& rules, const FetchRequest& request) const {
  CompiledRules compiled = compile(rules);
  return Fetch(rules, compiled, request).run();
}

}  // namespace corral::broker
