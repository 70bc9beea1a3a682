// No namespace of the worker's own making. A worker that could create a user namespace would
// be root with every capability again inside it, and with a network namespace of that user
// namespace it reaches what CAP_NET_ADMIN guards there (nf_tables through netlink, a large
// kernel attack surface); every other namespace type needs CAP_SYS_ADMIN, which the
// capabilities step takes away. Two points, each enough with the capabilities step:
//
//   forbid_new_namespaces   (namespaces layer, first) the limits on namespaces of every type
//                           in the worker's own user namespace go to 0, while the worker is
//                           still root there; raising them again needs CAP_SYS_RESOURCE in it
//                           and a /proc, and the worker ends with neither.
//   confine_below_root      (filesystem layer, after the empty root) the worker's root becomes
//                           a directory below its mount namespace's root: the kernel refuses a
//                           chrooted process a new user namespace (EPERM), and undoing the
//                           chroot needs CAP_SYS_CHROOT.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "jail/steps.h"

namespace corral::jail::nesting {
namespace {

constexpr const char* kLimits[] = {"user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"};
constexpr const char* kUserSysctls = "/proc/sys/user";

// The initial user namespace maps every id to itself; a worker's maps one. Read without an
// ifstream, which took twice as long here: this runs on every worker start.
bool in_initial_user_namespace() {
  char map[128];
  int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  ssize_t length = read(fd, map, sizeof map - 1);
  close(fd);
  if (length <= 0) return true;
  map[length] = '\0';
  unsigned long inside = 1, outside = 1, count = 0;
  return std::sscanf(map, "%lu %lu %lu", &inside, &outside, &count) != 3 ||
         (inside == 0 && outside == 0 && count == 4294967295ul);
}

// The kernel keeps a /proc/sys/user entry per user namespace under one name, and each lookup of
// that name compares against every live one: with thousands of idle workers, each lookup costs
// as many comparisons. The directory is looked up once, and each file relative to it.
// A missing file is skipped when `may_be_missing`: a kernel older than a namespace type has no
// limit for it, and no such namespace either.
void write_zero(int directory, const std::string& name, bool may_be_missing) {
  std::string path = std::string(kUserSysctls) + "/" + name;
  int fd = openat(directory, name.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 && may_be_missing && errno == ENOENT) return;
  if (fd < 0) fail_step("namespaces", "opening " + path);
  ssize_t written = write(fd, "0\n", 2);
  int saved = errno;
  close(fd);
  errno = saved;
  if (written != 2) fail_step("namespaces", "writing 0 to " + path);
}

}  // namespace

void forbid_new_namespaces() {
  // These files are per user namespace: in the host's, this would forbid namespaces to the
  // whole machine.
  if (in_initial_user_namespace()) {
    errno = 0;
    fail_step("namespaces",
              "refusing to lower the namespace limits in the host's user namespace (is /proc "
              "mounted in corrald's mount namespace?)");
  }
  int directory = open(kUserSysctls, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory < 0) fail_step("namespaces", std::string("opening ") + kUserSysctls);
  try {
    for (const char* kind : kLimits) {
      write_zero(directory, std::string("max_") + kind + "_namespaces",
                 kind != std::string("user"));
    }
  } catch (...) {
    close(directory);
    throw;
  }
  close(directory);
}

void confine_below_root() {
  if (chroot(mnt::kConfinedRoot) != 0)
    fail_step("filesystem", std::string("entering ") + mnt::kConfinedRoot + " (chroot)");
  if (chdir("/") != 0) fail_step("filesystem", "entering the confined root");
}

}  // namespace corral::jail::nesting
