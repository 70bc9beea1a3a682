// A webhook receiver for tests: an HTTP/1.1 server on 127.0.0.1 (an ephemeral port) that keeps
// every request it reads and answers each path with the statuses a test gives it, in turn (the
// last one repeats; 200 when none were given). One request per connection.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace corral::testing {

struct ReceivedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  std::chrono::steady_clock::time_point at;
};

class WebhookReceiver {
 public:
  WebhookReceiver() {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener_ < 0) throw std::runtime_error("webhook receiver: socket() failed");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(listener_, 128) != 0) {
      throw std::runtime_error("webhook receiver: cannot listen on 127.0.0.1");
    }
    socklen_t length = sizeof address;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { accept_loop(); });
  }

  ~WebhookReceiver() {
    stopping_ = true;
    thread_.join();
    close(listener_);
  }

  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  int port() const { return port_; }
  std::string origin() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string url(const std::string& path) const { return origin() + path; }

  void answer(const std::string& path, std::deque<int> statuses) {
    std::lock_guard lock(mutex_);
    statuses_[path] = std::move(statuses);
  }

  std::vector<ReceivedRequest> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

  // Waits until at least `count` requests arrived; false on timeout.
  bool wait_for(size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return arrived_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd waiting{listener_, POLLIN, 0};
      if (poll(&waiting, 1, 20) <= 0) continue;
      int connection = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) continue;
      serve(connection);
      close(connection);
    }
  }

  bool read_more(int connection, std::string& data) {
    char buffer[16384];
    pollfd waiting{connection, POLLIN, 0};
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!stopping_ && std::chrono::steady_clock::now() < deadline) {
      if (poll(&waiting, 1, 20) <= 0) continue;
      ssize_t got = recv(connection, buffer, sizeof buffer, 0);
      if (got <= 0) return false;
      data.append(buffer, static_cast<size_t>(got));
      return true;
    }
    return false;
  }

  void serve(int connection) {
    std::string data;
    size_t head_end;
    while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
      if (!read_more(connection, data)) return;
    }
    ReceivedRequest request;
    request.at = std::chrono::steady_clock::now();
    std::string head = data.substr(0, head_end);
    size_t line_end = head.find("\r\n");
    std::string first = head.substr(0, line_end);
    request.method = first.substr(0, first.find(' '));
    size_t start = request.method.size() + 1;
    request.path = first.substr(start, first.find(' ', start) - start);
    size_t length = 0;
    for (size_t at = line_end; at != std::string::npos && at < head.size();) {
      size_t begin = at + 2;
      size_t next = head.find("\r\n", begin);
      std::string line = head.substr(begin, next == std::string::npos ? next : next - begin);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        if (name == "content-length") length = std::stoul(value);
        request.headers[name] = value;
      }
      at = next;
    }
    while (data.size() < head_end + 4 + length) {
      if (!read_more(connection, data)) return;
    }
    request.body = data.substr(head_end + 4, length);
    int status = 200;
    {
      std::lock_guard lock(mutex_);
      auto found = statuses_.find(request.path);
      if (found != statuses_.end() && !found->second.empty()) {
        status = found->second.front();
        if (found->second.size() > 1) found->second.pop_front();
      }
      requests_.push_back(request);
    }
    arrived_.notify_all();
    std::string reply = "HTTP/1.1 " + std::to_string(status) +
                        " Test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    (void)!send(connection, reply.data(), reply.size(), MSG_NOSIGNAL);
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::map<std::string, std::deque<int>> statuses_;
  std::vector<ReceivedRequest> requests_;
};

}  // namespace corral::testing
