// Step 4: kernel resource limits, the layer that holds even where cgroups are not delegated.
#include <sys/resource.h>

#include "jail/steps.h"

namespace corral::jail::rlimits {
namespace {

void set_limit(int resource, const char* name, rlim_t value) {
  rlimit limit{value, value};
  if (setrlimit(resource, &limit) != 0) fail_step("rlimits", std::string("setting ") + name);
}

}  // namespace

void apply(const Ceilings& ceilings) {
#if !defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow address space, so sanitizer builds skip it.
  set_limit(RLIMIT_AS, "RLIMIT_AS", static_cast<rlim_t>(ceilings.address_space_bytes));
#endif
  set_limit(RLIMIT_CPU, "RLIMIT_CPU", static_cast<rlim_t>(ceilings.cpu_seconds));
  set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", 0);
  set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", 0);
  set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", kDescriptorLimit);
  set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0);
  set_limit(RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", 0);
  set_limit(RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE", 0);
}

}  // namespace corral::jail::rlimits
