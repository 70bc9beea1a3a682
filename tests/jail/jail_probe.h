// What jail_probe (the test's stand-in for a jailed worker) tells the tests besides its report.
#pragma once

namespace corral::jail {

// The exit status of a probe whose int 0x80 the kernel refused with SIGSEGV, as a kernel without
// i386 emulation does: a status of its own tells this apart from a crash, also under
// AddressSanitizer, whose own SIGSEGV handler would otherwise abort with status 1.
inline constexpr int kProbeExitKernelRefusedI386 = 86;

}  // namespace corral::jail
