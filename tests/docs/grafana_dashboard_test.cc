// docs/grafana-dashboard.json (issue 27): valid JSON in the shape Grafana imports (a dashboard of
// panels, each with queries, and a datasource variable), every series and label its PromQL names
// exposed by a real corrald's GET /metrics after a few invocations, and every panel listed with
// its series in docs/observability.md, "Grafana dashboard".
#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <set>
#include <sstream>

#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;

const fs::path kSource = CORRAL_SOURCE_DIR;

// What a PromQL expression reads: each selector's metric name and the labels it matches on, and
// the labels of its `by (…)`, `without (…)`, `on (…)`, `ignoring (…)` and `group_*(…)` clauses.
struct Selector {
  std::string metric;
  std::vector<std::string> labels;
};
struct QueryNames {
  std::vector<Selector> selectors;
  std::vector<std::string> grouping_labels;
};

bool starts_identifier(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool continues_identifier(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}

// The names of a PromQL expression as Grafana stores it: Grafana variables ($tenant,
// ${datasource}, $__rate_interval) and string literals are skipped, a name followed by "(" or an
// aggregation operator is a function, not a series.
QueryNames names_in_promql(const std::string& expr) {
  static const std::set<std::string> kAggregations = {
      "sum",   "min",  "max",    "avg",     "group",        "stddev",   "stdvar",
      "count", "topk", "limitk", "bottomk", "count_values", "quantile", "limit_ratio"};
  static const std::set<std::string> kGrouping = {"by",       "without",    "on",
                                                  "ignoring", "group_left", "group_right"};
  static const std::set<std::string> kKeywords = {"and", "or", "unless", "bool", "offset", "atan2"};
  QueryNames names;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < expr.size() && std::isspace(static_cast<unsigned char>(expr[i]))) ++i;
  };
  auto skip_string = [&] {
    char quote = expr[i++];
    while (i < expr.size() && expr[i] != quote) i += expr[i] == '\\' ? 2 : 1;
    ++i;
  };
  auto identifier = [&] {
    size_t start = i;
    while (i < expr.size() && continues_identifier(expr[i])) ++i;
    return expr.substr(start, i - start);
  };
  // The label names of a "( a, b )" list or a "{ a="x", b=~"y" }" matcher.
  auto label_list = [&](char close) {
    std::vector<std::string> labels;
    ++i;
    while (i < expr.size() && expr[i] != close) {
      if (expr[i] == '"' || expr[i] == '\'' || expr[i] == '`') {
        skip_string();
      } else if (starts_identifier(expr[i])) {
        labels.push_back(identifier());
      } else {
        ++i;
      }
    }
    ++i;
    return labels;
  };
  while (i < expr.size()) {
    char c = expr[i];
    if (c == '"' || c == '\'' || c == '`') {
      skip_string();
    } else if (c == '$') {
      ++i;
      if (i < expr.size() && expr[i] == '{') {
        while (i < expr.size() && expr[i] != '}') ++i;
        ++i;
      } else {
        identifier();
      }
    } else if (c == '[') {
      while (i < expr.size() && expr[i] != ']') ++i;  // a range: durations and variables only
      ++i;
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      while (i < expr.size() && (continues_identifier(expr[i]) || expr[i] == '.')) ++i;
    } else if (c == '{') {
      // A matcher with no metric name before it: kept, so that its absence of a name fails.
      names.selectors.push_back({"", label_list('}')});
    } else if (starts_identifier(c)) {
      std::string name = identifier();
      skip_space();
      if (kGrouping.contains(name)) {
        if (i < expr.size() && expr[i] == '(') {
          for (auto& label : label_list(')')) names.grouping_labels.push_back(std::move(label));
        }
      } else if (kKeywords.contains(name) || kAggregations.contains(name) ||
                 (i < expr.size() && expr[i] == '(')) {
        // a function, an operator or an aggregation
      } else {
        Selector selector{name, {}};
        if (i < expr.size() && expr[i] == '{') selector.labels = label_list('}');
        names.selectors.push_back(std::move(selector));
      }
    } else {
      ++i;
    }
  }
  return names;
}

