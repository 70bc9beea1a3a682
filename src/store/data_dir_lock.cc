#include "store/data_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace corral::store {

namespace {

pid_t read_holder(int fd) {
  char text[32] = {};
  ssize_t length = pread(fd, text, sizeof text - 1, 0);
  if (length <= 0) return 0;
  long pid = std::strtol(text, nullptr, 10);
  return pid > 0 ? static_cast<pid_t>(pid) : 0;
}

}  // namespace

DataDirLock::DataDirLock(const std::filesystem::path& data_dir) {
  std::filesystem::path file = data_dir / kFileName;
  // Close-on-exec, so that no worker inherits the lock and keeps it past corrald's end.
  fd_ = open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) {
    throw std::runtime_error("cannot open the lock file " + file.string() + " (" +
                             std::strerror(errno) + "); pass a writable --data-dir");
  }
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int error = errno;
    pid_t holder = error == EWOULDBLOCK ? read_holder(fd_) : 0;
    close(fd_);
    fd_ = -1;
    if (error != EWOULDBLOCK) {
      throw std::runtime_error("cannot lock " + file.string() + " (" + std::strerror(error) +
                               "); pass a --data-dir on a local filesystem that supports flock");
    }
    std::string who =
        holder > 0 ? "another corrald (pid " + std::to_string(holder) + ")" : "another process";
    throw DataDirInUse(
        "the data directory " + data_dir.string() + " is in use by " + who + ", which holds " +
            file.string() +
            "; two corrald on one store would re-run or fail each other's jobs. Stop that "
            "process first, or give this one another --data-dir",
        holder);
  }
  std::string pid = std::to_string(getpid()) + "\n";
  // Best effort: the pid only helps the next one say who holds the lock.
  if (ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] ssize_t written = pwrite(fd_, pid.data(), pid.size(), 0);
  }
}

bool keep_space_reserve(const std::filesystem::path& data_dir) {
  std::filesystem::path file = data_dir / kSpaceReserveFile;
  std::error_code error;
  if (std::filesystem::file_size(file, error) == kSpaceReserveBytes) return true;
  std::filesystem::path partial = data_dir / (std::string(kSpaceReserveFile) + ".partial");
  int fd = open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return false;
  // Written, not only allocated, so that the blocks are the disk's to give back whatever the
  // filesystem does with sparse files.
  std::string zeros(64 << 10, '\0');
  bool whole = true;
  for (size_t written = 0; whole && written < kSpaceReserveBytes; written += zeros.size())
    whole = write(fd, zeros.data(), zeros.size()) == static_cast<ssize_t>(zeros.size());
  whole = whole && fsync(fd) == 0;
  close(fd);
  if (whole) std::filesystem::rename(partial, file, error);
  if (!whole || error) std::filesystem::remove(partial, error);
  return whole && !error;
}

bool release_space_reserve(const std::filesystem::path& data_dir) {
  std::error_code error;
  return std::filesystem::remove(data_dir / kSpaceReserveFile, error);
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) close(fd_);
}

}  // namespace corral::store
