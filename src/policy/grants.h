// What a capability grant allows, and the matching rules the broker applies to each call: origin
// patterns and private address ranges for http, topic patterns for emit, names for secrets.
// Pure functions: nothing here resolves a name, opens a socket or reads a file.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/ip_address.h"
#include "net/origin_pattern.h"

namespace corral::policy {

// Where a grant's decision comes from when no part of the document names it.
inline constexpr const char* kBuiltIn = "built-in default";

// ctx.log: always present, never needs a grant; the policy may only tune it.
struct LogGrant {
  int64_t max_entry_bytes = 4096;  // one log call's message; 1 .. 1 MiB
  std::string source = kBuiltIn;   // the YAML path of the grant that set it
};

enum class KvScope { tenant, script };
std::string_view to_string(KvScope scope);

// ctx.kv. Every parameter has a default, so `kv: {}` grants a usable store.
struct KvGrant {
  KvScope scope = KvScope::tenant;       // tenant: one store per tenant; script: one per script
  int64_t max_key_bytes = 256;           // 1 .. 4096
  int64_t max_value_bytes = 64 << 10;    // encoded value; 1 .. 16 MiB
  int64_t max_keys = 10'000;             // 1 .. 10,000,000
  int64_t max_total_bytes = 16ll << 20;  // keys + values; 1 .. 16 GiB
  std::string source;                    // e.g. "tenants.acme.capabilities.kv"
};

// What an http grant's allow list holds (net/origin_pattern.h: the broker reads the same patterns
// with the same parser).
using OriginPattern = net::OriginPattern;

// Throws std::invalid_argument saying what is wrong with the pattern and what is allowed.
OriginPattern parse_origin_pattern(std::string_view text);

// An IPv4 or IPv6 address, or a CIDR block ("10.0.0.0/8", "fd00::/8"), whose host bits are zero.
// The broker decides what it holds (broker/address_rules.h); the policy only checks it is valid.
struct AddressRange {
  std::string text;  // as written in the policy
  net::IpRange range;

  // Throws std::invalid_argument saying what is wrong and what is allowed.
  static AddressRange parse(std::string_view text);
};

// ctx.http.fetch. An empty `allow` (the default) grants the call but reaches nothing.
struct HttpGrant {
  std::vector<OriginPattern> allow;
  // Private, loopback and link-local addresses the broker may connect to anyway; all others of
  // those kinds are refused whatever name resolved to them.
  std::vector<AddressRange> allow_private;
  int64_t max_response_bytes = 1 << 20;  // 1 .. 64 MiB
  int64_t timeout_ms = 5000;             // per request, all redirects included; 1 .. 300,000
  int64_t max_redirects = 3;             // 0 .. 10; each hop is checked again
  int64_t max_request_bytes = 64 << 10;  // body sent; 0 .. 16 MiB
  std::string source;

  // The index in `allow` of the first pattern that matches, if any (see OriginPattern::matches).
  std::optional<size_t> matching_pattern(std::string_view scheme, std::string_view host,
                                         int port) const;
  bool allows_url(std::string_view scheme, std::string_view host, int port) const {
    return matching_pattern(scheme, host, port).has_value();
  }
};

// Topics are 1 to 128 bytes of letters, digits and . _ - : /
bool valid_topic(std::string_view topic);
// A topic pattern is a topic (matches itself) or a prefix of one followed by "*" (matches every
// topic that starts with the prefix; "*" alone matches all). Throws std::invalid_argument saying
// what is wrong.
void check_topic_pattern(std::string_view pattern);
// pattern must have passed check_topic_pattern; a topic that is not valid matches nothing.
bool topic_matches(std::string_view pattern, std::string_view topic);

// ctx.emit. An empty `topics` (the default) grants the call but allows no topic.
struct EmitGrant {
  std::vector<std::string> topics;
  int64_t max_payload_bytes = 64 << 10;  // encoded payload; 1 .. 16 MiB
  std::string source;

  std::optional<size_t> matching_topic(std::string_view topic) const;
  bool allows_topic(std::string_view topic) const { return matching_topic(topic).has_value(); }
};

// The origins a secret reference may be sent to (secrets.bind.NAME).
struct SecretBinding {
  std::string name;
  std::vector<OriginPattern> origins;
};

// ctx.secrets, for the tenant's own secrets only: get reads a value; a reference
// (ctx.secrets.ref) is replaced by the broker with the value in an http.fetch to a bound origin.
struct SecretsGrant {
  // nullopt (the default): every secret of the tenant; otherwise only these names.
  std::optional<std::vector<std::string>> names;
  // Where each secret's references may go; a secret not bound here has no reference that works.
  std::vector<SecretBinding> bind;
  // Secrets get refuses: no script ever holds their value, they reach only the bound origins.
  std::vector<std::string> reference_only;
  std::string source;

  bool allows(std::string_view name) const;
  bool is_reference_only(std::string_view name) const;
  // The origins `name` is bound to, or nullptr when the policy does not name it in bind (its list
  // of origins may still be empty: `bind: {name: []}`).
  const SecretBinding* binding(std::string_view name) const;
};

// An Ed25519 public key as the policy gives it: standard base64 of 32 bytes.
struct PublicKey {
  std::string base64;
  std::array<uint8_t, 32> bytes{};

  // Throws std::invalid_argument saying what is wrong (not base64, or not 32 bytes).
  static PublicKey parse(std::string_view base64);
  friend bool operator==(const PublicKey& a, const PublicKey& b) { return a.bytes == b.bytes; }
};

// Tenant, script, alias and secret names (the registry checks them with this too): 1 to 64
// letters, digits, '.', '_' or '-', starting with a letter or digit. Returns what is wrong, as a
// sentence about `what` ("the tenant contains '/' at position 3"), or nullopt when it is valid.
std::optional<std::string> name_problem(std::string_view name, std::string_view what = "name");

}  // namespace corral::policy
