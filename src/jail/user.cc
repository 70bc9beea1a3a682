// Step 1, the supervisor's half: the worker was cloned into a new user namespace and waits
// until its ids are mapped. Root inside maps to an unprivileged uid/gid outside, one id each:
// corrald gives each tenant's workers ids of their own (pool/jail_setup.h, WorkerIds), so that
// no two tenants share a uid's keys, signals or quotas. setgroups is denied so the worker cannot
// drop into other groups.
//
// Paths under /proc/<pid> are safe here: the child is ours, unreaped and blocked on a pipe, so
// its pid cannot be reused while we write.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "jail/steps.h"

namespace corral::jail::user {
namespace {

void write_file(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail_step("namespaces", "opening " + path);
  ssize_t written = write(fd, text.data(), text.size());
  int saved = errno;
  close(fd);
  errno = saved;
  if (written != static_cast<ssize_t>(text.size()))
    fail_step("namespaces", "writing '" + text + "' to " + path);
}

}  // namespace

void write_id_maps(pid_t child, uid_t outside_uid, gid_t outside_gid) {
  std::string proc = "/proc/" + std::to_string(child);
  write_file(proc + "/setgroups", "deny");
  write_file(proc + "/uid_map", "0 " + std::to_string(outside_uid) + " 1\n");
  write_file(proc + "/gid_map", "0 " + std::to_string(outside_gid) + " 1\n");
}

}  // namespace corral::jail::user
