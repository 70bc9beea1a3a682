// Redaction: every byte of every occurrence of a secret's value (raw or JSON-escaped) is hidden
// and named; nested, overlapping and adjacent occurrences; and large or hostile text stays fast.
#include "broker/redaction.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <random>

namespace {

using corral::broker::json_escaped;
using corral::broker::redact;
using Secrets = std::vector<std::pair<std::string, std::string>>;

TEST(RedactionTest, ReplacesEveryOccurrence) {
  Secrets secrets{{"api", "k-123"}};
  EXPECT_EQ(redact("key k-123 then k-123.", secrets), "key [redacted:api] then [redacted:api].");
  EXPECT_EQ(redact("k-123", secrets), "[redacted:api]");
  EXPECT_EQ(redact("k-123k-123", secrets), "[redacted:api]");  // touching: one run
  EXPECT_EQ(redact("k-12 k-1234", secrets), "k-12 [redacted:api]4");
}

TEST(RedactionTest, LeavesTextWithoutSecretsAlone) {
  EXPECT_EQ(redact("nothing here", {}), "nothing here");
  EXPECT_EQ(redact("nothing here", {{"a", "absent"}}), "nothing here");
  EXPECT_EQ(redact("", {{"a", "x"}}), "");
  EXPECT_EQ(redact("short", {{"a", "much longer than the text"}}), "short");
}

TEST(RedactionTest, IgnoresEmptyValues) {
  EXPECT_EQ(redact("text", {{"empty", ""}}), "text");
  EXPECT_EQ(redact("a secret", {{"empty", ""}, {"s", "secret"}}), "a [redacted:s]");
}

TEST(RedactionTest, ASecretContainingAnotherIsHiddenWhole) {
  Secrets secrets{{"short", "pass"}, {"long", "password123"}};
  EXPECT_EQ(redact("my password123 and pass", secrets), "my [redacted:long] and [redacted:short]");
  // Order of the list does not matter.
  Secrets reversed{{"long", "password123"}, {"short", "pass"}};
  EXPECT_EQ(redact("my password123 and pass", reversed), "my [redacted:long] and [redacted:short]");
}

TEST(RedactionTest, OverlappingOccurrencesAreHiddenEntirely) {
  EXPECT_EQ(redact("xababay", {{"s", "aba"}}), "x[redacted:s]y");
  EXPECT_EQ(redact("aaaaa", {{"s", "aa"}}), "[redacted:s]");

  // Two secrets overlapping each other: every byte of both is hidden.
  std::string out = redact("<abcdef>", {{"first", "abcd"}, {"second", "cdef"}});
  EXPECT_EQ(out, "<[redacted:first][redacted:second]>");
  for (const char* fragment : {"ab", "cd", "ef"}) EXPECT_EQ(out.find(fragment), std::string::npos);

  // A shorter one straddling a longer one's edge.
  EXPECT_EQ(redact("hello world!!", {{"a", "hello world"}, {"b", "world!!"}}),
            "[redacted:a][redacted:b]");
}

TEST(RedactionTest, SecretsWithTheSameValueAreHidden) {
  std::string out = redact("v=twin", {{"one", "twin"}, {"two", "twin"}});
  EXPECT_EQ(out.find("twin"), std::string::npos);
  EXPECT_EQ(out.rfind("v=[redacted:", 0), 0u) << out;
}

TEST(RedactionTest, JsonEscapedFormsAreHiddenToo) {
  Secrets secrets{{"quoted", R"(pa"ss\word)"}};
  EXPECT_EQ(redact(R"({"msg":"pa\"ss\\word"})", secrets), R"({"msg":"[redacted:quoted]"})");
  EXPECT_EQ(redact(R"(raw pa"ss\word)", secrets), "raw [redacted:quoted]");

  Secrets multiline{{"pem", "line1\nline2\ttab\x01"}};
  EXPECT_EQ(redact(R"({"log":"line1\nline2\ttab\u0001"})", multiline),
            R"({"log":"[redacted:pem]"})");
  EXPECT_EQ(redact("raw line1\nline2\ttab\x01!", multiline), "raw [redacted:pem]!");
}

TEST(RedactionTest, JsonEscapingMatchesTheEncoder) {
  EXPECT_EQ(json_escaped("plain é"), "plain é");
  EXPECT_EQ(json_escaped("\"\\"), "\\\"\\\\");
  EXPECT_EQ(json_escaped("\n\r\t\b\f"), "\\n\\r\\t\\b\\f");
  EXPECT_EQ(json_escaped(std::string("\x00\x1f\x7f", 3)), "\\u0000\\u001f\x7f");
}

TEST(RedactionTest, BinaryAndNulBytesAreHandled) {
  std::string value("s\0\xff", 3);
  std::string text = "a" + value + "b";
  EXPECT_EQ(redact(text, {{"bin", value}}), "a[redacted:bin]b");
}

double seconds_for(const std::function<void()>& work) {
  auto start = std::chrono::steady_clock::now();
  work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A MiB of log text and fifty secrets, a few of them present. The bound is loose because the
// machines are shared; the point is that it is not quadratic.
TEST(RedactionTest, AMebibyteWithFiftySecretsIsQuick) {
  std::mt19937 random(42);
  auto random_text = [&](size_t size) {
    static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789 :{}\",";
    std::string text(size, ' ');
    for (char& c : text) c = kChars[random() % (sizeof kChars - 1)];
    return text;
  };
  Secrets secrets;
  for (int i = 0; i < 50; ++i) {
    secrets.emplace_back("s" + std::to_string(i),
                         "SECRET" + std::to_string(i) + "-" + random_text(24));
  }
  std::string text = random_text(1 << 20);
  for (int i = 0; i < 5; ++i) {
    text.replace(static_cast<size_t>(i) * 200000, secrets[i * 10].second.size(),
                 secrets[i * 10].second);
  }
  std::string out;
  double took = seconds_for([&] { out = redact(text, secrets); });
  EXPECT_LT(took, 2.0);
  EXPECT_EQ(out.find("SECRET"), std::string::npos);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NE(out.find("[redacted:s" + std::to_string(i * 10) + "]"), std::string::npos);
  }
}

// Inputs that make a naive search quadratic: a long repetitive secret in long repetitive text.
TEST(RedactionTest, RepetitiveInputsStayLinear) {
  std::string text(1 << 20, 'a');
  Secrets near_miss{{"near", std::string(65536, 'a') + "b"}};
  std::string out;
  EXPECT_LT(seconds_for([&] { out = redact(text, near_miss); }), 2.0);
  EXPECT_EQ(out, text);

  Secrets hit{{"run", std::string(65536, 'a')}};
  EXPECT_LT(seconds_for([&] { out = redact(text, hit); }), 2.0);
  EXPECT_EQ(out, "[redacted:run]");
}

}  // namespace