// What GET /metrics exposes: each sample's name with the label names it carries, and each
// family's declared type.
struct Exposition {
  std::map<std::string, std::set<std::string>> labels_of_sample;
  std::map<std::string, std::string> type_of_family;
};

Exposition parse_exposition(const std::string& text) {
  Exposition exposition;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# TYPE ")) {
      std::istringstream words(line.substr(7));
      std::string family, type;
      words >> family >> type;
      exposition.type_of_family[family] = type;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    size_t end = line.find_first_of("{ ");
    auto& labels = exposition.labels_of_sample[line.substr(0, end)];
    if (end == std::string::npos || line[end] != '{') continue;
    QueryNames matcher = names_in_promql(line.substr(end, line.find('}', end) - end + 1));
    for (const auto& label : matcher.selectors.at(0).labels) labels.insert(label);
  }
  return exposition;
}

// Every problem of one query against what corrald exposes, as "series: what is wrong".
std::vector<std::string> problems_of(const std::string& query, const Exposition& exposed) {
  std::vector<std::string> problems;
  QueryNames names = names_in_promql(query);
  if (names.selectors.empty()) problems.push_back("names no series");
  std::set<std::string> labels_in_query;
  for (const auto& selector : names.selectors) {
    auto sample = exposed.labels_of_sample.find(selector.metric);
    if (sample == exposed.labels_of_sample.end()) {
      // A histogram is exposed as NAME_bucket, NAME_sum and NAME_count, never as NAME.
      auto type = exposed.type_of_family.find(selector.metric);
      problems.push_back(selector.metric + ": " +
                         (type != exposed.type_of_family.end() && type->second == "histogram"
                              ? "a histogram: query NAME_bucket, NAME_sum or NAME_count"
                              : "not a series corrald exposes"));
      continue;
    }
    for (const auto& label : selector.labels) {
      if (!sample->second.contains(label))
        problems.push_back(selector.metric + ": has no label " + label);
    }
    labels_in_query.insert(sample->second.begin(), sample->second.end());
  }
  for (const auto& label : names.grouping_labels) {
    // Prometheus adds instance and job when it scrapes.
    if (label != "instance" && label != "job" && !labels_in_query.contains(label))
      problems.push_back("by/without (" + label + "): no series of the query has this label");
  }
  return problems;
}

json load_dashboard() {
  std::string text = read_text(kSource / "docs" / "grafana-dashboard.json");
  return json::parse(text, nullptr, false);
}

// Every panel, rows' nested panels included.
std::vector<json> panels_of(const json& dashboard) {
  std::vector<json> panels;
  for (const auto& panel : dashboard.value("panels", json::array())) {
    panels.push_back(panel);
    for (const auto& nested : panel.value("panels", json::array())) panels.push_back(nested);
  }
  return panels;
}

// Every panel's queries, each with the panel's title for messages.
std::vector<std::pair<std::string, std::string>> queries_of(const json& dashboard) {
  std::vector<std::pair<std::string, std::string>> queries;
  for (const auto& panel : panels_of(dashboard)) {
    for (const auto& target : panel.value("targets", json::array()))
      queries.emplace_back("panel \"" + panel.value("title", "") + "\"", target.value("expr", ""));
  }
  return queries;
}

