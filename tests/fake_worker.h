// Stand-ins for corral-worker that misbehave in one scripted way, for the pool and API tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace corral {

// The shell line that sends a ready frame on the channel (magic "CR", version 1, type 4, an empty
// payload), as corral-worker does once it has jailed itself. The stand-ins may use builtins and
// exec only: a jailed worker may not start another process.
inline constexpr const char* kSendReadyFrame = R"(printf 'CR\001\004\000\000\000\000' >&3)";

// A shell script in the temporary directory for as long as the object lives, readable and
// executable by all: jailed workers run as nobody.
class FakeWorker {
 public:
  FakeWorker(const std::string& name, const std::string& shell)
      : path_(std::filesystem::temp_directory_path() /
              ("corral-fake-worker-" + name + "-" + std::to_string(getpid()))) {
    std::ofstream(path_) << "#!/bin/sh\n" << shell << "\n";
    using std::filesystem::perms;
    std::filesystem::permissions(path_, perms::owner_all | perms::group_read | perms::group_exec |
                                            perms::others_read | perms::others_exec);
  }
  ~FakeWorker() { std::filesystem::remove(path_); }
  FakeWorker(const FakeWorker&) = delete;
  FakeWorker& operator=(const FakeWorker&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace corral
