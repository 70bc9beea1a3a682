// process_* as the Prometheus client libraries name them, read from /proc/self when /metrics is
// rendered, and corral_build_info.
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "metrics/build_commit.h"
#include "metrics/metrics.h"

namespace corral::metrics {

namespace {

// The fields of /proc/self/stat after the command name, which is in parentheses and may hold
// spaces: [0] is field 3 of proc(5), the state.
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto end_of_name = text.rfind(')');
  if (end_of_name == std::string::npos) return {};
  std::istringstream rest(text.substr(end_of_name + 1));
  std::vector<std::string> fields;
  for (std::string field; rest >> field;) fields.push_back(field);
  return fields;
}

double field(const std::vector<std::string>& fields, size_t proc5_number) {
  size_t index = proc5_number - 3;
  if (index >= fields.size()) return 0;
  try {
    return std::stod(fields[index]);
  } catch (const std::exception&) {
    return 0;
  }
}

// Seconds since the epoch at which the machine booted (btime in /proc/stat).
double boot_time() {
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("btime ", 0) == 0) return std::stod(line.substr(6));
  }
  return 0;
}

size_t open_descriptors() {
  std::error_code ignored;
  size_t count = 0;
  for (std::filesystem::directory_iterator entry("/proc/self/fd", ignored), end;
       !ignored && entry != end; entry.increment(ignored)) {
    ++count;
  }
  // The listing's own descriptor was counted too.
  return count > 0 ? count - 1 : 0;
}

}  // namespace

void render_process_metrics(std::ostream& out) {
  auto fields = stat_fields();
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  if (ticks <= 0) ticks = 100;
  double cpu_seconds = (field(fields, 14) + field(fields, 15)) / ticks;  // utime + stime
  double start_seconds = boot_time() + field(fields, 22) / ticks;        // starttime
  rlimit descriptors{};
  getrlimit(RLIMIT_NOFILE, &descriptors);
  out << "# HELP process_cpu_seconds_total User and system CPU time corrald has spent (its "
         "workers not included).\n"
      << "# TYPE process_cpu_seconds_total counter\n"
      << "process_cpu_seconds_total " << cpu_seconds << "\n"
      << "# HELP process_resident_memory_bytes Resident memory of corrald (its workers not "
         "included).\n"
      << "# TYPE process_resident_memory_bytes gauge\n"
      << "process_resident_memory_bytes " << static_cast<uint64_t>(field(fields, 24) * page) << "\n"
      << "# HELP process_virtual_memory_bytes Virtual memory of corrald.\n"
      << "# TYPE process_virtual_memory_bytes gauge\n"
      << "process_virtual_memory_bytes " << static_cast<uint64_t>(field(fields, 23)) << "\n"
      << "# HELP process_open_fds File descriptors corrald has open.\n"
      << "# TYPE process_open_fds gauge\n"
      << "process_open_fds " << open_descriptors() << "\n"
      << "# HELP process_max_fds The most file descriptors corrald may open (RLIMIT_NOFILE).\n"
      << "# TYPE process_max_fds gauge\n"
      << "process_max_fds " << static_cast<uint64_t>(descriptors.rlim_cur) << "\n"
      << "# HELP process_start_time_seconds When corrald started, in seconds since the epoch.\n"
      << "# TYPE process_start_time_seconds gauge\n"
      << "process_start_time_seconds " << static_cast<uint64_t>(start_seconds) << "\n";
}

void render_build_info(std::ostream& out) {
  out << "# HELP corral_build_info The corrald build: its version and the git commit it was "
         "built from (\"unknown\" outside a git checkout). Always 1.\n"
      << "# TYPE corral_build_info gauge\n"
      << "corral_build_info{version=\"" << kBuildVersion << "\",commit=\"" << kBuildCommit
      << "\"} 1\n";
}

}  // namespace corral::metrics
