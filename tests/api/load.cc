#include "api/load.h"

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <fstream>

namespace corral::testing {

struct LoadConnection::Connection {
  boost::asio::io_context io;
  std::unique_ptr<boost::asio::ip::tcp::socket> socket;
  boost::beast::flat_buffer buffer;
};

LoadConnection::LoadConnection(std::string host, uint16_t port, std::string token)
    : host_(std::move(host)),
      port_(port),
      token_(std::move(token)),
      connection_(std::make_unique<Connection>()) {}

LoadConnection::~LoadConnection() = default;

Reply LoadConnection::post(const std::string& target, const std::string& body) {
  namespace http = boost::beast::http;
  Reply reply;
  auto started = std::chrono::steady_clock::now();
  try {
    if (!connection_->socket) connect();
    http::request<http::string_body> message(http::verb::post, target, 11);
    message.set(http::field::host, "127.0.0.1");
    message.set(http::field::authorization, "Bearer " + token_);
    message.set(http::field::content_type, "application/json");
    message.body() = body;
    message.prepare_payload();
    http::write(*connection_->socket, message);
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 << 20);
    http::read(*connection_->socket, connection_->buffer, parser);
    auto response = parser.release();
    reply.status = static_cast<int>(response.result_int());
    if (auto found = response.find("Retry-After"); found != response.end())
      reply.retry_after = std::string(found->value());
    reply.body = nlohmann::json::parse(response.body(), nullptr, false);
    if (reply.body.is_object() && reply.body.contains("type") && reply.body["type"].is_string())
      reply.problem_type = reply.body["type"];
    if (!response.keep_alive()) connection_->socket.reset();
  } catch (const std::exception& failure) {
    reply.status = 0;
    reply.error = failure.what();
    connection_->socket.reset();
    connection_->buffer.clear();
  }
  reply.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return reply;
}

void LoadConnection::connect() {
  connection_->buffer.clear();
  connection_->socket = std::make_unique<boost::asio::ip::tcp::socket>(connection_->io);
  connection_->socket->connect(
      boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address(host_), port_));
}

void yield_cpu_to_corrald() { setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19); }

std::optional<long> resident_kib(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return std::nullopt;
}

}  // namespace corral::testing