TEST(GrafanaDashboardTest, TheExtractorFindsEverySeriesAndLabelOfAQuery) {
  QueryNames names = names_in_promql(
      R"(histogram_quantile(0.99, sum by (tenant, le) (rate(corral_tenant_x_bucket{tenant=~"$tenant",outcome!="ok"}[$__rate_interval]))) / ignoring(le) max(corral_y offset 5m) + time() - process_z)");
  std::vector<std::string> metrics;
  for (const auto& selector : names.selectors) metrics.push_back(selector.metric);
  EXPECT_EQ(metrics, (std::vector<std::string>{"corral_tenant_x_bucket", "corral_y", "process_z"}));
  EXPECT_EQ(names.selectors.at(0).labels, (std::vector<std::string>{"tenant", "outcome"}));
  EXPECT_EQ(names.grouping_labels, (std::vector<std::string>{"tenant", "le", "le"}));

  Exposition exposed = parse_exposition(
      "# TYPE h histogram\nh_bucket{tenant=\"a\",le=\"0.5\"} 1\nh_sum{tenant=\"a\"} 1\n"
      "h_count{tenant=\"a\"} 1\nc_total{outcome=\"ok\"} 3\n");
  EXPECT_TRUE(problems_of("sum by (le) (rate(h_bucket{tenant=\"x\"}[5m]))", exposed).empty());
  EXPECT_EQ(
      problems_of("rate(h[5m])", exposed),
      (std::vector<std::string>{"h: a histogram: query NAME_bucket, NAME_sum or NAME_count"}));
  EXPECT_EQ(problems_of("c_total{tenant=\"x\"}", exposed),
            (std::vector<std::string>{"c_total: has no label tenant"}));
  EXPECT_EQ(
      problems_of("sum by (script) (c_total)", exposed),
      (std::vector<std::string>{"by/without (script): no series of the query has this label"}));
  EXPECT_EQ(problems_of("time()", exposed), (std::vector<std::string>{"names no series"}));
}

TEST(GrafanaDashboardTest, IsADashboardGrafanaImports) {
  json dashboard = load_dashboard();
  ASSERT_TRUE(dashboard.is_object()) << "docs/grafana-dashboard.json is not valid JSON";
  EXPECT_TRUE(dashboard["title"].is_string());
  EXPECT_TRUE(dashboard["uid"].is_string());
  EXPECT_TRUE(dashboard["schemaVersion"].is_number_integer());
  ASSERT_TRUE(dashboard["panels"].is_array());

  // The datasource is a variable, so the dashboard imports into any Grafana with a Prometheus.
  std::string datasource;
  for (const auto& variable : dashboard["templating"]["list"]) {
    if (variable.value("type", "") == "datasource" && variable.value("query", "") == "prometheus")
      datasource = "${" + variable.value("name", "") + "}";
  }
  ASSERT_FALSE(datasource.empty()) << "no datasource variable of type prometheus in templating";

  std::set<int64_t> ids;
  size_t with_queries = 0;
  for (const auto& panel : panels_of(dashboard)) {
    std::string title = panel.value("title", "");
    EXPECT_FALSE(title.empty()) << panel.dump();
    ASSERT_TRUE(panel["id"].is_number_integer()) << title;
    EXPECT_TRUE(ids.insert(panel["id"].get<int64_t>()).second) << "id used twice: " << title;
    for (const char* place : {"x", "y", "w", "h"})
      EXPECT_TRUE(panel["gridPos"][place].is_number_integer()) << title << " gridPos." << place;
    if (panel.value("type", "") == "row") continue;
    EXPECT_EQ(panel["datasource"]["uid"], datasource) << title;
    ASSERT_TRUE(panel["targets"].is_array() && !panel["targets"].empty()) << title;
    std::set<std::string> ref_ids;
    for (const auto& target : panel["targets"]) {
      EXPECT_FALSE(target.value("expr", "").empty()) << title;
      EXPECT_TRUE(ref_ids.insert(target.value("refId", "")).second) << title << ": refId twice";
      EXPECT_EQ(target["datasource"]["uid"], datasource) << title;
    }
    ++with_queries;
  }
  EXPECT_GE(with_queries, 20u);
}

