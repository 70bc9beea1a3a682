// The lock that keeps a data directory to one corrald (docs/operations.md, "One corrald per data
// directory").
//
// Two corrald on one SQLite store would each think the jobs the other is running were left by a
// crash, and run or fail them again. So corrald holds an exclusive flock on
// <data-dir>/corrald.lock for as long as it lives, with its pid written in the file for whoever
// finds it taken. The kernel drops the lock when the process ends, however it ends: a lock file
// left behind by a killed corrald never keeps the next one out.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace corral::store {

// Another process holds the lock. what() says which pid, and what to do.
class DataDirInUse : public std::runtime_error {
 public:
  DataDirInUse(const std::string& message, pid_t holder)
      : std::runtime_error(message), holder_(holder) {}
  pid_t holder() const { return holder_; }  // 0 if the lock file named none

 private:
  pid_t holder_;
};

class DataDirLock {
 public:
  // Takes the lock without waiting. Throws DataDirInUse when another process holds it, and
  // std::runtime_error when the lock file cannot be opened.
  explicit DataDirLock(const std::filesystem::path& data_dir);
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

  static constexpr const char* kFileName = "corrald.lock";

 private:
  int fd_ = -1;
};

// Room kept on the data directory's disk for the day it fills up: SQLite cannot open a database
// in WAL mode without room for its shared-memory index, so corrald, finding the disk full at
// start, gives this file back and starts, serving reads and answering writes 507 until the
// operator frees space. Kept as <data-dir>/corrald.reserve.
inline constexpr size_t kSpaceReserveBytes = 1 << 20;
inline constexpr const char* kSpaceReserveFile = "corrald.reserve";

// Makes the reserve if it is missing and the disk has room for all of it; never leaves part of
// one. Returns false if there is none now.
bool keep_space_reserve(const std::filesystem::path& data_dir);

// Removes the reserve; false if there was none.
bool release_space_reserve(const std::filesystem::path& data_dir);

}  // namespace corral::store
