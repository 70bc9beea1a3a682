// Issue 24, item 10: the HTTP and JSON front door, through a real corrald on 127.0.0.1.
// - A request whose length is ambiguous (any Transfer-Encoding but "chunked" alone, both framings,
//   Content-Length twice or not a number) is answered 400 and the connection closed: its body is
//   never read as the next request, which is how a request is smuggled past a proxy that frames
//   it otherwise.
// - A JSON body with a key twice, a number past a double or nesting past the bound is a 400
//   naming the field, never a 500 with the library's message.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "api/corrald_process.h"

namespace {

using corral::testing::CorraldProcess;
using nlohmann::json;
namespace http = boost::beast::http;

// What a raw connection got back for `request`: every byte until corrald closed it, or until a
// few seconds passed with the connection still open.
struct Exchange {
  std::string received;
  bool closed = false;
};

Exchange send_raw(const CorraldProcess& corrald, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(corrald.port());
  inet_pton(AF_INET, corrald.host().c_str(), &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    throw std::runtime_error("connect failed");
  }
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    throw std::runtime_error("send failed");
  }
  Exchange result;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd readable{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&readable, 1, static_cast<int>(left.count())) != 1) break;
    char buffer[4096];
    ssize_t got = recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0) {
      result.closed = true;  // end of stream, or a reset after the answer: closed either way
      break;
    }
    result.received.append(buffer, static_cast<size_t>(got));
  }
  close(fd);
  return result;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

// How many responses `text` holds: corrald names itself in each.
size_t responses_in(const std::string& text) { return count_of(text, "\r\nServer: corrald\r\n"); }

// A request that corrald answers 200 without a token: what a smuggler hides in a body.
const std::string kHidden = "GET /healthz HTTP/1.1\r\nHost: corrald\r\n\r\n";

std::string post_with(const std::string& framing_headers, const std::string& body) {
  return "POST /v1/run HTTP/1.1\r\nHost: corrald\r\nContent-Type: application/json\r\n" +
         framing_headers + "\r\n" + body;
}

void expect_refused_and_closed(const Exchange& got, const std::string& variant) {
  EXPECT_TRUE(got.received.starts_with("HTTP/1.1 400 ")) << variant << ":\n" << got.received;
  EXPECT_NE(got.received.find("urn:corral:problem:bad-http"), std::string::npos) << variant << ":\n"
                                                                                 << got.received;
  EXPECT_EQ(responses_in(got.received), 1u) << variant << ": the hidden request was answered:\n"
                                            << got.received;
  EXPECT_EQ(got.received.find("\"status\":\"ok\""), std::string::npos) << variant;
  EXPECT_TRUE(got.closed) << variant << ": the connection was kept open";
}

class FrontDoor : public ::testing::Test {
 protected:
  CorraldProcess corrald_;
};

TEST_F(FrontDoor, EveryTransferEncodingButChunkedAloneIsRefusedAndTheConnectionClosed) {
  for (std::string coding :
       {"gzip", "xchunked", "identity", "chunked, gzip", "chunked, chunked", "gzip, chunked",
        "chunked,", "", "chunked;q=1", "\"chunked\"", "deflate"}) {
    std::string variant = "Transfer-Encoding: " + coding;
    expect_refused_and_closed(
        send_raw(corrald_, post_with("Transfer-Encoding: " + coding + "\r\n", kHidden)), variant);
  }
}

TEST_F(FrontDoor, TwoFramingsOrTwoLengthsAreRefusedAndTheConnectionClosed) {
  std::string length = std::to_string(kHidden.size());
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"Transfer-Encoding: gzip\r\nContent-Length: 0\r\n", kHidden},
      {"Content-Length: 0\r\nTransfer-Encoding: gzip\r\n", kHidden},
      {"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", "0\r\n\r\n" + kHidden},
      {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n" + kHidden},
      {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n" + kHidden},
      {"Content-Length: 0\r\nContent-Length: 0\r\n", kHidden},
      {"Content-Length: 0, 0\r\n", kHidden},
      {"Content-Length: 0\r\nContent-Length: " + length + "\r\n", kHidden},
      {"Content-Length: 0x10\r\n", kHidden},
      {"Content-Length: +0\r\n", kHidden},
      {"Transfer_Encoding: chunked\r\nContent-Length: " + length + "\r\n", kHidden},
      {"Content_Length: 0\r\n", kHidden},
  };
  for (const auto& [headers, body] : variants) {
    expect_refused_and_closed(send_raw(corrald_, post_with(headers, body)), headers);
  }
}

