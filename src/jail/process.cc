// Step 6: the worker keeps nothing of where it came from: one descriptor (the channel), no
// environment, no controlling terminal. Not dumpable, so no core file and no ptrace attach from
// a same-uid process. That it dies with its supervisor is set before its exec (spawn.cc), which
// this step, run after the exec, would be too late for.
#include <sys/prctl.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "jail/steps.h"

namespace corral::jail::process {
namespace {

constexpr const char* kStep = "process";

void close_all_but(int channel_fd) {
  if (channel_fd > 0 && close_range(0, static_cast<unsigned>(channel_fd - 1), 0) != 0) {
    fail_step(kStep, "closing descriptors below the channel");
  }
  if (close_range(static_cast<unsigned>(channel_fd + 1), UINT_MAX, 0) != 0) {
    fail_step(kStep, "closing descriptors above the channel");
  }
}

void leave_session() {
  // In a new pid namespace the worker is pid 1 but not a process-group leader, so this works;
  // outside one it fails only if already a leader, which is detached enough.
  if (setsid() < 0 && getpgrp() != getpid()) fail_step(kStep, "setsid");
}

void make_undumpable() {
  if (prctl(PR_SET_DUMPABLE, 0) != 0) fail_step(kStep, "PR_SET_DUMPABLE");
}

}  // namespace

void detach(int channel_fd) {
  close_all_but(channel_fd);
  if (clearenv() != 0) fail_step(kStep, "clearing the environment");
  leave_session();
  make_undumpable();
}

}  // namespace corral::jail::process