TEST(GrafanaDashboardTest, EveryQueryNamesSeriesAndLabelsARealCorraldExposes) {
  json dashboard = load_dashboard();
  ASSERT_TRUE(dashboard.is_object());
  CorraldProcess corrald;
  ApiClient api(corrald);
  // Per-tenant and per-script series of a tenant by name, for ok and failed runs, and a
  // playground run's.
  auto tokens = api.tenant_with_tokens("acme");
  int64_t version = api.publish(tokens["publisher"], "acme", "orders",
                                "function handle(input) if input.fail then error('no') end "
                                "local n = 0 for i = 1, 3000 do n = n + i end return {n = n} end");
  api.approve(tokens["reviewer"], "acme", "orders", version);
  api.set_alias(tokens["reviewer"], "acme", "orders", "live", version);
  for (bool fail : {false, false, true}) {
    Answer run = api.post(tokens["invoker"], "/v1/tenants/acme/scripts/orders/invoke",
                          {{"input", {{"fail", fail}}}});
    ASSERT_EQ(run.status, fail ? 422 : 200) << run;
  }
  Answer playground =
      api.post(api.admin(), "/v1/run", {{"source", kDoubler}, {"input", {{"n", 2}}}});
  ASSERT_EQ(playground.status, 200) << playground;

  HttpClient client(corrald.host(), corrald.port());
  Exposition exposed = parse_exposition(client.request(http::verb::get, "/metrics").body());
  ASSERT_TRUE(exposed.labels_of_sample.contains("corral_script_invocations_total"));

  auto queries = queries_of(dashboard);
  ASSERT_FALSE(queries.empty());
  for (const auto& variable : dashboard["templating"]["list"]) {
    if (variable.value("type", "") != "query") continue;
    // label_values(SELECTOR, LABEL): the selector is a query, and its series must carry LABEL.
    std::string query = variable.value("query", "");
    ASSERT_TRUE(query.starts_with("label_values(") && query.ends_with(")")) << query;
    std::string inside = query.substr(13, query.size() - 14);
    size_t comma = inside.rfind(',');
    ASSERT_NE(comma, std::string::npos) << query;
    std::string label = inside.substr(comma + 1);
    std::erase_if(label, [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
    queries.emplace_back("variable $" + variable.value("name", ""),
                         "sum by (" + label + ") (" + inside.substr(0, comma) + ")");
  }
  for (const auto& [where, query] : queries) {
    for (const auto& problem : problems_of(query, exposed))
      ADD_FAILURE() << where << ": " << problem << "\n  in " << query;
  }
}

TEST(GrafanaDashboardTest, ObservabilityMdListsEveryPanelWithItsSeries) {
  json dashboard = load_dashboard();
  ASSERT_TRUE(dashboard.is_object());
  std::string doc = read_text(kSource / "docs" / "observability.md");
  size_t start = doc.find("\n## Grafana dashboard\n");
  ASSERT_NE(start, std::string::npos) << "docs/observability.md has no \"## Grafana dashboard\"";
  size_t end = doc.find("\n## ", start + 1);
  std::string section = doc.substr(start, end == std::string::npos ? end : end - start);
  // One table row a panel: "| TITLE | `series`, … |".
  std::map<std::string, std::string> row_of_title;
  std::istringstream lines(section);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("| ")) continue;
    size_t bar = line.find(" |", 2);
    if (bar != std::string::npos) row_of_title[line.substr(2, bar - 2)] = line;
  }
  for (const auto& panel : panels_of(dashboard)) {
    std::string title = panel.value("title", "");
    if (panel.value("type", "") == "row") continue;
    auto row = row_of_title.find(title);
    if (row == row_of_title.end()) {
      ADD_FAILURE() << "panel \"" << title << "\" has no row \"| " << title << " |\"";
      continue;
    }
    for (const auto& target : panel.value("targets", json::array())) {
      for (const auto& selector : names_in_promql(target.value("expr", "")).selectors) {
        EXPECT_NE(row->second.find("`" + selector.metric + "`"), std::string::npos)
            << "panel \"" << title << "\": " << selector.metric << " not in its row";
      }
    }
  }
}

}  // namespace
}  // namespace corral::testing
