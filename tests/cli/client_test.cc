// The pieces of the CLI's client library that need no server: URLs, escaping, tables.
#include "client/client.h"

#include <gtest/gtest.h>

namespace {

using namespace corral::client;

TEST(ClientUrl, AcceptsHttpAndHttpsOnly) {
  EXPECT_EQ(normalize_server_url("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
  EXPECT_EQ(normalize_server_url(" https://corral.example.com/prefix// "),
            "https://corral.example.com/prefix");
  EXPECT_EQ(normalize_server_url("HTTP://[::1]:9000"), "HTTP://[::1]:9000");
  for (const char* bad : {"127.0.0.1:8080", "ftp://host", "file:///etc/passwd", "http://",
                          "http:///path", "http://host/?q=1", "http://ho st", ""}) {
    EXPECT_THROW(normalize_server_url(bad), BadServerUrl) << bad;
  }
}

TEST(ClientUrl, EscapesPathSegmentsAndQueries) {
  EXPECT_EQ(escape("acme-1.x_~"), "acme-1.x_~");
  EXPECT_EQ(escape("a/b c?d&e#%"), "a%2Fb%20c%3Fd%26e%23%25");
  EXPECT_EQ(escape("é"), "%C3%A9");
  EXPECT_EQ(query_string({{"tenant", "a b"}, {"action", std::nullopt}, {"limit", "3"}}),
            "?tenant=a%20b&limit=3");
  EXPECT_EQ(query_string({{"alias", std::nullopt}}), "");
}

TEST(ClientTable, AlignsColumnsByCharacters) {
  std::string table = format_table({"NAME", "STATE"}, {{"héllo", "ok"}, {"x", "pending"}});
  EXPECT_EQ(table,
            "NAME   STATE\n"
            "héllo  ok\n"
            "x      pending\n");
}

TEST(ClientTable, CutsLongCellsButNotTheLastColumn) {
  std::string long_text(60, 'a');
  std::string table = format_table({"A", "B"}, {{long_text, long_text}}, 10);
  EXPECT_EQ(table, "A           B\n" + std::string(9, 'a') + "…  " + long_text + "\n");
}

TEST(ClientText, ControlCharactersAndBadUtf8AreNotPrinted) {
  EXPECT_EQ(printable("a\x1b[31mred\nline\tend"), "a [31mred line end");
  EXPECT_EQ(printable("ok \xff\xfe"), "ok \xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(printable("\xC2\x9B"
                      "c1"),
            " c1");  // C1 CSI
  EXPECT_EQ(printable("日本"), "日本");
  EXPECT_EQ(printable("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
}

TEST(ClientProblem, TitleDetailHintOrTheStartOfTheBody) {
  HttpResponse problem{.status = 404,
                       .content_type = "application/problem+json",
                       .body = R"({"title":"No such tenant","detail":"d\u001b","hint":"h"})",
                       .headers = {}};
  auto parts = problem_of(problem);
  EXPECT_EQ(parts.title, "No such tenant");
  EXPECT_EQ(parts.detail, "d ");
  EXPECT_EQ(parts.hint, "h");
  HttpResponse html{
      .status = 502, .content_type = "text/html", .body = "<b>bad</b>", .headers = {}};
  parts = problem_of(html);
  EXPECT_EQ(parts.title, "the server answered HTTP 502");
  EXPECT_EQ(parts.detail, "with: <b>bad</b>");
}

}  // namespace
