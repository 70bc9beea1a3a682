// Step 2: the worker's whole filesystem is an empty, read-only tmpfs (the worker ends confined
// to an empty directory of it, nesting.cc). No /proc (it would show
// the host's processes and writable knobs), no /dev, no binaries, no libraries: everything the
// worker needs was mapped before this step.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail/steps.h"

namespace corral::jail::mnt {
namespace {

constexpr const char* kStep = "filesystem";

// Mounts made from here on must not propagate back to the host's mount namespace.
void make_propagation_private() {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    fail_step(kStep, "making mount propagation private");
  }
}

void mount_new_root(const char* where) {
  if (mount("corral-root", where, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            "size=4k,nr_inodes=4,mode=0555") != 0) {
    fail_step(kStep, std::string("mounting an empty tmpfs on ") + where);
  }
}

// pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only
// the new root, with no path back to the host's files.
void pivot_into(const char* where) {
  if (chdir(where) != 0) fail_step(kStep, std::string("entering ") + where);
  if (syscall(SYS_pivot_root, ".", ".") != 0) fail_step(kStep, "pivot_root");
  if (umount2(".", MNT_DETACH) != 0) fail_step(kStep, "detaching the old root");
  if (chdir("/") != 0) fail_step(kStep, "entering the new root");
}

// A directory to confine the worker to (nesting.cc): a root below its mount namespace's root.
void make_confined_root() {
  if (mkdir(kConfinedRoot, 0555) != 0) fail_step(kStep, std::string("creating ") + kConfinedRoot);
}

void make_root_read_only() {
  if (mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            nullptr) != 0) {
    fail_step(kStep, "remounting the new root read-only");
  }
}

}  // namespace

void enter_empty_root() {
  make_propagation_private();
  mount_new_root("/tmp");
  pivot_into("/tmp");
  make_confined_root();
  make_root_read_only();
}

}  // namespace corral::jail::mnt
