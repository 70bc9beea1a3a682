// Every runnable example of README.md and docs/*.md, run as a reader would run it, in the order
// the document gives them, against a real corrald this test starts (one per document). What an
// example is, and how a block is marked, is in docs/doc_examples.h.
//
// A document's blocks run in a workspace of their own, laid out as a clone of the repository
// with a running corrald looks to a reader: `examples/` (the repository's), `data/` (corrald's
// data directory, admin.token included), `build/release/src/cmd/` (the built corral, corrald and
// corral-worker, also first on PATH). In a run block, `localhost:8080` and `127.0.0.1:8080`, the
// address the docs show, are replaced by the test's corrald's. Variables a block sets are seen by
// the blocks after it; nothing else is given to a block, so a token it uses is one the docs say
// how to get.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "api/corrald_process.h"
#include "docs/doc_examples.h"

namespace {

namespace fs = std::filesystem;
namespace docs = corral::testing::docs;
using corral::testing::CorraldProcess;
using corral::testing::HttpClient;
using corral::testing::read_text;
namespace http = boost::beast::http;

const fs::path kSourceDir = CORRAL_SOURCE_DIR;

// README.md and every docs/*.md holding a marker, named for gtest ("README_md", "api_md").
std::vector<fs::path> documents_with_examples() {
  std::vector<fs::path> documents = {kSourceDir / "README.md"};
  for (const auto& entry : fs::directory_iterator(kSourceDir / "docs")) {
    if (entry.path().extension() == ".md") documents.push_back(entry.path());
  }
  std::erase_if(documents,
                [](const fs::path& path) { return !docs::has_examples(read_text(path)); });
  std::sort(documents.begin(), documents.end());
  return documents;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

struct Ran {
  int status = -1;
  std::string out;
  std::string err;
};

class DocumentTest : public ::testing::TestWithParam<fs::path> {
 protected:
  void SetUp() override {
    corrald_ = std::make_unique<CorraldProcess>();
    workspace_ = corrald_->directory() / "workspace";
    fs::create_directories(workspace_ / "build/release/src");
    fs::create_directory_symlink(kSourceDir / "examples", workspace_ / "examples");
    fs::create_directory_symlink(corrald_->data_dir(), workspace_ / "data");
    fs::create_directory_symlink(fs::path(CORRAL_CLI_PATH).parent_path(),
                                 workspace_ / "build/release/src/cmd");
    state_ = corrald_->directory() / "shell-state";
  }

  // The block as a bash script: it starts from the variables the blocks before it left, stops at
  // the first command that fails, and leaves its variables to the next (a block shown to fail
  // too).
  Ran run(const std::string& block) {
    std::string address = corrald_->host() + ":" + std::to_string(corrald_->port());
    std::string text =
        replace_all(replace_all(block, "localhost:8080", address), "127.0.0.1:8080", address);
    fs::path script = corrald_->directory() / "block.sh";
    std::ofstream(script) << "set -eo pipefail\nset -a\ncd '" << workspace_.string() << "'\n"
                          << "if [ -f '" << state_.string() << "' ]; then . '" << state_.string()
                          << "'; fi\n"
                          << "trap \"export -p > '" << state_.string() << "'\" EXIT\n"
                          << text;

    // The reader's environment, without what would send the examples elsewhere: the test's own
    // CORRAL_* variables and proxies.
    std::vector<std::string> env_text;
    for (char** entry = environ; *entry; ++entry) {
      std::string line(*entry);
      std::string name = line.substr(0, line.find('='));
      std::string lower = name;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name.starts_with("CORRAL_") || lower.ends_with("_proxy") || name == "PATH") continue;
      env_text.push_back(line);
    }
    const char* path = std::getenv("PATH");
    env_text.push_back("PATH=" + fs::path(CORRAL_CLI_PATH).parent_path().string() + ":" +
                       (path ? path : "/usr/bin:/bin"));
    std::vector<char*> envp;
    for (auto& line : env_text) envp.push_back(line.data());
    envp.push_back(nullptr);
    std::string bash = "/bin/bash", script_path = script.string();
    char* argv[] = {bash.data(), script_path.data(), nullptr};

    fs::path out = corrald_->directory() / "stdout", err = corrald_->directory() / "stderr-block";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    int failed = posix_spawn(&pid, bash.c_str(), &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (failed) throw std::runtime_error("cannot start bash: " + std::string(strerror(failed)));
    int status = 0;
    waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_text(out),
            read_text(err)};
  }

  void put_policy(const std::string& document, const std::string& where) {
    HttpClient admin = corrald_->client();
    auto answer = admin.request(http::verb::put, "/v1/policy", document, "application/yaml");
    EXPECT_EQ(answer.result_int(), 201) << where << ": corrald refused the policy:\n"
                                        << answer.body();
  }

  std::unique_ptr<CorraldProcess> corrald_;
  fs::path workspace_;
  fs::path state_;
};

TEST_P(DocumentTest, EveryExampleRunsAsShown) {
  const fs::path& document = GetParam();
  std::string name = fs::relative(document, kSourceDir).string();
  std::vector<docs::Example> examples;
  try {
    examples = docs::examples_in(read_text(document));
  } catch (const docs::BadMarker& bad) {
    FAIL() << name << ", " << bad.what();
  }
  Ran last;
  std::string last_where;
  for (const auto& example : examples) {
    std::string where = name + ":" + std::to_string(example.line);
    switch (example.action) {
      case docs::Action::file:
        std::ofstream(workspace_ / example.file_name) << example.text;
        break;
      case docs::Action::run:
        last = run(example.text);
        last_where = where;
        EXPECT_EQ(last.status, example.exit_status)
            << where << ": the block exited " << last.status << "\n"
            << example.text << "--- stdout\n"
            << last.out << "--- stderr\n"
            << last.err;
        break;
      case docs::Action::output:
      case docs::Action::stderr_output: {
        bool on_stdout = example.action == docs::Action::output;
        const std::string& printed = on_stdout ? last.out : last.err;
        auto differs = docs::difference(example.text, printed, example.varying_paths);
        EXPECT_FALSE(differs) << where << ": the run at " << last_where << " printed on "
                              << (on_stdout ? "stdout" : "stderr")
                              << " what the doc does not show: " << differs.value_or("")
                              << "\n--- shown\n"
                              << example.text << "--- printed\n"
                              << printed;
        break;
      }
      case docs::Action::policy:
        put_policy(example.text, where);
        break;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Docs, DocumentTest, ::testing::ValuesIn(documents_with_examples()),
                         [](const ::testing::TestParamInfo<fs::path>& info) {
                           std::string name = info.param.filename().string();
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
