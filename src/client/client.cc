#include "client/client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

namespace corral::client {

namespace {

constexpr long kConnectTimeoutS = 10;

std::string lower(std::string_view text) {
  std::string result(text);
  for (char& c : result) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

std::string trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return std::string(text);
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  std::string_view line(data, size * count);
  // A new status line (after a 100 Continue, say) starts the headers again.
  if (line.starts_with("HTTP/")) response->headers.clear();
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    response->headers.emplace_back(lower(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }
  return size * count;
}

// Decodes one UTF-8 sequence at `at`; returns the code point and advances, or -1 (and one byte).
long next_code_point(std::string_view text, size_t& at) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char first = byte(at);
  if (first < 0x80) return text[at++];
  int length = first >= 0xF0 && first <= 0xF4 ? 4 : first >= 0xE0 ? 3 : first >= 0xC2 ? 2 : 0;
  if (first > 0xF4) length = 0;
  if (length == 0 || at + length > text.size()) {
    ++at;
    return -1;
  }
  long code = first & (0xFF >> (length + 1));
  for (int i = 1; i < length; ++i) {
    if ((byte(at + i) & 0xC0) != 0x80) {
      ++at;
      return -1;
    }
    code = (code << 6) | (byte(at + i) & 0x3F);
  }
  static constexpr long kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kSmallest[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
    ++at;
    return -1;
  }
  at += length;
  return code;
}

size_t display_width(std::string_view printable_text) {
  size_t width = 0;
  for (char c : printable_text) width += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return width;
}

// The first `width` characters (code points) of printable text.
std::string cut(const std::string& text, size_t width) {
  if (width == 0) return "";
  if (display_width(text) <= width) return text;
  size_t kept = 0, at = 0;
  while (at < text.size()) {
    size_t start = at;
    next_code_point(text, at);
    if (++kept > width - 1) return text.substr(0, start) + "…";
  }
  return text;
}

}  // namespace

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  std::string wanted = lower(name);
  for (const auto& [key, value] : headers)
    if (key == wanted) return value;
  return std::nullopt;
}

nlohmann::json HttpResponse::json() const { return nlohmann::json::parse(body, nullptr, false); }

std::string normalize_server_url(std::string_view url) {
  std::string text = trim(url);
  std::string scheme = lower(text.substr(0, text.find("://")));
  if (text.find("://") == std::string::npos || (scheme != "http" && scheme != "https")) {
    throw BadServerUrl("the server URL \"" + printable(text) +
                       "\" is not an http:// URL (for example http://127.0.0.1:8080)");
  }
  std::string rest = text.substr(scheme.size() + 3);
  if (rest.empty() || rest.front() == '/' || rest.front() == ':') {
    throw BadServerUrl("the server URL \"" + printable(text) + "\" names no host");
  }
  if (rest.find_first_of("?#") != std::string::npos) {
    throw BadServerUrl("the server URL \"" + printable(text) +
                       "\" has a query or fragment; give only scheme, host, port and path prefix");
  }
  for (char c : rest) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      throw BadServerUrl("the server URL \"" + printable(text) +
                         "\" contains a space or control character");
    }
  }
  while (!text.empty() && text.back() == '/') text.pop_back();
  return text;
}

std::string escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string result;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~') {
      result.push_back(c);
    } else {
      result.push_back('%');
      result.push_back(kHex[byte >> 4]);
      result.push_back(kHex[byte & 15]);
    }
  }
  return result;
}

std::string query_string(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& pairs) {
  std::string query;
  for (const auto& [key, value] : pairs) {
    if (!value) continue;
    query += (query.empty() ? "?" : "&") + escape(key) + "=" + escape(*value);
  }
  return query;
}

struct Client::Handle {
  CURL* curl = nullptr;
  ~Handle() {
    if (curl) curl_easy_cleanup(curl);
  }
};

