// A test-only worker: jails itself exactly as corral-worker does (contain, then lock_down),
// then reports what it sees or attempts one forbidden action, and writes one JSON object to
// the channel. A refused syscall arrives instead as "violation <number>".
//
//   jail_probe --jail-layers=… --probe=NAME [--target=N] [--without-namespace-limits]
#include "jail_probe.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "jail/jail.h"
#include "jail/steps.h"
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

// An abstract unix socket address ("\0corral-probe-<n>"), scoped to the network namespace.
sockaddr_un abstract_address(long number) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string name = "corral-probe-" + std::to_string(number);
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  return address;
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

// Keys, as an attacker would use them: by serial number, and by searching the session keyring.
long keyctl(int operation, unsigned long a = 0, unsigned long b = 0, unsigned long c = 0) {
  return syscall(SYS_keyctl, operation, a, b, c, 0);
}

constexpr const char* kTenantKey = "corral-probe-tenant-key";
// Key permissions (keyutils.h, which the probe does without): everything for the possessor and
// for processes of the owner's uid.
constexpr unsigned long kPossessorAll = 0x3f000000, kUserAll = 0x003f0000;

json read_key(long serial) {
  char payload[256] = {};
  long length = keyctl(KEYCTL_READ, static_cast<unsigned long>(serial),
                       reinterpret_cast<unsigned long>(payload), sizeof payload - 1);
  json result = attempt(static_cast<int>(length));
  if (length >= 0) result["payload"] = std::string(payload, std::min<size_t>(length, 255));
  return result;
}

json search_session(const char* description) {
  long serial =
      keyctl(KEYCTL_SEARCH, static_cast<unsigned long>(KEY_SPEC_SESSION_KEYRING),
             reinterpret_cast<unsigned long>("user"), reinterpret_cast<unsigned long>(description));
  json result = attempt(static_cast<int>(serial));
  if (serial >= 0) result["read"] = read_key(serial);
  return result;
}

// A key of this worker's, in its session keyring, readable by its owner's uid: what a
// compromised worker would leave for a worker of another tenant.
json add_tenant_key() {
  const char payload[] = "tenant-a-data";
  long serial = syscall(SYS_add_key, "user", kTenantKey, payload, sizeof payload - 1,
                        KEY_SPEC_SESSION_KEYRING);
  json result = attempt(static_cast<int>(serial));
  if (serial < 0) return result;
  result["serial"] = serial;
  // Possessor and user (same uid) may do anything; others nothing.
  result["setperm"] = attempt(static_cast<int>(
      keyctl(KEYCTL_SETPERM, static_cast<unsigned long>(serial), kPossessorAll | kUserAll)));
  return result;
}

// Each namespace type on its own (the user namespace last: once in a new one, the others would
// follow from its capabilities).
json unshare_each() {
  json result = json::object();
  const std::pair<const char*, int> kinds[] = {
      {"mnt", CLONE_NEWNS},    {"net", CLONE_NEWNET},       {"ipc", CLONE_NEWIPC},
      {"uts", CLONE_NEWUTS},   {"cgroup", CLONE_NEWCGROUP}, {"pid", CLONE_NEWPID},
      {"time", CLONE_NEWTIME}, {"user", CLONE_NEWUSER}};
  for (auto [name, flag] : kinds) result[name] = attempt(unshare(flag));
  return result;
}

// Undoing the namespaces layer's limits: through corrald's /proc if it is still there, else
// through a procfs of the worker's own mounted on its root; then a user namespace.
json raise_namespace_limits() {
  json result = json::object();
  std::string limit = "/proc/sys/user/max_user_namespaces";
  struct stat ignored;
  if (stat("/proc/sys/user", &ignored) != 0) {
    result["mount_proc"] = attempt(mount("proc", "/", "proc", 0, nullptr));
    limit = "/sys/user/max_user_namespaces";
  }
  int fd = open(limit.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    result["write"] = attempt(static_cast<int>(write(fd, "10\n", 3)));
    close(fd);
  } else {
    result["write"] = attempt(fd);
  }
  result["unshare"] = attempt(unshare(CLONE_NEWUSER));
  return result;
}

