// corral-test-postgres start|stop DIR: the PostgreSQL server that ctest starts once for a whole
// run of the store's tests on PostgreSQL, and stops after them (tests/store/CMakeLists.txt). A
// server left behind in DIR by a run that was killed is stopped and removed before a new start.
#include <cstdio>
#include <filesystem>
#include <string>

#include "support/postgres_server.h"

int main(int argc, char** argv) {
  using corral::testing::PostgresServer;
  if (argc != 3 || (std::string(argv[1]) != "start" && std::string(argv[1]) != "stop")) {
    std::fprintf(stderr, "usage: corral-test-postgres start|stop DIR\n");
    return 2;
  }
  std::filesystem::path directory = argv[2];
  try {
    if (auto why = PostgresServer::unavailable()) {
      // The tests that need it skip with the same reason.
      std::printf("no PostgreSQL server for the tests: %s\n", why->c_str());
      return 0;
    }
    if (std::filesystem::exists(directory)) {
      try {
        PostgresServer::stop_in(directory);
      } catch (const std::exception&) {
        // Not running: only the directory is left to remove.
      }
      std::filesystem::remove_all(directory);
    }
    if (std::string(argv[1]) == "start") {
      PostgresServer::start_in(directory);
      std::printf("PostgreSQL for the tests runs in %s\n", directory.c_str());
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "corral-test-postgres: %s\n", error.what());
    return 1;
  }
}