Client::Client(std::string_view server, std::string token)
    : server_(normalize_server_url(server)), token_(std::move(token)), handle_(new Handle) {
  static std::once_flag initialized;
  std::call_once(initialized, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  handle_->curl = curl_easy_init();
  if (!handle_->curl) throw std::runtime_error("cannot initialise libcurl");
}

Client::~Client() = default;

HttpResponse Client::request(std::string_view method, const std::string& path,
                             const nlohmann::json* body, const std::vector<std::string>& extra) {
  CURL* curl = handle_->curl;
  curl_easy_reset(curl);
  std::string url = server_ + path;
  HttpResponse response;
  std::string payload;

  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json, application/problem+json");
  // No "Expect: 100-continue" round trip before larger bodies (a publish).
  headers = curl_slist_append(headers, "Expect:");
  if (!token_.empty())
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token_).c_str());
  for (const auto& line : extra) headers = curl_slist_append(headers, line.c_str());
  if (body) {
    payload = body->dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    headers = curl_slist_append(headers, "Content-Type: application/json");
  } else {
    headers = curl_slist_append(headers, "Content-Type:");  // not curl's form encoding
  }
  std::string method_text(method);

  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  // A proxy from http_proxy is used for other hosts, never for this machine's own corrald.
  std::string no_proxy = "localhost,127.0.0.1,::1";
  for (const char* name : {"no_proxy", "NO_PROXY"}) {
    if (const char* value = std::getenv(name); value && *value) {
      no_proxy = std::string(value) + "," + no_proxy;
      break;
    }
  }
  curl_easy_setopt(curl, CURLOPT_NOPROXY, no_proxy.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutS);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "corral-cli/0.1");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response);
  if (method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else {
    if (method != "POST") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method_text.c_str());
    if (body || method == "POST" || method == "PUT") {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
    }
  }

  CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (code != CURLE_OK) {
    // In corral's words, not libcurl's: what went wrong and what to check.
    std::string reason;
    std::string hint;
    switch (code) {
      case CURLE_COULDNT_RESOLVE_HOST:
        reason = "its host name does not resolve";
        hint = "check the host name in --server or CORRAL_SERVER";
        break;
      case CURLE_COULDNT_RESOLVE_PROXY:
        reason = "the proxy's host name does not resolve";
        hint = "check the proxy named in http_proxy/https_proxy, or list the host in no_proxy";
        break;
      case CURLE_COULDNT_CONNECT:
        reason = "nothing accepted the connection there";
        hint =
            "check that corrald is running and listening on that host and port (corrald "
            "--listen), and that --server or CORRAL_SERVER names it";
        break;
      case CURLE_OPERATION_TIMEDOUT:
        reason = "it did not answer in time";
        hint = "no connection within " + std::to_string(kConnectTimeoutS) +
               " s: check the address, the network and any firewall between here and there";
        break;
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_URL_MALFORMAT:
        reason = "the server URL is not an http:// or https:// URL";
        hint = "use an http:// or https:// server URL, such as http://127.0.0.1:8080";
        break;
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_PEER_FAILED_VERIFICATION:
        reason = "the TLS handshake failed";
        hint =
            "check the server's TLS certificate, or whether it speaks https at all (corrald "
            "itself speaks plain http)";
        break;
      case CURLE_GOT_NOTHING:
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR:
        reason = "the connection closed before an answer came";
        hint =
            "check that --server or CORRAL_SERVER names a corrald, not another service, and "
            "corrald's log for the request";
        break;
      default:
        reason = "the request failed before an answer came (transfer error " +
                 std::to_string(static_cast<int>(code)) + ")";
        hint = "check that --server or CORRAL_SERVER names a running corrald";
    }
    throw Unreachable(url, reason, hint);
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  response.content_type = response.header("content-type").value_or("");
  return response;
}

Problem problem_of(const HttpResponse& response) {
  Problem problem;
  nlohmann::json body = response.json();
  auto text = [&](const char* key) {
    return body.is_object() && body.contains(key) && body[key].is_string()
               ? printable(body[key].get<std::string>())
               : std::string();
  };
  problem.title = text("title");
  problem.detail = text("detail");
  problem.hint = text("hint");
  if (problem.title.empty())
    problem.title = "the server answered HTTP " + std::to_string(response.status);
  if (problem.detail.empty() && !body.is_object()) {
    std::string start = printable(response.body.substr(0, 300));
    problem.detail = start.empty() ? "with an empty body" : "with: " + start;
    if (problem.hint.empty() && response.status >= 300 && response.status < 400) {
      problem.hint = "the server redirects to " + response.header("location").value_or("?") +
                     "; give that URL with --server";
    }
  }
  return problem;
}

std::string printable(std::string_view text) {
  std::string result;
  result.reserve(text.size());
  size_t at = 0;
  while (at < text.size()) {
    size_t start = at;
    long code = next_code_point(text, at);
    if (code < 0) {
      result += "\xEF\xBF\xBD";
    } else if (code < 0x20 || code == 0x7f || (code >= 0x80 && code < 0xA0)) {
      result.push_back(' ');
    } else {
      result.append(text.substr(start, at - start));
    }
  }
  return result;
}

std::string format_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows, size_t max_width) {
  std::vector<std::vector<std::string>> cells;
  cells.push_back(header);
  for (const auto& row : rows) {
    std::vector<std::string> line;
    for (size_t i = 0; i < header.size(); ++i) {
      std::string cell = printable(i < row.size() ? row[i] : "");
      line.push_back(i + 1 < header.size() ? cut(cell, max_width) : cell);
    }
    cells.push_back(std::move(line));
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i)
      widths[i] = std::max(widths[i], display_width(line[i]));
  std::string out;
  for (const auto& line : cells) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      text += line[i];
      if (i + 1 < line.size()) text += std::string(widths[i] - display_width(line[i]) + 2, ' ');
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text + "\n";
  }
  return out;
}

}  // namespace corral::client
