// A client of corrald's HTTP API for the `corral` CLI: one request at a time to a server URL,
// with a bearer token, answers as status + body; plus the small helpers the CLI prints with.
//
// The transport is libcurl (easy interface, synchronous), not Boost.Beast: it resolves names and
// connects over IPv4 or IPv6, honours http_proxy/no_proxy as users of a CLI expect (never for
// localhost), names the failure precisely (refused, unresolvable, timed out) for the "cannot
// reach the server" message, and speaks https:// too when corrald sits behind a TLS-terminating
// proxy — all of which Beast would leave to us. Redirects are not followed; only http and https
// are allowed.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace corral::client {

// The server URL is not an http:// or https:// URL with a host.
class BadServerUrl : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// No HTTP answer came back: the connection, name resolution or transfer failed.
class Unreachable : public std::runtime_error {
 public:
  Unreachable(std::string url, std::string reason, std::string hint)
      : std::runtime_error(reason), url(std::move(url)), hint(std::move(hint)) {}
  std::string url;   // the full URL that was requested
  std::string hint;  // what to check
};

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased

  bool ok() const { return status >= 200 && status < 300; }
  std::optional<std::string> header(std::string_view name) const;
  // The body as JSON, or a discarded value if it is not JSON.
  nlohmann::json json() const;
};

// "http://127.0.0.1:8080" with any trailing slashes removed; throws BadServerUrl.
std::string normalize_server_url(std::string_view url);

// Percent-encodes everything but the unreserved characters of RFC 3986, for one path segment
// or one query value (so a name with a slash stays one segment).
std::string escape(std::string_view text);

// "?a=1&b=x%20y" from the pairs whose value is set; "" when none is.
std::string query_string(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& pairs);

class Client {
 public:
  // `server` is checked here (BadServerUrl); an empty `token` sends no Authorization header.
  Client(std::string_view server, std::string token);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // `path` starts with "/" and may carry a query; a non-null `body` is sent as
  // application/json; `headers` are "Name: value" lines sent besides corral's own (such as
  // Idempotency-Key). Any HTTP status is returned; throws Unreachable when there is none.
  HttpResponse request(std::string_view method, const std::string& path,
                       const nlohmann::json* body = nullptr,
                       const std::vector<std::string>& headers = {});

  HttpResponse get(const std::string& path) { return request("GET", path); }
  HttpResponse post(const std::string& path, const nlohmann::json& body) {
    return request("POST", path, &body);
  }
  HttpResponse put(const std::string& path, const nlohmann::json& body) {
    return request("PUT", path, &body);
  }
  HttpResponse del(const std::string& path) { return request("DELETE", path); }

  const std::string& server() const { return server_; }

 private:
  struct Handle;
  std::string server_;
  std::string token_;
  std::unique_ptr<Handle> handle_;
};

// The parts of an RFC 9457 problem a person needs. For a body that is not a problem, the title
// is the HTTP status and the detail the start of the body.
struct Problem {
  std::string title;
  std::string detail;
  std::string hint;
};
Problem problem_of(const HttpResponse& response);

// Text that is safe to show on a terminal: control characters (escape sequences, newlines in a
// tenant-supplied description) become spaces, and invalid UTF-8 becomes U+FFFD.
std::string printable(std::string_view text);

// Left-aligned columns separated by two spaces, a header row first; cells are made printable
// and cells of columns other than the last are cut to `max_width` characters with "…".
std::string format_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows, size_t max_width = 48);

}  // namespace corral::client
