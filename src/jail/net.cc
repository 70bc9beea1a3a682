// Step 3: a new network namespace starts with one interface, loopback, and it is down. The
// step is to leave it so, and to check that nothing came up: with no interface up there is no
// route anywhere, not even to 127.0.0.1 (which would reach only this namespace anyway).
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "jail/steps.h"

namespace corral::jail::net {

void keep_interfaces_down() {
  struct if_nameindex* interfaces = if_nameindex();
  if (interfaces == nullptr) fail_step("network", "listing network interfaces");
  int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    if_freenameindex(interfaces);
    fail_step("network", "opening a socket to read interface flags");
  }
  std::string up;
  for (auto* each = interfaces; each->if_index != 0; ++each) {
    ifreq request{};
    std::strncpy(request.ifr_name, each->if_name, IFNAMSIZ - 1);
    if (ioctl(probe, SIOCGIFFLAGS, &request) == 0 && (request.ifr_flags & IFF_UP))
      up += std::string(" ") + each->if_name;
  }
  close(probe);
  if_freenameindex(interfaces);
  if (!up.empty()) {
    errno = 0;
    fail_step("network", "interfaces are up in the worker's network namespace:" + up);
  }
}

}  // namespace corral::jail::net
