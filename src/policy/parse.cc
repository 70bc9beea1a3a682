// Reading a policy document: every value is checked where it stands, every problem is collected
// with its path and position, and each section is applied over what it overrides (a tenant's over
// the resolved defaults, the defaults over the built-in values), which is the whole merge rule.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <set>

#include "policy/document_bounds.h"
#include "policy/policy.h"

namespace corral::policy {

namespace {

using Keys = std::vector<std::string_view>;

// A node of the document and where it sits. key is the node of its key in the parent mapping (or
// empty), whose position stands in for the value's when the value has none (an empty value).
struct Place {
  std::string path;
  YAML::Node node;
  YAML::Node key;

  Place child(std::string_view name, YAML::Node value, YAML::Node key_node) const {
    return {path.empty() ? std::string(name) : path + "." + std::string(name), value, key_node};
  }
  Place item(size_t index, YAML::Node value) const {
    return {path + "[" + std::to_string(index) + "]", value, YAML::Node()};
  }
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

std::string join(const Keys& keys) {
  std::string out;
  for (auto key : keys) out += (out.empty() ? "" : ", ") + std::string(key);
  return out;
}

// Optimal string alignment distance: edits, with a swap of neighbours counting as one.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The known key a misspelt one most likely meant: a couple of typos away, or the known key with
// its unit left off ("memory" for "memory_bytes").
std::optional<std::string_view> nearest(std::string_view given, const Keys& known) {
  std::optional<std::string_view> best;
  size_t best_distance = given.size() <= 3 ? 1 : 2;
  for (auto key : known) {
    if (key.starts_with(std::string(given) + "_")) return key;
    size_t distance = edit_distance(given, key);
    if (distance <= best_distance && (!best || distance < edit_distance(given, *best))) {
      best = key;
    }
  }
  return best;
}

std::string human_bytes(int64_t bytes) {
  if (bytes >= (1ll << 30) && bytes % (1ll << 30) == 0) return std::to_string(bytes >> 30) + " GiB";
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= (1 << 10) && bytes % (1 << 10) == 0) return std::to_string(bytes >> 10) + " KiB";
  return "";
}

std::string show_integer(int64_t value, bool bytes) {
  std::string text = std::to_string(value);
  std::string human = bytes ? human_bytes(value) : "";
  return human.empty() ? text : text + " (" + human + ")";
}

// What a node is, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  if (!node || node.IsNull()) return "nothing (an empty value)";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  if (node.Tag() == "!") return "the quoted string " + quoted(node.Scalar());
  return quoted(node.Scalar());
}

// Thrown to stop reading a document that has given enough problems, or that expands (through
// YAML aliases) into more values than its size could hold written out.
struct StopReading {
  std::string why;
};

constexpr size_t kMaxValues = 1'000'000;

class Reader {
 public:
  std::vector<Problem> problems;
  size_t values_read = 0;

  // Counts a value read, so that a short document cannot make the reader do unbounded work.
  void count_value() {
    if (++values_read > kMaxValues) {
      throw StopReading{"the document expands to more than " + std::to_string(kMaxValues) +
                        " values (through YAML aliases?); write it out without them"};
    }
  }

  void report(const Place& place, std::string message) {
    // An empty value is placed where the text after it starts, often the next line.
    bool empty = !place.node || place.node.IsNull();
    YAML::Mark mark = empty ? YAML::Mark::null_mark() : place.node.Mark();
    if ((empty || mark.is_null()) && place.key) mark = place.key.Mark();
    report_at(place.path, mark, std::move(message));
  }
  void report_at(std::string path, const YAML::Mark& mark, std::string message) {
    Problem problem{std::move(path), 0, 0, std::move(message)};
    if (!mark.is_null()) {
      problem.line = mark.line + 1;
      problem.column = mark.column + 1;
    }
    problems.push_back(std::move(problem));
    if (problems.size() >= kMaxProblems)
      throw StopReading{"reading stopped after " + std::to_string(kMaxProblems) +
                        " problems; fix these first"};
  }