// The attack of the review: a network namespace of one's own, with CAP_NET_ADMIN over it, then
// nf_tables through netlink. The request is the cheapest nf_tables has (the ruleset's
// generation); nfnetlink refuses every request without CAP_NET_ADMIN with EPERM.
json netfilter() {
  json result = {{"unshare", attempt(unshare(CLONE_NEWUSER | CLONE_NEWNET))}};
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  result["socket"] = attempt(fd);
  if (fd < 0) return result;
  struct {
    nlmsghdr header;
    nfgenmsg body;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  request.header.nlmsg_seq = 1;
  request.body.nfgen_family = AF_UNSPEC;
  request.body.version = NFNETLINK_V0;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &request, sizeof request, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) <
      0) {
    result["request"] = attempt(-1);
    close(fd);
    return result;
  }
  alignas(nlmsghdr) char reply[8192];
  ssize_t length = recv(fd, reply, sizeof reply, 0);
  close(fd);
  if (length < static_cast<ssize_t>(sizeof(nlmsghdr))) {
    result["request"] = attempt(-1);
    return result;
  }
  auto* answer = reinterpret_cast<nlmsghdr*>(reply);
  if (answer->nlmsg_type == NLMSG_ERROR) {
    int error = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(answer))->error;
    errno = error;
    result["request"] = attempt(error == 0 ? 0 : -1);
  } else {
    result["request"] = {{"succeeded", true}};
  }
  return result;
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
  if (probe == "listen_abstract") {
    // Binds an abstract unix socket named after the target, reports, and keeps it listening
    // until the channel closes.
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    json result = {{"socket", attempt(fd)}};
    if (fd >= 0) {
      sockaddr_un address = abstract_address(target);
      result["bind"] = attempt(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address));
      result["listen"] = attempt(listen(fd, 4));
    }
    send_text(result.dump());
    char byte;
    while (read(kChannelFd, &byte, 1) > 0) {
    }
    return {{"held", true}};
  }
  if (probe == "connect_abstract") {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return attempt(fd);
    sockaddr_un address = abstract_address(target);
    return attempt(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address));
  }
  if (probe == "raise_loopback") {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return attempt(fd);
    ifreq request{};
    std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) return attempt(-1);
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    return attempt(ioctl(fd, SIOCSIFFLAGS, &request));
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
  if (probe == "read_host_key")
    return {{"by_serial", read_key(target)}, {"by_search", search_session("corral-host-key")}};
  if (probe == "read_tenant_key")
    return {{"by_serial", read_key(target)}, {"by_search", search_session(kTenantKey)}};
  if (probe == "add_tenant_key") {
    // Reports the key, then keeps it alive (in its session keyring) until the channel closes.
    send_text(add_tenant_key().dump());
    char byte;
    while (read(kChannelFd, &byte, 1) > 0) {
    }
    return {{"held", true}};
  }
  if (probe == "unshare_each") return unshare_each();
  if (probe == "netfilter") return netfilter();
  if (probe == "raise_namespace_limits") return raise_namespace_limits();
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

// contain() but for the namespace limits of the namespaces layer, with only the filesystem and
// capabilities steps: to show the filesystem layer's chroot holding without those limits.
void contain_without_namespace_limits(const corral::jail::ContainOptions& options) {
  using namespace corral::jail;
  if (options.layers.has(Layer::filesystem)) {
    mnt::enter_empty_root();
    nesting::confine_below_root();
  }
  if (options.layers.has(Layer::capabilities)) caps::drop_all();
}

}  // namespace

int main(int argc, char** argv) {
  std::string probe;
  long target = 0;
  bool without_namespace_limits = false;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    if (argument.starts_with("--probe=")) probe = argument.substr(8);
    if (argument.starts_with("--target=")) target = std::stol(argument.substr(9));
    if (argument == "--without-namespace-limits") without_namespace_limits = true;
  }
  auto options = corral::jail::options_from_arguments(argc, argv);
  try {
    if (without_namespace_limits)
      contain_without_namespace_limits(options);
    else
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
  // A probe that may have moved itself into namespaces of its own making ends here: the leak
  // checker of a sanitizer build would look for its threads in a /proc of a pid namespace it has
  // left, fail, and keep the probe from exiting (its report is sent already).
  if (probe == "unshare_each" || probe == "netfilter" || probe == "raise_namespace_limits")
    _exit(0);
  return 0;
}
