// What the benchmarks that drive a real corrald share (bench/noisy_neighbour.cc,
// bench/audit_flood.cc): failing with the program's name, and setting up through the API.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/corrald_process.h"

namespace corral::bench {

// The program's name, as its messages start.
inline std::string_view program_name = "corral-bench";

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(program_name.size()), program_name.data(),
               what.c_str());
  std::exit(1);
}

// A request that sets something up: any status other than `expected` (or `also`, when given)
// ends the benchmark, saying what answered what.
inline nlohmann::json call(testing::HttpClient& client, boost::beast::http::verb method,
                           const std::string& target, const nlohmann::json& body, int expected,
                           int also = 0) {
  auto response = client.request(method, target, body.is_null() ? "" : body.dump());
  int status = static_cast<int>(response.result_int());
  if (status != expected && (also == 0 || status != also)) {
    fail("setting up: " + target + " answered " + std::to_string(status) + ": " +
         response.body().substr(0, 400));
  }
  return nlohmann::json::parse(response.body(), nullptr, false);
}

// Seconds as milliseconds with `decimals` places: "12.3".
inline std::string milliseconds(double seconds, int decimals) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, seconds * 1000);
  return text;
}

}  // namespace corral::bench
