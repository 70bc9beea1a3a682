// A test-only worker: jails itself exactly as corral-worker does (contain, then lock_down),
// then reports what it sees or attempts one forbidden action, and writes one JSON object to
// the channel. A refused syscall arrives instead as "violation <number>".
//
//   jail_probe --jail-layers=… --probe=NAME [--target=N]
#include "jail_probe.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "jail/jail.h"
#include "pool/frame.h"

extern char** environ;

namespace {

using corral::jail::kChannelFd;
using nlohmann::json;

void send_text(const std::string& text) {
  corral::write_frame(kChannelFd, corral::FrameType::result, text);
}

void report_violation(long number) { corral::write_violation_frame(kChannelFd, number); }

json attempt(int result) {
  if (result >= 0) return {{"succeeded", true}};
  return {{"succeeded", false}, {"errno", strerrorname_np(errno)}};
}

json capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  syscall(SYS_capget, &header, data);
  bool bounding = false;
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) bounding |= prctl(PR_CAPBSET_READ, cap) == 1;
  bool ambient = false;
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
    ambient |= prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1;
  return {{"effective", data[0].effective | data[1].effective},
          {"permitted", data[0].permitted | data[1].permitted},
          {"inheritable", data[0].inheritable | data[1].inheritable},
          {"bounding_any", bounding},
          {"ambient_any", ambient},
          {"no_new_privs", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)}};
}

json facts() {
  json root = json::array();
  if (DIR* directory = opendir("/")) {
    while (dirent* entry = readdir(directory)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..") root.push_back(name);
    }
    closedir(directory);
  }
  json open_descriptors = json::array();
  for (int fd = 0; fd < 1024; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0) open_descriptors.push_back(fd);
  }
  json interfaces_up = json::array();
  if (struct if_nameindex* interfaces = if_nameindex()) {
    int probe = socket(AF_INET, SOCK_DGRAM, 0);
    for (auto* each = interfaces; each->if_index != 0; ++each) {
      ifreq request{};
      std::strncpy(request.ifr_name, each->if_name, IFNAMSIZ - 1);
      if (ioctl(probe, SIOCGIFFLAGS, &request) == 0 && (request.ifr_flags & IFF_UP))
        interfaces_up.push_back(each->if_name);
    }
    if (probe >= 0) close(probe);
    if_freenameindex(interfaces);
  }
  auto limit = [](int resource) {
    rlimit value{};
    getrlimit(resource, &value);
    return value.rlim_cur == RLIM_INFINITY ? json(-1) : json(value.rlim_cur);
  };
  int environment = 0;
  for (char** each = environ; each && *each; ++each) ++environment;
  int pdeathsig = 0;
  prctl(PR_GET_PDEATHSIG, &pdeathsig);
  struct stat ignored;
  return {{"uid", getuid()},
          {"gid", getgid()},
          {"pid", getpid()},
          {"root", root},
          {"proc_exists", stat("/proc", &ignored) == 0},
          {"dev_exists", stat("/dev", &ignored) == 0},
          {"mkdir_in_root", attempt(mkdir("/written", 0700))},
          {"interfaces_up", interfaces_up},
          {"rlimits",
           {{"as", limit(RLIMIT_AS)},
            {"cpu", limit(RLIMIT_CPU)},
            {"nproc", limit(RLIMIT_NPROC)},
            {"fsize", limit(RLIMIT_FSIZE)},
            {"nofile", limit(RLIMIT_NOFILE)},
            {"core", limit(RLIMIT_CORE)}}},
          {"open_descriptors", open_descriptors},
          {"environment_variables", environment},
          {"session_leader", getsid(0) == getpid()},
          {"pdeathsig", pdeathsig},
          {"dumpable", prctl(PR_GET_DUMPABLE)},
          {"capabilities", capabilities()}};
}

json act(const std::string& probe, long target) {
  if (probe == "open_file") return attempt(open("/etc/passwd", O_RDONLY));
  if (probe == "write_proc") return attempt(open("/proc/self/attr/current", O_WRONLY));
  if (probe == "fork") {
    pid_t child = fork();
    if (child == 0) _exit(0);
    if (child > 0) waitpid(child, nullptr, 0);
    return attempt(child);
  }
  if (probe == "connect_socket") {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return attempt(fd);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(target));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return attempt(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address));
  }
  if (probe == "ptrace")
    return attempt(
        static_cast<int>(ptrace(PTRACE_ATTACH, static_cast<pid_t>(target), nullptr, nullptr)));
  if (probe == "raise_capability") {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    for (auto& each : data) each = {~0u, ~0u, 0};
    return attempt(static_cast<int>(syscall(SYS_capset, &header, data)));
  }
  if (probe == "x32_syscall") return attempt(static_cast<int>(syscall(0x40000000 | SYS_getpid)));
  if (probe == "i386_syscall") {
    long result = 20;  // getpid in the i386 table
    asm volatile("int $0x80" : "+a"(result) : : "memory");
    return {{"succeeded", result >= 0}};
  }
  if (probe == "harmless_syscall") return attempt(static_cast<int>(getppid()));
  if (probe == "hold") {
    char byte;
    while (read(kChannelFd, &byte, 1) > 0) {
    }
    return {{"held", true}};
  }
  return {{"unknown_probe", probe}};
}

void exit_as_the_kernel_refused_i386(int) { _exit(corral::jail::kProbeExitKernelRefusedI386); }

void exit_on_segv_as_the_kernel_refused_i386() {
  struct sigaction action {};
  action.sa_handler = exit_as_the_kernel_refused_i386;
  sigaction(SIGSEGV, &action, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  std::string probe;
  long target = 0;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    if (argument.starts_with("--probe=")) probe = argument.substr(8);
    if (argument.starts_with("--target=")) target = std::stol(argument.substr(9));
  }
  auto options = corral::jail::options_from_arguments(argc, argv);
  try {
    corral::jail::contain(options);
  } catch (const std::exception& error) {
    send_text(json{{"contain_failed", error.what()}}.dump());
    return 1;
  }
  // Facts are gathered before the allowlist (reading them needs syscalls it refuses); actions
  // are attempted after it, as a compromised worker would.
  json seen = probe == "facts" ? facts() : json::object();
  std::string report = seen.dump();
  report.reserve(report.size() + 4096);
  if (probe == "i386_syscall") exit_on_segv_as_the_kernel_refused_i386();
  corral::jail::lock_down(options, report_violation);
  if (probe != "facts") report = act(probe, target).dump();
  send_text(report);
  return 0;
}