  // Calls visit(key, place) for each entry of a mapping whose key is one of `known`, and reports
  // every other key, duplicates and a node that is not a mapping. An empty value counts as an
  // empty mapping: a section whose entries are all commented out is still a valid section.
  void each_entry(const Place& place, const Keys& known,
                  const std::function<void(std::string_view, const Place&)>& visit) {
    if (!place.node || place.node.IsNull()) return;
    if (!place.node.IsMap()) {
      report(place, "expected a mapping of " + join(known) + ", got " + describe(place.node));
      return;
    }
    each_pair(place, [&](const std::string& key, const Place& entry) {
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string message = "unknown key " + quoted(key);
        if (auto suggestion = nearest(key, known))
          message += "; did you mean " + quoted(*suggestion) + "?";
        message += " The keys allowed " +
                   (place.path.empty() ? std::string("at the top") : "in " + place.path) +
                   " are: " + join(known);
        report_at(entry.path, entry.key.Mark(), message);
        return;
      }
      visit(key, entry);
    });
  }

  // Calls visit for each entry of a mapping (place.node must be one) whose key is a string given
  // once; reports other keys.
  void each_pair(const Place& place,
                 const std::function<void(const std::string&, const Place&)>& visit) {
    std::map<std::string, YAML::Mark> seen;
    for (auto it = place.node.begin(); it != place.node.end(); ++it) {
      count_value();
      YAML::Node key = it->first;
      if (!key.IsScalar()) {
        report_at(place.path, key.Mark(), "a key must be a plain name, not " + describe(key));
        continue;
      }
      Place entry = place.child(key.Scalar(), it->second, key);
      auto [previous, inserted] = seen.emplace(key.Scalar(), key.Mark());
      if (!inserted) {
        report_at(entry.path, key.Mark(),
                  "the key " + quoted(key.Scalar()) + " is given twice (first on line " +
                      std::to_string(previous->second.line + 1) + "); keep one");
        continue;
      }
      visit(key.Scalar(), entry);
    }
  }

  std::optional<int64_t> integer(const Place& place, int64_t min, int64_t max, bool bytes) {
    const std::string allowed =
        "a whole number from " + show_integer(min, bytes) + " to " + show_integer(max, bytes);
    const YAML::Node& node = place.node;
    if (!node || !node.IsScalar() || node.Tag() == "!") {
      report(place, "expected " + allowed + ", got " + describe(node) +
                        (node && node.IsScalar() ? "; write the number without quotes" : ""));
      return std::nullopt;
    }
    // Digits may be grouped with '_' (50_000_000), as YAML 1.1 allowed.
    std::string digits;
    const std::string& text = node.Scalar();
    bool well_formed = !text.empty();
    for (size_t i = 0; i < text.size(); ++i) {
      char c = text[i];
      if (c == '_' && i > 0 && i + 1 < text.size() && is_digit(text[i - 1]) &&
          is_digit(text[i + 1])) {
        continue;
      }
      if (c == '-' && i == 0) {
        digits.push_back(c);
        continue;
      }
      if (!is_digit(c)) well_formed = false;
      digits.push_back(c);
    }
    int64_t value = 0;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (!well_formed || end != digits.data() + digits.size() ||
        error == std::errc::invalid_argument) {
      report(place, "expected " + allowed + ", got " + describe(node));
      return std::nullopt;
    }
    if (error == std::errc::result_out_of_range || value < min || value > max) {
      report(place, text + " is out of range; allowed is " + allowed);
      return std::nullopt;
    }
    return value;
  }

