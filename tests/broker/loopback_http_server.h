// A tiny HTTP/1.1 server on 127.0.0.1 (an ephemeral port, never any other address) for the
// broker's fetch tests. One request per connection, each on its own thread. Routes:
//   /echo[...]                     200, JSON {method, path, headers: [[name, value]...], body};
//                                  also sends Set-Cookie, "Connection: close, X-Hop", X-Hop and
//                                  X-Kept, so tests can see which response headers survive
//   /reflect                       200 with the request's body, and each request header X-NAME
//                                  sent back as Reflected-X-NAME (a server that echoes)
//   /redirect?status=N&to=URL      status N (302 by default) with Location: URL (percent-decoded)
//   /loop/N                        302 to the relative /loop/N+1, forever
//   /huge?bytes=N                  200 with Content-Length N and N bytes of 'x'
//   /huge-unannounced?bytes=N      200 with N bytes of 'x' and no Content-Length (ends at close)
//   /slow?ms=N                     waits N ms, then answers like /echo
//   /slow-body?ms=N                sends headers and half the body, waits N ms, sends the rest
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace corral::testing {

class LoopbackHttpServer {
 public:
  LoopbackHttpServer() {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener_ < 0) throw std::runtime_error("test server: socket() failed");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(listener_, 64) != 0) {
      throw std::runtime_error("test server: cannot listen on 127.0.0.1");
    }
    socklen_t length = sizeof address;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~LoopbackHttpServer() {
    stopping_ = true;
    acceptor_.join();
    std::lock_guard lock(mutex_);
    for (std::thread& connection : connections_) connection.join();
    close(listener_);
  }

  LoopbackHttpServer(const LoopbackHttpServer&) = delete;
  LoopbackHttpServer& operator=(const LoopbackHttpServer&) = delete;

  int port() const { return port_; }
  std::string origin() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string url(const std::string& path) const { return origin() + path; }
  // Requests read completely so far.
  int requests() const { return requests_.load(); }
  // Whether any request read so far held `text` anywhere in its bytes (head or body).
  bool received(const std::string& text) {
    std::lock_guard lock(seen_mutex_);
    for (const std::string& request : seen_) {
      if (request.find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd waiting{listener_, POLLIN, 0};
      if (poll(&waiting, 1, 20) <= 0) continue;
      int connection = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) continue;
      std::lock_guard lock(mutex_);
      connections_.emplace_back([this, connection] {
        serve(connection);
        close(connection);
      });
    }
  }

  // Sleeps in small steps so that a test ending mid-wait does not wait for the full delay.
  void pause(int ms) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!stopping_ && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  static bool send_all(int connection, std::string_view data) {
    while (!data.empty()) {
      ssize_t sent = send(connection, data.data(), data.size(), MSG_NOSIGNAL);
      if (sent <= 0) return false;
      data.remove_prefix(static_cast<size_t>(sent));
    }
    return true;
  }

  static std::string query_value(const std::string& target, const std::string& key) {
    size_t query = target.find('?');
    if (query == std::string::npos) return "";
    std::string rest = "&" + target.substr(query + 1);
    size_t at = rest.find("&" + key + "=");
    if (at == std::string::npos) return "";
    size_t start = at + key.size() + 2;
    std::string raw = rest.substr(start, rest.find('&', start) - start);
    std::string decoded;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '%' && i + 2 < raw.size()) {
        decoded += static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        decoded += raw[i];
      }
    }
    return decoded;
  }

  static std::string response(int status, const std::string& extra_headers,
                              const std::string& body) {
    return "HTTP/1.1 " + std::to_string(status) +
           " Test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers +
           "Connection: close\r\n\r\n" + body;
  }

  void serve(int connection) {
    std::string data;
    char buffer[16384];
    size_t header_end;
    auto read_more = [&] {
      pollfd waiting{connection, POLLIN, 0};
      while (!stopping_) {
        if (poll(&waiting, 1, 20) > 0) {
          ssize_t got = recv(connection, buffer, sizeof buffer, 0);
          if (got <= 0) return false;
          data.append(buffer, static_cast<size_t>(got));
          return true;
        }
      }
      return false;
    };
    while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
      if (!read_more()) return;
    }
    std::string head = data.substr(0, header_end);
    size_t line_end = head.find("\r\n");
    std::string request_line = head.substr(0, line_end);
    std::string method = request_line.substr(0, request_line.find(' '));
    size_t target_start = method.size() + 1;
    std::string target =
        request_line.substr(target_start, request_line.find(' ', target_start) - target_start);
    nlohmann::json headers = nlohmann::json::array();
    size_t content_length = 0;
    for (size_t at = line_end; at != std::string::npos && at < head.size();) {
      size_t start = at + 2;
      size_t next = head.find("\r\n", start);
      std::string line =
          head.substr(start, next == std::string::npos ? std::string::npos : next - start);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        headers.push_back({name, value});
        std::string lowered = name;
        for (char& c : lowered) c = static_cast<char>(std::tolower(c));
        if (lowered == "content-length") content_length = std::stoul(value);
      }
      at = next;
    }
    while (data.size() < header_end + 4 + content_length) {
      if (!read_more()) return;
    }
    std::string body = data.substr(header_end + 4, content_length);
    {
      std::lock_guard lock(seen_mutex_);
      seen_.push_back(data.substr(0, header_end + 4 + content_length));
    }
    ++requests_;

    std::string path = target.substr(0, target.find('?'));
    nlohmann::json echo = {
        {"method", method}, {"path", target}, {"headers", headers}, {"body", body}};
    std::string echo_headers =
        "Content-Type: application/json\r\nSet-Cookie: session=secret\r\nX-Hop: 1\r\n"
        "Connection: X-Hop\r\nX-Kept: yes\r\n";
    if (path == "/echo" || path.starts_with("/echo/")) {
      send_all(connection, response(200, echo_headers, echo.dump()));
    } else if (path == "/reflect") {
      std::string reflected;
      for (const auto& header : headers) {
        std::string name = header[0];
        if (name.starts_with("X-"))
          reflected += "Reflected-" + name + ": " + std::string(header[1]) + "\r\n";
      }
      send_all(connection, response(200, reflected, body));
    } else if (path == "/redirect") {
      std::string status = query_value(target, "status");
      send_all(connection, response(status.empty() ? 302 : std::stoi(status),
                                    "Location: " + query_value(target, "to") + "\r\n", ""));
    } else if (path.starts_with("/loop/")) {
      int hop = std::stoi(path.substr(6));
      send_all(connection,
               response(302, "Location: /loop/" + std::to_string(hop + 1) + "\r\n", ""));
    } else if (path == "/huge" || path == "/huge-unannounced") {
      size_t bytes = std::stoul(query_value(target, "bytes"));
      std::string head_text = "HTTP/1.1 200 OK\r\nConnection: close\r\n";
      if (path == "/huge") head_text += "Content-Length: " + std::to_string(bytes) + "\r\n";
      if (!send_all(connection, head_text + "\r\n")) return;
      std::string chunk(64 * 1024, 'x');
      for (size_t sent = 0; sent < bytes && !stopping_; sent += chunk.size()) {
        if (!send_all(connection,
                      std::string_view(chunk).substr(0, std::min(chunk.size(), bytes - sent)))) {
          return;
        }
      }
    } else if (path == "/slow") {
      pause(std::stoi(query_value(target, "ms")));
      send_all(connection, response(200, echo_headers, echo.dump()));
    } else if (path == "/slow-body") {
      std::string full = std::string(1000, 'y');
      if (!send_all(connection,
                    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + full.substr(0, 500))) {
        return;
      }
      pause(std::stoi(query_value(target, "ms")));
      send_all(connection, full.substr(500));
    } else {
      send_all(connection, response(404, "", "no such test route\n"));
    }
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> requests_{0};
  std::mutex seen_mutex_;
  std::vector<std::string> seen_;  // every request read, as received
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<std::thread> connections_;
};

}  // namespace corral::testing
