// Every folder in examples/ holds script.lua, input.json and expected.json: running the script
// on the input through a real corral-worker must give exactly the expected output.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "pool/process_executor.h"

namespace {

namespace fs = std::filesystem;

const fs::path kExamples = fs::path(CORRAL_SOURCE_DIR) / "examples";

std::string read_text(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read " + path.string());
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::vector<fs::path> example_folders() {
  std::vector<fs::path> folders;
  for (const auto& entry : fs::directory_iterator(kExamples)) {
    if (entry.is_directory() && fs::exists(entry.path() / "script.lua"))
      folders.push_back(entry.path());
  }
  std::sort(folders.begin(), folders.end());
  return folders;
}

corral::InvocationResult run(const std::string& source, const nlohmann::json& input) {
  static corral::ProcessExecutor executor(
      {.worker_path = CORRAL_WORKER_PATH, .max_idle_workers = 1});
  return executor.run({.invocation_id = corral::new_invocation_id(),
                       .source = source,
                       .input = input,
                       .limits = corral::LimitsPolicy{}.defaults});
}

class ExampleTest : public ::testing::TestWithParam<fs::path> {};

TEST_P(ExampleTest, GivesTheExpectedOutput) {
  const fs::path& folder = GetParam();
  auto result = run(read_text(folder / "script.lua"),
                    nlohmann::json::parse(read_text(folder / "input.json")));
  ASSERT_EQ(result.outcome, corral::Outcome::ok) << corral::to_json(result).dump(2);
  EXPECT_EQ(result.output, nlohmann::json::parse(read_text(folder / "expected.json")))
      << "got: " << result.output.dump(2);
}

TEST(Examples, AtLeastFiveRealisticTransformations) { EXPECT_GE(example_folders().size(), 5u); }

// The README's quick start posts examples/quickstart.json: it must do what the README says.
TEST(Examples, QuickstartRequestSumsItsInput) {
  auto request = nlohmann::json::parse(read_text(kExamples / "quickstart.json"));
  auto result = run(request.at("source").get<std::string>(), request.at("input"));
  ASSERT_EQ(result.outcome, corral::Outcome::ok) << corral::to_json(result).dump();
  EXPECT_EQ(result.output, nlohmann::json({{"sum", 3}}));
}

INSTANTIATE_TEST_SUITE_P(Folders, ExampleTest, ::testing::ValuesIn(example_folders()),
                         [](const ::testing::TestParamInfo<fs::path>& info) {
                           std::string name = info.param.filename().string();
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