TEST_F(FrontDoor, HttpOneZeroWithTransferEncodingIsRefused) {
  std::string request =
      "POST /v1/run HTTP/1.0\r\nHost: corrald\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
      kHidden;
  Exchange got = send_raw(corrald_, request);
  EXPECT_NE(got.received.find(" 400 "), std::string::npos) << got.received;
  EXPECT_EQ(responses_in(got.received), 1u) << got.received;
  EXPECT_TRUE(got.closed);
}

// The framings that are not ambiguous still work, and keep the connection open: a body in chunks
// (the coding's name in any case) and one Content-Length.
TEST_F(FrontDoor, ChunkedAloneAndOneContentLengthAreServedOnAKeptConnection) {
  std::string body = R"({"source": "function handle() return 7 end"})";
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  std::string chunked = std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n";
  std::string then = "GET /healthz HTTP/1.1\r\nHost: corrald\r\nConnection: close\r\n\r\n";
  std::string token = "Authorization: Bearer " + corrald_.admin_token() + "\r\n";
  for (const std::string& framing : {std::string("Transfer-Encoding: chunked\r\n"),
                                     std::string("Transfer-Encoding: CHUNKED\r\n"),
                                     std::string("Transfer-Encoding:  chunked \r\n")}) {
    Exchange got = send_raw(corrald_, post_with(token + framing, chunked) + then);
    EXPECT_TRUE(got.received.starts_with("HTTP/1.1 200 ")) << framing << got.received;
    EXPECT_NE(got.received.find("\"output\":7"), std::string::npos) << got.received;
    EXPECT_EQ(count_of(got.received, "HTTP/1.1 200 "), 2u) << framing << got.received;
  }
  Exchange got = send_raw(
      corrald_,
      post_with(token + "Content-Length: " + std::to_string(body.size()) + "\r\n", body) + then);
  EXPECT_EQ(count_of(got.received, "HTTP/1.1 200 "), 2u) << got.received;
}

// ---- JSON bodies

json body_of(const http::response<http::string_body>& response) {
  return json::parse(response.body());
}

TEST_F(FrontDoor, ADuplicateKeyIsRefusedSoNoReaderPicksADifferentRole) {
  auto admin = corrald_.client();
  ASSERT_EQ(admin.request(http::verb::post, "/v1/tenants", R"({"name": "acme"})").result_int(),
            201);
  auto response = admin.request(http::verb::post, "/v1/tenants/acme/tokens",
                                R"({"role": "admin", "role": "invoker"})");
  ASSERT_EQ(response.result_int(), 400) << response.body();
  auto problem = body_of(response);
  EXPECT_EQ(problem["type"], "urn:corral:problem:invalid");
  EXPECT_EQ(problem["field"], "role");
  EXPECT_NE(problem["detail"].get<std::string>().find("\"role\" appears twice"), std::string::npos)
      << problem;
  // Nothing was made: the tenant has no token.
  auto tokens = admin.request(http::verb::get, "/v1/tenants/acme/tokens");
  if (tokens.result_int() == 200) {
    auto listed = body_of(tokens);
    const json& items = listed.is_array() ? listed : listed.value("tokens", json::array());
    EXPECT_TRUE(items.empty()) << listed;
  }
  // In an input, too, wherever it nests.
  auto run = admin.request(http::verb::post, "/v1/run",
                           R"({"source": "function handle(i) return i end",
                               "input": {"order": [{"qty": 1, "qty": 1000}]}})");
  ASSERT_EQ(run.result_int(), 400) << run.body();
  EXPECT_EQ(body_of(run)["field"], "input.order[0].qty");
}

