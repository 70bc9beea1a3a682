// Unpredictable bytes without a system call per use: invocation ids and math.random's seeds are
// needed once per invocation, and a getrandom call costs about a microsecond on a virtual machine.
#pragma once

#include <cstddef>

namespace corral {

// Fills `bytes` from a ChaCha20 stream (libsodium) that each thread keys once from the kernel and
// rekeys from its own output on every call, so that what one call returned tells nothing about
// earlier or later calls. A child made by fork() keys its own stream rather than repeat its
// parent's.
void fill_unpredictable(unsigned char* bytes, size_t size);

}  // namespace corral
