// The per-tenant and per-script series of /metrics (metrics/attributed_series.h): what each
// carries, and that their label set stays bounded, and stable, under 10,000 tenants and scripts.
// Driven through the registry directly; tests/api/observability_test.cc does the same through a
// real corrald with a handful of tenants.
#include "metrics/attributed_series.h"

#include <gtest/gtest.h>

#include <ctime>
#include <set>
#include <sstream>
#include <string>

#include "metrics/metrics.h"

namespace {

using corral::Outcome;
using corral::Stats;
using corral::metrics::AttributedSeries;
using corral::metrics::Registry;

// The distinct label sets (everything between the braces but the outcome) of `family` in an
// exposition.
std::set<std::string> label_sets(const std::string& text, const std::string& family) {
  std::set<std::string> sets;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(family + "{")) continue;
    std::string labels = line.substr(family.size() + 1, line.find('}') - family.size() - 1);
    sets.insert(labels.substr(0, labels.find(",outcome=")));
  }
  return sets;
}

size_t lines_of(const std::string& text, const std::string& prefix) {
  size_t count = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) count += line.starts_with(prefix);
  return count;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(AttributedSeries, CarriesOutcomesLatencyFuelCpuAndMemoryPerTenantAndScript) {
  Registry registry;
  Stats stats{.fuel_used = 1200, .memory_peak_bytes = 40000, .wall_ms = 2, .cpu_ms = 1.5};
  registry.attribute({"acme", "double"}, Outcome::ok, 0.002, &stats);
  stats.memory_peak_bytes = 10000;
  registry.attribute({"acme", "double"}, Outcome::ok, 0.004, &stats);
  registry.attribute({"acme", "double"}, Outcome::rejected, std::nullopt, nullptr);
  registry.attribute({"acme", ""}, Outcome::script_error, 0.3, &stats);  // a playground run
  std::string text = registry.render();
  EXPECT_TRUE(has_line(text, R"(corral_tenant_invocations_total{tenant="acme",outcome="ok"} 2)"))
      << text;
  EXPECT_TRUE(
      has_line(text, R"(corral_tenant_invocations_total{tenant="acme",outcome="rejected"} 1)"));
  EXPECT_TRUE(
      has_line(text, R"(corral_tenant_invocations_total{tenant="acme",outcome="script_error"} 1)"));
  EXPECT_TRUE(has_line(
      text, R"(corral_script_invocations_total{tenant="acme",script="double",outcome="ok"} 2)"));
  EXPECT_TRUE(has_line(
      text,
      R"(corral_script_invocations_total{tenant="acme",script="double",outcome="script_error"} 0)"));
  // A refusal never ran: counted, but not in the histogram.
  EXPECT_TRUE(has_line(
      text, R"(corral_script_invocation_duration_seconds_count{tenant="acme",script="double"} 2)"));
  EXPECT_TRUE(has_line(
      text,
      R"(corral_script_invocation_duration_seconds_bucket{tenant="acme",script="double",le="0.0025"} 1)"));
  EXPECT_TRUE(
      has_line(text, R"(corral_tenant_invocation_duration_seconds_count{tenant="acme"} 3)"));
  EXPECT_TRUE(has_line(text, R"(corral_script_fuel_total{tenant="acme",script="double"} 2400)"));
  EXPECT_TRUE(has_line(text, R"(corral_tenant_fuel_total{tenant="acme"} 3600)"));
  EXPECT_TRUE(
      has_line(text, R"(corral_script_cpu_seconds_total{tenant="acme",script="double"} 0.003)"));
  EXPECT_TRUE(has_line(
      text, R"(corral_script_memory_peak_bytes_total{tenant="acme",script="double"} 50000)"));
  EXPECT_TRUE(has_line(
      text, R"(corral_script_memory_peak_bytes_max{tenant="acme",script="double"} 40000)"));
  // The rest, with no invocation, is one series of zeros.
  EXPECT_TRUE(has_line(text, R"(corral_tenant_invocations_total{tenant="other",outcome="ok"} 0)"));
  EXPECT_TRUE(has_line(
      text, R"(corral_script_invocations_total{tenant="other",script="other",outcome="ok"} 0)"));
}