TEST_F(FrontDoor, ANumberPastADoubleIsA400NamingTheFieldNotA500) {
  auto admin = corrald_.client();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"source": "function handle(i) return i end", "input": {"amount": 1e309}})",
       "input.amount"},
      {R"({"source": "function handle(i) return i end", "input": [1, )" + std::string(5000, '7') +
           "]}",
       "input[1]"},
      {R"({"source": "function handle(i) return i end", "limits": {"fuel": -1e999}})",
       "limits.fuel"},
  };
  for (const auto& [text, field] : cases) {
    auto response = admin.request(http::verb::post, "/v1/run", text);
    ASSERT_EQ(response.result_int(), 400) << field << ": " << response.body().substr(0, 500);
    auto problem = body_of(response);
    EXPECT_EQ(problem["type"], "urn:corral:problem:invalid");
    EXPECT_EQ(problem["field"], field);
    std::string detail = problem["detail"];
    EXPECT_NE(detail.find("outside the range of a double"), std::string::npos) << detail;
    EXPECT_EQ(detail.find("[json.exception"), std::string::npos) << detail;
    EXPECT_LT(response.body().size(), 2000u) << "the 5,000 digits are not echoed";
  }
  // Elsewhere than /v1/run: any body.
  auto response = admin.request(http::verb::post, "/v1/tenants", R"({"name": 1e309})");
  ASSERT_EQ(response.result_int(), 400) << response.body();
  EXPECT_EQ(body_of(response)["field"], "name");
}

TEST_F(FrontDoor, TextThatIsNotJsonIsDescribedInCorralsWordsNotTheLibrarys) {
  auto admin = corrald_.client();
  for (std::string target : {"/v1/run", "/v1/tenants"}) {
    auto response = admin.request(http::verb::post, target, "{\"name\": x}");
    ASSERT_EQ(response.result_int(), 400) << target << ": " << response.body();
    std::string detail = body_of(response)["detail"];
    EXPECT_NE(detail.find("it breaks at line 1, column 10 (byte 10), at 'x'"), std::string::npos)
        << target << ": " << detail;
    EXPECT_EQ(detail.find("json.exception"), std::string::npos) << target << ": " << detail;
  }
}

TEST_F(FrontDoor, DeepNestingAnywhereIsRefusedAndTheServerLives) {
  auto admin = corrald_.client();
  std::string deep = std::string(200'000, '[') + std::string(200'000, ']');
  auto response = admin.request(http::verb::post, "/v1/tenants", R"({"name": )" + deep + "}");
  ASSERT_EQ(response.result_int(), 400) << response.body().substr(0, 500);
  EXPECT_NE(body_of(response)["detail"].get<std::string>().find("nests deeper than"),
            std::string::npos);
  EXPECT_EQ(admin.request(http::verb::get, "/healthz").result_int(), 200);
}

// The review's case: 40 PUTs of a 200 KB nested policy took corrald from 18 MB to 599 MB. Each is
// refused before it is read, and corrald's peak stays where it was.
TEST_F(FrontDoor, ADeeplyNestedPolicyIsRefusedBeforeItIsRead) {
  auto admin = corrald_.client();
  auto peak_kib = [&] {
    std::ifstream status("/proc/" + std::to_string(corrald_.pid()) + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
    }
    return -1L;
  };
  std::string deep = "defaults: " + std::string(100'000, '[') + std::string(100'000, ']') + "\n";
  long before = peak_kib();
  for (int i = 0; i < 10; ++i) {
    auto response = admin.request(http::verb::put, "/v1/policy", deep, "application/yaml");
    ASSERT_EQ(response.result_int(), 400) << response.body().substr(0, 500);
    auto problem = body_of(response);
    EXPECT_EQ(problem["type"], "urn:corral:problem:invalid-policy");
    ASSERT_FALSE(problem["problems"].empty()) << problem;
    EXPECT_NE(problem["problems"][0]["message"].get<std::string>().find("nests deeper than 32"),
              std::string::npos)
        << problem;
  }
  long grown = peak_kib() - before;
  ASSERT_GE(before, 0);
  // Each body is 200 KB, held a few times over while it is read and answered; yaml-cpp's tokens
  // for one were 28 MB, 280 MB for ten. Under the sanitizers freed memory is held in quarantine
  // rather than reused, so the ten bodies' copies add up (18 MB seen): the bound there is wider,
  // still far below what reading them would take.
#if defined(__SANITIZE_ADDRESS__)
  constexpr long kBoundKib = 64 * 1024;
#else
  constexpr long kBoundKib = 16 * 1024;
#endif
  EXPECT_LT(grown, kBoundKib) << "KiB corrald's peak grew by over 10 such PUTs";
}

}  // namespace
