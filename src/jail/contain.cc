// The worker's side of the jail, in order. Step 1 (namespaces and the id mapping) and step 5
// (the cgroup) were done by the supervisor before the worker binary started (spawn.cc).
//
//   1  namespaces    nesting::forbid_new_namespaces  (needs /proc: before the empty root)
//                    landlock::scope_sockets_and_signals  (in the shared network namespace)
//   2  filesystem    mnt::enter_empty_root
//                    nesting::confine_below_root
//   3  network       net::keep_interfaces_down
//   4  rlimits       rlimits::apply
//   6  process       keyring::join_own_session
//                    process::detach
//   7  capabilities  caps::drop_all
//   8  seccomp       seccomp::install_allowlist   (lock_down, after the runtime is ready)
#include <seccomp.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "jail/steps.h"

namespace corral::jail {

void fail_step(const std::string& step, const std::string& what) {
  int error = errno;
  std::string message = "jail step '" + step + "': " + what + " failed";
  if (error != 0) message += std::string(": ") + std::strerror(error);
  throw SystemCallFailure(message, error);
}

void contain(const ContainOptions& options) {
  const LayerSet& layers = options.layers;
  // Without its own namespaces, these steps would act on the host: pivot_root its root.
  for (Layer layer : {Layer::filesystem, Layer::network}) {
    if (layers.has(layer) && !layers.has(Layer::namespaces)) {
      errno = 0;
      fail_step(std::string(to_string(layer)),
                "refusing to run without the namespaces layer (it would change the host)");
    }
  }
  if (layers.has(Layer::namespaces)) {
    nesting::forbid_new_namespaces();
    if (options.shared_network) landlock::scope_sockets_and_signals();
  }
  if (layers.has(Layer::filesystem)) {
    mnt::enter_empty_root();
    nesting::confine_below_root();
  }
  if (layers.has(Layer::network)) net::keep_interfaces_down();
  if (layers.has(Layer::rlimits)) rlimits::apply(options.ceilings);
  if (layers.has(Layer::process)) {
    keyring::join_own_session();
    process::detach(kChannelFd);
  }
  if (layers.has(Layer::capabilities)) caps::drop_all();
}

void lock_down(const ContainOptions& options, ViolationReporter reporter) {
  if (options.layers.has(Layer::seccomp)) seccomp::install_allowlist(kChannelFd, reporter);
}

namespace {

constexpr std::string_view kLayersFlag = "--jail-layers=";
constexpr std::string_view kAddressSpaceFlag = "--jail-as=";
constexpr std::string_view kCpuFlag = "--jail-cpu=";
constexpr std::string_view kSharedNetworkFlag = "--jail-shared-network";

int64_t parse_number(std::string_view text, std::string_view flag) {
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value <= 0) {
    throw std::invalid_argument(std::string(flag) + " needs a positive number, not '" +
                                std::string(text) + "'");
  }
  return value;
}

}  // namespace

std::vector<std::string> to_arguments(const ContainOptions& options) {
  std::vector<std::string> arguments = {
      std::string(kLayersFlag) + options.layers.to_string(),
      std::string(kAddressSpaceFlag) + std::to_string(options.ceilings.address_space_bytes),
      std::string(kCpuFlag) + std::to_string(options.ceilings.cpu_seconds)};
  if (options.shared_network) arguments.emplace_back(kSharedNetworkFlag);
  return arguments;
}

ContainOptions options_from_arguments(int argc, char** argv) {
  ContainOptions options;
  options.layers = LayerSet::none();
  for (int i = 1; i < argc; ++i) {
    std::string_view argument(argv[i]);
    if (argument.starts_with(kLayersFlag)) {
      options.layers = LayerSet::parse(argument.substr(kLayersFlag.size()));
    } else if (argument.starts_with(kAddressSpaceFlag)) {
      options.ceilings.address_space_bytes =
          parse_number(argument.substr(kAddressSpaceFlag.size()), kAddressSpaceFlag);
    } else if (argument.starts_with(kCpuFlag)) {
      options.ceilings.cpu_seconds = parse_number(argument.substr(kCpuFlag.size()), kCpuFlag);
    } else if (argument == kSharedNetworkFlag) {
      options.shared_network = true;
    }
  }
  return options;
}

std::string syscall_name(long number) {
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, static_cast<int>(number));
  if (name == nullptr) return "syscall " + std::to_string(number);
  std::string result(name);
  free(name);
  return result;
}

}  // namespace corral::jail