// The issue's evidence: 10,000 tenants, each with a script, each invoked; and a few busy ones
// among them. The label sets stay within --metrics-top (+ "other"), every invocation is counted
// somewhere, and the busy ones have series of their own.
TEST(AttributedSeries, TenThousandTenantsAndScriptsStayWithinTheBound) {
  constexpr size_t kTop = 100;
  constexpr int kTenants = 10'000;
  Registry registry;
  registry.limit_attributed_series(kTop);
  Stats stats{.fuel_used = 10, .memory_peak_bytes = 1000, .wall_ms = 1, .cpu_ms = 0.5};
  uint64_t invocations = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kTenants; ++i) {
      std::string tenant = "tenant-" + std::to_string(i);
      registry.attribute({tenant, "script-" + std::to_string(i)}, Outcome::ok, 0.001, &stats);
      ++invocations;
      // Three tenants far busier than the rest, each with a busy script.
      if (i % 1000 == 999 && i < 3000) {
        for (int busy = 0; busy < 30; ++busy) {
          registry.attribute({tenant, "busy"}, Outcome::ok, 0.001, &stats);
          ++invocations;
        }
      }
    }
  }
  std::string text = registry.render();
  auto tenants = label_sets(text, "corral_tenant_invocations_total");
  auto scripts = label_sets(text, "corral_script_invocations_total");
  std::cout << "tenant label sets: " << tenants.size() << ", script label sets: " << scripts.size()
            << ", lines: " << lines_of(text, "corral_tenant_") << " per-tenant and "
            << lines_of(text, "corral_script_") << " per-script, of " << lines_of(text, "")
            << " in all\n";
  EXPECT_LE(tenants.size(), kTop + 1);
  EXPECT_LE(scripts.size(), kTop + 1);
  EXPECT_TRUE(tenants.contains(R"(tenant="other")"));
  EXPECT_TRUE(scripts.contains(R"(tenant="other",script="other")"));
  // Every series line of both families: 7 outcomes, 17 of the histogram, 4 of resources.
  EXPECT_LE(lines_of(text, "corral_tenant_"), (kTop + 1) * (7 + 17 + 4));
  EXPECT_LE(lines_of(text, "corral_script_"), (kTop + 1) * (7 + 17 + 4));
  // The busy ones proved busy after the first half was given away, and got series.
  for (int busy : {999, 1999, 2999}) {
    std::string tenant = "tenant-" + std::to_string(busy);
    EXPECT_TRUE(tenants.contains("tenant=\"" + tenant + "\"")) << tenant;
    EXPECT_TRUE(scripts.contains("tenant=\"" + tenant + "\",script=\"busy\"")) << tenant;
  }
  // Nothing is lost to the bound: the series add up to every invocation.
  double total = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("corral_tenant_invocations_total{"))
      total += std::stod(line.substr(line.rfind(' ') + 1));
  }
  EXPECT_EQ(total, static_cast<double>(invocations));
}

// A series given is kept: later, busier keys do not take it, so no series flaps between a name
// and "other".
TEST(AttributedSeries, ASeriesOnceGivenIsKept) {
  AttributedSeries series(4, 3);
  auto& first = series.figures_for("a");  // the first half (2) at once
  series.figures_for("b");
  EXPECT_EQ(series.labelled(), 2u);
  // One invocation is not busy: "c" is counted under other.
  EXPECT_EQ(&series.figures_for("c"), &series.figures_for("unseen-1"));
  // A third of "d" proves it busy.
  series.figures_for("d");
  series.figures_for("d");
  auto& busy = series.figures_for("d");
  EXPECT_EQ(series.labelled(), 3u);
  EXPECT_EQ(&series.figures_for("d"), &busy);
  for (int i = 0; i < 1000; ++i) series.figures_for("e");
  EXPECT_EQ(series.labelled(), 4u);
  // Full: a new busy key stays under other, and "a", idle since, keeps its series.
  for (int i = 0; i < 1000; ++i) series.figures_for("f");
  EXPECT_EQ(series.labelled(), 4u);
  EXPECT_EQ(&series.figures_for("a"), &first);
  EXPECT_EQ(&series.figures_for("f"), &series.figures_for("unseen-2"));
}

// A flood of distinct keys inherits counts in the space-saving counter but guarantees none, so it
// takes none of the series kept for the busy.
TEST(AttributedSeries, AFloodOfOneOffKeysTakesNoSeriesMeantForTheBusy) {
  AttributedSeries series(10, 20);
  for (int i = 0; i < 100'000; ++i) series.figures_for("one-off-" + std::to_string(i));
  EXPECT_EQ(series.labelled(), 5u);  // the first half, at once
  for (int i = 0; i < 20; ++i) series.figures_for("steady");
  EXPECT_EQ(series.labelled(), 6u);
}

TEST(AttributedSeries, NoSeriesAtAllWithALimitOfZero) {
  Registry registry;
  registry.limit_attributed_series(0);
  registry.attribute({"acme", "double"}, Outcome::ok, 0.001, nullptr);
  std::string text = registry.render();
  EXPECT_EQ(label_sets(text, "corral_tenant_invocations_total"),
            std::set<std::string>{R"(tenant="other")"});
  EXPECT_TRUE(has_line(text, R"(corral_tenant_invocations_total{tenant="other",outcome="ok"} 1)"));
}

TEST(ProcessMetrics, ReadFromProcSelf) {
  // The kernel counts CPU time in ticks (10 ms): a test process that has not used one yet reads
  // 0 s, so use a few first.
  std::clock_t began = std::clock();
  volatile uint64_t spin = 0;
  while (std::clock() - began < CLOCKS_PER_SEC / 20) spin = spin + 1;
  Registry registry;
  std::string text = registry.render();
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_open_fds ", "process_start_time_seconds "}) {
    auto at = text.find(std::string("\n") + name);
    ASSERT_NE(at, std::string::npos) << name;
    double value = std::stod(text.substr(at + 1 + std::string(name).size()));
    EXPECT_GT(value, 0) << name;
  }
  auto start = text.find("\nprocess_start_time_seconds ");
  double started = std::stod(text.substr(start + 28));
  double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(started, now + 1);
  EXPECT_GT(started, now - 3600) << "this test process started within the hour";
  EXPECT_NE(text.find("\ncorral_build_info{version=\"0.1.0\",commit=\""), std::string::npos)
      << text.substr(text.find("corral_build_info"));
}

}  // namespace