  // A number above `above` (excluded) and up to max.
  std::optional<double> number(const Place& place, double above, double max) {
    auto show = [](double value) {
      if (value == std::floor(value) && std::abs(value) < 1e15)
        return std::to_string(static_cast<int64_t>(value));
      char buffer[32];
      auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
      return std::string(buffer, end);
    };
    const std::string allowed =
        "a number greater than " + show(above) + " and at most " + show(max);
    const YAML::Node& node = place.node;
    if (!node || !node.IsScalar() || node.Tag() == "!") {
      report(place, "expected " + allowed + ", got " + describe(node));
      return std::nullopt;
    }
    const std::string& text = node.Scalar();
    double value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size() ||
        !std::isfinite(value)) {
      report(place, "expected " + allowed + ", got " + describe(node));
      return std::nullopt;
    }
    if (!(value > above) || value > max) {
      report(place, text + " is out of range; allowed is " + allowed);
      return std::nullopt;
    }
    return value;
  }

  std::optional<bool> boolean(const Place& place) {
    const YAML::Node& node = place.node;
    if (node && node.IsScalar() && node.Tag() != "!") {
      if (node.Scalar() == "true") return true;
      if (node.Scalar() == "false") return false;
    }
    report(place, "expected true or false, got " + describe(node));
    return std::nullopt;
  }

  std::optional<std::string> string(const Place& place, std::string_view what) {
    const YAML::Node& node = place.node;
    if (node && node.IsScalar()) return node.Scalar();
    report(place, "expected " + std::string(what) + ", got " + describe(node));
    return std::nullopt;
  }

  // A list of strings, each checked by `check` (which throws std::invalid_argument saying what
  // is wrong), given at most once each.
  template <typename T>
  std::optional<std::vector<T>> list(const Place& place, std::string_view items,
                                     std::string_view item,
                                     const std::function<T(const std::string&)>& check) {
    const YAML::Node& node = place.node;
    if (!node || !node.IsSequence()) {
      report(place, "expected a list of " + std::string(items) + ", got " + describe(node) +
                        " (write [] for none)");
      return std::nullopt;
    }
    std::vector<T> values;
    std::map<std::string, size_t> seen;
    bool ok = true;
    for (size_t i = 0; i < node.size(); ++i) {
      count_value();
      Place element = place.item(i, node[i]);
      auto text = string(element, std::string(item));
      if (!text) {
        ok = false;
        continue;
      }
      if (auto [previous, inserted] = seen.emplace(*text, i); !inserted) {
        report(element, quoted(*text) + " is listed twice (also at index " +
                            std::to_string(previous->second) + "); keep one");
        ok = false;
        continue;
      }
      try {
        values.push_back(check(*text));
      } catch (const std::invalid_argument& error) {
        report(element, error.what());
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return values;
  }
};

// ---- the parts of a section ----------------------------------------------------------------

template <typename Owner>
struct IntegerField {
  std::string_view name;
  int64_t min;
  int64_t max;
  bool bytes;
  Setting<int64_t> Owner::*member;
};

constexpr int64_t KiB = 1 << 10;
constexpr int64_t MiB = 1 << 20;
constexpr int64_t GiB = 1ll << 30;

const IntegerField<Limits> kLimitFields[] = {
    {"fuel", 1000, 100'000'000'000, false, &Limits::fuel},
    {"memory_bytes", 64 * KiB, GiB, true, &Limits::memory_bytes},
    {"timeout_ms", 1, 300'000, false, &Limits::timeout_ms},
    {"output_bytes", 1, 64 * MiB, true, &Limits::output_bytes},
    {"log_bytes", 1, 16 * MiB, true, &Limits::log_bytes},
    {"subrequests", 0, 1000, false, &Limits::subrequests},
    {"input_bytes", 1, 64 * MiB, true, &Limits::input_bytes},
    {"batch_inputs", 1, 10'000, false, &Limits::batch_inputs},
};
const Keys kLimitKeys = {"fuel",      "memory_bytes", "timeout_ms",  "output_bytes",
                         "log_bytes", "subrequests",  "input_bytes", "batch_inputs"};

const IntegerField<Quotas> kQuotaFields[] = {
    {"burst", 1, 1'000'000, false, &Quotas::burst},
    {"concurrency", 1, 10'000, false, &Quotas::concurrency},
    {"cpu_ms_per_minute", 1, 3'600'000, false, &Quotas::cpu_ms_per_minute},
    {"queued_jobs", 0, 1'000'000, false, &Quotas::queued_jobs},
    {"publishes_per_minute", 1, 10'000, false, &Quotas::publishes_per_minute},
    {"versions", 1, 1'000'000, false, &Quotas::versions},
    {"version_bytes", 1024, 64ll << 30, true, &Quotas::version_bytes},
    {"events", 1, 10'000'000, false, &Quotas::events},
    {"event_bytes", 1024, 64ll << 30, true, &Quotas::event_bytes},
    {"jobs", 1, 10'000'000, false, &Quotas::jobs},
    {"stored_runs", 1, 10'000'000, false, &Quotas::stored_runs},
    {"store_write_bytes_per_minute", 1024, 64ll << 30, true, &Quotas::store_write_bytes_per_minute},
};
const Keys kQuotaKeys = {"rate_per_second",
                         "burst",
                         "concurrency",
                         "cpu_ms_per_minute",
                         "queued_jobs",
                         "publishes_per_minute",
                         "versions",
                         "version_bytes",
                         "events",
                         "event_bytes",
                         "jobs",
                         "stored_runs",
                         "store_write_bytes_per_minute"};

const IntegerField<CircuitBreaker> kCircuitBreakerFields[] = {
    {"failures", 1, 1000, false, &CircuitBreaker::failures},
    {"window_seconds", 1, 86'400, false, &CircuitBreaker::window_seconds},
    {"cooldown_seconds", 1, 86'400, false, &CircuitBreaker::cooldown_seconds},
    {"probes", 1, 100, false, &CircuitBreaker::probes},
};
const Keys kCircuitBreakerKeys = {"failures", "window_seconds", "cooldown_seconds", "probes"};

const IntegerField<Jobs> kJobFields[] = {
    {"max_attempts", 1, 20, false, &Jobs::max_attempts},
    {"webhook_attempts", 1, 20, false, &Jobs::webhook_attempts},
    {"webhook_backoff_ms", 10, 3'600'000, false, &Jobs::webhook_backoff_ms},
};
const Keys kJobKeys = {"max_attempts", "webhook_attempts", "webhook_backoff_ms", "inputs"};

const IntegerField<Alerts> kAlertFields[] = {
    {"window_seconds", 1, 86'400, false, &Alerts::window_seconds},
    {"min_runs", 1, 1'000'000, false, &Alerts::min_runs},
    {"warmup_runs", 1, 10'000'000, false, &Alerts::warmup_runs},
};
struct NumberField {
  std::string_view name;
  double above;
  double max;
  Setting<double> Alerts::*member;
};
const NumberField kAlertNumbers[] = {
    {"error_rate_increase", 0, 1, &Alerts::error_rate_increase},
    {"latency_factor", 1, 1000, &Alerts::latency_factor},
    {"fuel_factor", 1, 1000, &Alerts::fuel_factor},
    {"memory_factor", 1, 1000, &Alerts::memory_factor},
};
const Keys kAlertKeys = {"enabled",     "window_seconds",      "min_runs",
                         "warmup_runs", "error_rate_increase", "latency_factor",
                         "fuel_factor", "memory_factor",       "contain"};

const IntegerField<Runs> kRunFields[] = {{"keep", 0, 1000, false, &Runs::keep}};

template <typename Grant>
struct GrantParameter {
  std::string_view name;
  int64_t min;
  int64_t max;
  bool bytes;
  int64_t Grant::*member;
};

const GrantParameter<LogGrant> kLogParameters[] = {
    {"max_entry_bytes", 1, MiB, true, &LogGrant::max_entry_bytes}};
const GrantParameter<KvGrant> kKvParameters[] = {
    {"max_key_bytes", 1, 4096, true, &KvGrant::max_key_bytes},
    {"max_value_bytes", 1, 16 * MiB, true, &KvGrant::max_value_bytes},
    {"max_keys", 1, 10'000'000, false, &KvGrant::max_keys},
    {"max_total_bytes", 1, 16 * GiB, true, &KvGrant::max_total_bytes},
};
const GrantParameter<HttpGrant> kHttpParameters[] = {
    {"max_response_bytes", 1, 64 * MiB, true, &HttpGrant::max_response_bytes},
    {"timeout_ms", 1, 300'000, false, &HttpGrant::timeout_ms},
    {"max_redirects", 0, 10, false, &HttpGrant::max_redirects},
    {"max_request_bytes", 0, 16 * MiB, true, &HttpGrant::max_request_bytes},
};
const GrantParameter<EmitGrant> kEmitParameters[] = {
    {"max_payload_bytes", 1, 16 * MiB, true, &EmitGrant::max_payload_bytes}};

const Keys kSectionKeys = {"limits", "quotas",       "circuit_breaker", "cache", "jobs",
                           "runs",   "capabilities", "governance",      "audit", "alerts"};
const Keys kCapabilityKeys = {"log", "kv", "http", "emit", "secrets"};
const Keys kGovernanceKeys = {"approval_required", "self_approval_allowed", "signature_required",
                              "public_keys"};

// Sets the field named `key`, if it is one of `fields`.
template <typename Owner, size_t N>
void read_integer_field(Reader& reader, std::string_view key, const Place& entry,
                        const IntegerField<Owner> (&fields)[N], Owner& into) {
  for (const auto& field : fields) {
    if (field.name != key) continue;
    if (auto value = reader.integer(entry, field.min, field.max, field.bytes))
      into.*field.member = {*value, entry.path};
  }
}

// Sets the grant's integer parameter named `key`, if it is one; false when it is not.
template <typename Grant, size_t N>
bool read_parameter(Reader& reader, std::string_view key, const Place& entry,
                    const GrantParameter<Grant> (&parameters)[N], Grant& grant) {
  for (const auto& parameter : parameters) {
    if (parameter.name != key) continue;
    if (auto value = reader.integer(entry, parameter.min, parameter.max, parameter.bytes))
      grant.*parameter.member = *value;
    return true;
  }
  return false;
}

LogGrant read_log(Reader& reader, const Place& place) {
  LogGrant grant;
  grant.source = place.path;
  reader.each_entry(place, {"max_entry_bytes"}, [&](std::string_view key, const Place& entry) {
    read_parameter(reader, key, entry, kLogParameters, grant);
  });
  return grant;
}

KvGrant read_kv(Reader& reader, const Place& place) {
  KvGrant grant;
  grant.source = place.path;
  reader.each_entry(place,
                    {"scope", "max_key_bytes", "max_value_bytes", "max_keys", "max_total_bytes"},
                    [&](std::string_view key, const Place& entry) {
                      if (read_parameter(reader, key, entry, kKvParameters, grant)) return;
                      auto scope = reader.string(entry, "tenant or script");
                      if (!scope) return;
                      if (*scope == "tenant") {
                        grant.scope = KvScope::tenant;
                      } else if (*scope == "script") {
                        grant.scope = KvScope::script;
                      } else {
                        reader.report(entry,
                                      "the scope must be tenant (one store shared by the tenant's "
                                      "scripts) or script (one store per script), not " +
                                          quoted(*scope));
                      }
                    });
  return grant;
}

HttpGrant read_http(Reader& reader, const Place& place) {
  HttpGrant grant;
  grant.source = place.path;
  reader.each_entry(place,
                    {"allow", "allow_private", "max_response_bytes", "timeout_ms", "max_redirects",
                     "max_request_bytes"},
                    [&](std::string_view key, const Place& entry) {
                      if (read_parameter(reader, key, entry, kHttpParameters, grant)) return;
                      if (key == "allow") {
                        auto patterns = reader.list<OriginPattern>(
                            entry, "origin patterns", "an origin pattern",
                            [](const std::string& text) { return parse_origin_pattern(text); });
                        if (patterns) grant.allow = std::move(*patterns);
                      } else {
                        auto ranges = reader.list<AddressRange>(
                            entry, "addresses or CIDR blocks", "an address or CIDR block",
                            [](const std::string& text) { return AddressRange::parse(text); });
                        if (ranges) grant.allow_private = std::move(*ranges);
                      }
                    });
  return grant;
}

EmitGrant read_emit(Reader& reader, const Place& place) {
  EmitGrant grant;
  grant.source = place.path;
  reader.each_entry(place, {"topics", "max_payload_bytes"},
                    [&](std::string_view key, const Place& entry) {
                      if (read_parameter(reader, key, entry, kEmitParameters, grant)) return;
                      auto topics = reader.list<std::string>(
                          entry, "topic patterns", "a topic pattern", [](const std::string& text) {
                            check_topic_pattern(text);
                            return text;
                          });
                      if (topics) grant.topics = std::move(*topics);
                    });
  return grant;
}

std::string checked_secret_name(const std::string& text) {
  if (auto problem = name_problem(text)) {
    throw std::invalid_argument(
        "secret name " + quoted(text) + ": " + *problem +
        "; use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }
  return text;
}

SecretsGrant read_secrets(Reader& reader, const Place& place) {
  SecretsGrant grant;
  grant.source = place.path;
  // Where each name of bind and reference_only was written, to check them against names.
  std::vector<std::pair<std::string, Place>> named;
  std::optional<Place> reference_only_place;
  reader.each_entry(
      place, {"names", "bind", "reference_only"}, [&](std::string_view key, const Place& entry) {
        if (key == "names") {
          auto names =
              reader.list<std::string>(entry, "secret names", "a secret name", checked_secret_name);
          if (names) grant.names = std::move(*names);
        } else if (key == "reference_only") {
          auto names =
              reader.list<std::string>(entry, "secret names", "a secret name", checked_secret_name);
          if (!names) return;
          reference_only_place = entry;
          for (size_t i = 0; i < names->size(); ++i) {
            named.emplace_back((*names)[i], entry.item(i, entry.node[i]));
          }
          grant.reference_only = std::move(*names);
        } else {
          if (entry.node && entry.node.IsMap()) {
            reader.each_pair(entry, [&](const std::string& name, const Place& binding) {
              if (auto problem = name_problem(name)) {
                reader.report(binding, "secret name " + quoted(name) + ": " + *problem +
                                           "; bind takes secret names as keys");
                return;
              }
              auto origins = reader.list<OriginPattern>(
                  binding, "origin patterns", "an origin pattern",
                  [](const std::string& text) { return parse_origin_pattern(text); });
              if (!origins) return;
              named.emplace_back(name, binding);
              grant.bind.push_back({name, std::move(*origins)});
            });
          } else if (entry.node && !entry.node.IsNull()) {
            reader.report(entry,
                          "expected a mapping from secret names to lists of origin "
                          "patterns, e.g. bind: {stripe: [\"https://api.stripe.com\"]}, "
                          "got " +
                              describe(entry.node));
          }
        }
      });
  for (const auto& [name, where] : named) {
    if (grant.names && !grant.allows(name)) {
      reader.report(where, "secret " + quoted(name) + " is not among " + place.path +
                               ".names; add it there, or remove it here");
    }
  }
  if (reference_only_place) {
    for (size_t i = 0; i < grant.reference_only.size(); ++i) {
      const std::string& name = grant.reference_only[i];
      if (const SecretBinding* binding = grant.binding(name); binding && !binding->origins.empty())
        continue;
      reader.report(reference_only_place->item(i, reference_only_place->node[i]),
                    "secret " + quoted(name) +
                        " is reference-only but bound to no origin, so no script could use it; "
                        "add " +
                        place.path + ".bind." + name +
                        ": [\"https://...\"] naming the origins it may be sent to");
    }
  }
  return grant;
}

void apply_capabilities(Reader& reader, const Place& place, TenantPolicy& into) {
  reader.each_entry(place, kCapabilityKeys, [&](std::string_view name, const Place& entry) {
    const YAML::Node& node = entry.node;
    std::string capability(name);
    bool is_bool = node && node.IsScalar() && node.Tag() != "!" &&
                   (node.Scalar() == "true" || node.Scalar() == "false");
    if (is_bool && node.Scalar() == "false") {
      if (capability == "log") {
        reader.report(entry,
                      "log cannot be revoked: every script has ctx.log. Tune it with "
                      "log: {max_entry_bytes: N}, or remove this line");
        return;
      }
      if (capability == "kv") into.kv.reset();
      if (capability == "http") into.http.reset();
      if (capability == "emit") into.emit.reset();
      if (capability == "secrets") into.secrets.reset();
      into.revoked[capability] = entry.path;
      return;
    }
    if (!node.IsMap()) {
      std::string message = !node || node.IsNull() ? capability + " has no value"
                                                   : capability + " is " + describe(node);
      message += "; write " + capability + ": {} to grant it with its default parameters, " +
                 capability + ": {…} to give parameters";
      if (capability != "log") message += ", or " + capability + ": false to revoke it";
      reader.report(entry, message);
      return;
    }
    into.revoked.erase(capability);
    if (capability == "log") into.log = read_log(reader, entry);
    if (capability == "kv") into.kv = read_kv(reader, entry);
    if (capability == "http") into.http = read_http(reader, entry);
    if (capability == "emit") into.emit = read_emit(reader, entry);
    if (capability == "secrets") into.secrets = read_secrets(reader, entry);
  });
}

void apply_governance(Reader& reader, const Place& place, Governance& into) {
  std::optional<Place> signature_place;
  std::optional<Place> keys_place;
  reader.each_entry(place, kGovernanceKeys, [&](std::string_view key, const Place& entry) {
    if (key == "public_keys") {
      keys_place = entry;
      auto keys =
          reader.list<PublicKey>(entry, "base64 Ed25519 public keys", "a base64 Ed25519 public key",
                                 [](const std::string& text) { return PublicKey::parse(text); });
      if (keys) into.public_keys = {std::move(*keys), entry.path};
      return;
    }
    auto value = reader.boolean(entry);
    if (!value) return;
    if (key == "approval_required") into.approval_required = {*value, entry.path};
    if (key == "self_approval_allowed") into.self_approval_allowed = {*value, entry.path};
    if (key == "signature_required") {
      into.signature_required = {*value, entry.path};
      signature_place = entry;
    }
  });
  // Checked where this section touches either half, so that a mistake in the defaults is
  // reported once, not again for every tenant that inherits it.
  if ((signature_place || keys_place) && into.signature_required.value &&
      into.public_keys.value.empty()) {
    reader.report(signature_place ? *signature_place : *keys_place,
                  "signature_required is true (" + into.signature_required.source +
                      ") but no public key is given; list the tenant's Ed25519 public keys "
                      "under governance.public_keys, or set signature_required: false");
  }
}

void apply_alerts(Reader& reader, const Place& place, Alerts& into) {
  reader.each_entry(place, kAlertKeys, [&](std::string_view name, const Place& field) {
    if (name == "enabled") {
      if (auto value = reader.boolean(field)) into.enabled = {*value, field.path};
      return;
    }
    if (name == "contain") {
      auto value = reader.string(field, "none or auto");
      if (!value) return;
      if (*value == "none" || *value == "auto") {
        into.contain = {*value == "auto" ? Containment::quarantine : Containment::none, field.path};
      } else {
        reader.report(field,
                      "contain must be none (alerts only tell) or auto (an alert also "
                      "quarantines the version, as its circuit breaker would), not " +
                          quoted(*value));
      }
      return;
    }
    for (const auto& number : kAlertNumbers) {
      if (number.name != name) continue;
      if (auto value = reader.number(field, number.above, number.max))
        into.*number.member = {*value, field.path};
      return;
    }
    read_integer_field(reader, name, field, kAlertFields, into);
  });
}

void apply_section(Reader& reader, const Place& place, TenantPolicy& into) {
  reader.each_entry(place, kSectionKeys, [&](std::string_view key, const Place& entry) {
    if (key == "limits") {
      reader.each_entry(entry, kLimitKeys, [&](std::string_view name, const Place& limit) {
        read_integer_field(reader, name, limit, kLimitFields, into.limits);
      });
    }
    if (key == "quotas") {
      reader.each_entry(entry, kQuotaKeys, [&](std::string_view name, const Place& quota) {
        if (name != "rate_per_second") {
          read_integer_field(reader, name, quota, kQuotaFields, into.quotas);
        } else if (auto value = reader.number(quota, 0, 1'000'000)) {
          into.quotas.rate_per_second = {*value, quota.path};
        }
      });
    }
    if (key == "circuit_breaker") {
      reader.each_entry(entry, kCircuitBreakerKeys, [&](std::string_view name, const Place& field) {
        read_integer_field(reader, name, field, kCircuitBreakerFields, into.circuit_breaker);
      });
    }
    if (key == "cache") {
      reader.each_entry(entry, {"enabled"}, [&](std::string_view, const Place& field) {
        if (auto value = reader.boolean(field)) into.cache.enabled = {*value, field.path};
      });
    }
    if (key == "jobs") {
      reader.each_entry(entry, kJobKeys, [&](std::string_view name, const Place& field) {
        if (name == "inputs") {
          if (auto value = reader.boolean(field)) into.jobs.inputs = {*value, field.path};
        } else {
          read_integer_field(reader, name, field, kJobFields, into.jobs);
        }
      });
    }
    if (key == "runs") {
      reader.each_entry(entry, {"keep", "inputs"}, [&](std::string_view name, const Place& field) {
        if (name == "inputs") {
          if (auto value = reader.boolean(field)) into.runs.inputs = {*value, field.path};
        } else {
          read_integer_field(reader, name, field, kRunFields, into.runs);
        }
      });
    }
    if (key == "alerts") apply_alerts(reader, entry, into.alerts);
    if (key == "capabilities") apply_capabilities(reader, entry, into);
    if (key == "governance") apply_governance(reader, entry, into.governance);
    if (key == "audit") {
      reader.each_entry(entry, {"allowed_capability_calls"},
                        [&](std::string_view, const Place& audit) {
                          if (auto value = reader.boolean(audit))
                            into.audit_allowed_capability_calls = {*value, audit.path};
                        });
    }
  });
}

}  // namespace

PolicyInvalid::PolicyInvalid(std::vector<Problem> problems)
    : std::runtime_error([&] {
        std::string text = "the policy is not valid (" + std::to_string(problems.size()) +
                           (problems.size() == 1 ? " problem" : " problems") + "):";
        for (const auto& problem : problems) {
          std::string where = problem.path;
          if (problem.line > 0) {
            where += (where.empty() ? "" : " ") + std::string("(line ") +
                     std::to_string(problem.line) + ", column " + std::to_string(problem.column) +
                     ")";
          }
          text += "\n  " + (where.empty() ? "" : where + ": ") + problem.message;
        }
        return text;
      }()),
      problems_(std::move(problems)) {}

Policy Policy::parse(std::string_view yaml_text) {
  auto refuse = [](std::string message, int line = 0, int column = 0) {
    throw PolicyInvalid({Problem{"", line, column, std::move(message)}});
  };
  if (yaml_text.size() > kMaxDocumentBytes) {
    refuse("the document is " + std::to_string(yaml_text.size()) + " bytes; at most " +
           std::to_string(kMaxDocumentBytes) + " are accepted");
  }
  if (auto problem = document_bounds_problem(yaml_text)) throw PolicyInvalid({*problem});
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(yaml_text));
  } catch (const YAML::Exception& error) {
    int line = error.mark.is_null() ? 0 : error.mark.line + 1;
    int column = error.mark.is_null() ? 0 : error.mark.column + 1;
    refuse("YAML syntax error: " + error.msg + "; fix the text at this line and column", line,
           column);
  }
  const std::string shape =
      "a policy is one mapping with `defaults:` and `tenants:` (see examples/policy.yaml)";
  if (documents.empty() || documents[0].IsNull()) refuse("the document is empty; " + shape);
  if (documents.size() > 1) {
    YAML::Mark mark = documents[1].Mark();
    refuse("the text holds " + std::to_string(documents.size()) +
               " YAML documents; a policy is one (remove the '---' separators)",
           mark.is_null() ? 0 : mark.line + 1, mark.is_null() ? 0 : mark.column + 1);
  }

  Reader reader;
  Place root{"", documents[0], YAML::Node()};
  if (!root.node.IsMap()) refuse("the document is " + describe(root.node) + "; " + shape);
  Policy policy;
  policy.text_ = std::string(yaml_text);
  std::optional<std::string> stopped;
  try {
    std::optional<Place> defaults_place;
    std::optional<Place> tenants_place;
    reader.each_entry(root, {"defaults", "tenants"}, [&](std::string_view key, const Place& entry) {
      (key == "defaults" ? defaults_place : tenants_place) = entry;
    });
    if (defaults_place) apply_section(reader, *defaults_place, policy.defaults_);
    if (tenants_place && tenants_place->node && !tenants_place->node.IsNull()) {
      if (!tenants_place->node.IsMap()) {
        reader.report(*tenants_place, "expected a mapping of tenant names to their sections, got " +
                                          describe(tenants_place->node));
      } else {
        reader.each_pair(*tenants_place, [&](const std::string& name, const Place& entry) {
          if (auto problem = name_problem(name)) {
            reader.report_at(entry.path, entry.key.Mark(),
                             "tenant name " + quoted(name) + ": " + *problem +
                                 "; tenant names are 1 to 64 letters, digits, '.', '_' or '-', "
                                 "starting with a letter or digit");
            return;
          }
          TenantPolicy tenant = policy.defaults_;
          tenant.tenant = name;
          apply_section(reader, entry, tenant);
          policy.tenant_order_.push_back(name);
          policy.tenants_.emplace(name, std::move(tenant));
        });
      }
    }
  } catch (const StopReading& stop) {
    stopped = stop.why;
  }

  if (!reader.problems.empty() || stopped) {
    auto problems = std::move(reader.problems);
    std::stable_sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) {
      return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    if (stopped) problems.push_back({"", 0, 0, *stopped});
    throw PolicyInvalid(std::move(problems));
  }
  return policy;
}

}  // namespace corral::policy
