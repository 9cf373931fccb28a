// `bitsweep train`: building the trial config (bare or sweep-file base, over the defaults,
// --set by dotted path, clear errors) and running a trial locally on the synthetic dataset.
#include "client/train_command.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::client {
namespace {

namespace fs = std::filesystem;
using google::protobuf::util::MessageDifferencer;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A trial that trains in a fraction of a second.
constexpr char kTinyTrial[] = R"(# a bare trial config
dataset: {name: synthetic, train_limit: 320, test_limit: 100}
model: {conv: [], dense: [16], activation: relu, init: he}
train:
  iterations: 30
  batch_size: 32
  optimizer: sgd
  lr: 0.1
  eval_every: 10
precision:
  default: {format: "mask:16", rounding: stochastic}
  sites: [weights, activations]
)";

std::string AsSweepFile(const std::string& trial) {
  std::string indented;
  std::istringstream in(trial);
  for (std::string line; std::getline(in, line);) indented += "  " + line + "\n";
  return "name: tiny\nbase:\n" + indented +
         "sweep:\n  method: grid\n  parameters:\n    train.lr: [0.1, 0.2]\n";
}

class TrainCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("bitsweep_train_command_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  fs::path dir_;
};

TEST_F(TrainCommandTest, BareConfigAndSweepFileBaseGiveTheSameConfigOverTheDefaults) {
  auto bare = TrainConfigFromYaml(kTinyTrial, "bare.yaml", {});
  ASSERT_TRUE(bare.ok()) << bare.status();
  auto sweep = TrainConfigFromYaml(AsSweepFile(kTinyTrial), "sweep.yaml", {});
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*bare, *sweep));
  EXPECT_EQ(bare->dataset().name(), "synthetic");
  EXPECT_EQ(bare->model().conv_size(), 0);  // the list replaced the default's
  EXPECT_EQ(bare->train().iterations(), 30);
  EXPECT_EQ(bare->precision().default_().format(), "mask:16");
  // Fields the file does not set keep the defaults.
  const v1::TrialConfig defaults = trainer::DefaultTrialConfig();
  EXPECT_EQ(bare->model().kernel(), defaults.model().kernel());
  EXPECT_EQ(bare->train().momentum(), defaults.train().momentum());
  EXPECT_EQ(bare->seed(), defaults.seed());
}

TEST_F(TrainCommandTest, SetOverridesFieldsByTheirDottedPaths) {
  auto config = TrainConfigFromYaml(
      kTinyTrial, "t.yaml",
      {"train.lr=0.01", "model.dense=[8, 4]", "seed=7", "precision.default.format=fixed:16,8",
       "precision.default={format: fp16, rounding: nearest}", "train.lr=0.02"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->train().lr(), 0.02);  // in order: the last one wins
  ASSERT_EQ(config->model().dense_size(), 2);
  EXPECT_EQ(config->model().dense(1), 4);
  EXPECT_EQ(config->seed(), 7u);
  EXPECT_EQ(config->precision().default_().format(), "fp16");
  EXPECT_EQ(config->precision().default_().rounding(), "nearest");
  auto fixed = TrainConfigFromYaml(kTinyTrial, "t.yaml", {"precision.default.format=fixed:16,8"});
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(fixed->precision().default_().format(), "fixed:16,8");
}

TEST_F(TrainCommandTest, BadPathsTypesAndValuesAreErrorsNamingTheField) {
  struct Case {
    std::string yaml;
    std::vector<std::string> sets;
    std::vector<std::string> parts;  // all in the message
  };
  const Case cases[] = {
      {"model: {convs: [8]}\n", {}, {"t.yaml: model.convs: unknown field (known: conv, kernel"}},
      {"train: 3\n", {}, {"t.yaml: train: expected a map"}},
      {kTinyTrial, {"train.lrr=1"}, {"--set train.lrr=1: train.lrr: unknown field (known: "}},
      {kTinyTrial, {"nope=1"}, {"--set nope=1: nope: unknown field"}},
      {kTinyTrial, {"train.lr.x=1"}, {"train.lr is not a map, so it has no field 'x'"}},
      {kTinyTrial, {"train.lr"}, {"--set train.lr: expected path=value"}},
      {kTinyTrial, {"precision.default={form: fp16}"}, {"precision.default.form: unknown field"}},
      {kTinyTrial, {"train.batch_size=abc"}, {"t.yaml (with --set)", "batch_size"}},
      {kTinyTrial, {"train.batch_size=0"}, {"t.yaml (with --set): train.batch_size"}},
      {kTinyTrial,
       {"precision.default.format=mask:40"},
       {"precision.default.format", "B must be between 9 and 32"}},
      // A conv stack that shrinks 16x16 below 1x1.
      {kTinyTrial, {"model.conv=[8, 8, 8]", "model.kernel=5"}, {"t.yaml (with --set): model."}},
  };
  for (const Case& c : cases) {
    auto config = TrainConfigFromYaml(c.yaml, "t.yaml", c.sets);
    ASSERT_FALSE(config.ok()) << c.parts[0];
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    for (const std::string& part : c.parts) {
      EXPECT_THAT(std::string(config.status().message()), HasSubstr(part));
    }
  }
}

TEST_F(TrainCommandTest, YamlErrorsInABareConfigPointAtTheUsersLine) {
  auto config = TrainConfigFromYaml("dataset: {name: synthetic}\nmodel: [1, 2\n", "t.yaml", {});
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), StartsWith("t.yaml:3:"));
  auto empty = TrainConfigFromYaml("", "empty.yaml", {});
  ASSERT_TRUE(empty.ok()) << empty.status();  // the defaults
}

nlohmann::json RunJson(const TrainRequest& request, std::string* err_text = nullptr) {
  std::ostringstream out, err;
  const absl::Status s = RunTrain(request, out, err, /*err_is_tty=*/false);
  EXPECT_TRUE(s.ok()) << s;
  if (err_text != nullptr) *err_text = err.str();
  return nlohmann::json::parse(out.str());
}

TEST_F(TrainCommandTest, TrainsLocallyAndPrintsResultAndCurveAsJson) {
  TrainRequest request;
  request.config_path = Write("tiny.yaml", kTinyTrial);
  request.json = true;
  std::string err;
  const nlohmann::json doc = RunJson(request, &err);
  EXPECT_EQ(doc["result"]["outcome"], "completed");
  EXPECT_EQ(doc["result"]["iterations"], 30);
  EXPECT_GT(doc["result"]["final_test_accuracy"].get<double>(), 0.1);
  ASSERT_EQ(doc["curve"].size(), 3u);
  EXPECT_EQ(doc["curve"][2]["iteration"], 30);
  EXPECT_EQ(doc["config"]["train"]["iterations"], 30);
  EXPECT_EQ(doc["config"]["precision"]["default"]["format"], "mask:16");
  // Not a terminal: one progress line per evaluation.
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 3) << err;
  EXPECT_THAT(err, HasSubstr("iteration 10/30 (33%)"));
  EXPECT_THAT(err, HasSubstr("iteration 30/30 (100%)"));

  // Two threads: the same curve and result, bit for bit (timings aside).
  request.threads = 2;
  nlohmann::json two = RunJson(request);
  EXPECT_EQ(two["curve"], doc["curve"]);
  nlohmann::json a = doc["result"], b = two["result"];
  for (auto* r : {&a, &b}) {
    r->erase("images_per_second");
    r->erase("train_seconds");
  }
  EXPECT_EQ(a, b);
}

TEST_F(TrainCommandTest, SummaryAndTerminalProgressBar) {
  TrainRequest request;
  request.config_path = Write("tiny.yaml", kTinyTrial);
  request.sets = {"train.target_accuracy=0.99"};
  std::ostringstream out, err;
  ASSERT_TRUE(RunTrain(request, out, err, /*err_is_tty=*/true).ok());
  EXPECT_THAT(out.str(),
              AllOf(HasSubstr("outcome"), HasSubstr("completed"), HasSubstr("final test accuracy"),
                    HasSubstr("iterations to 99.00%"), HasSubstr("per-class recall")));
  EXPECT_THAT(err.str(), AllOf(StartsWith("\r["), HasSubstr("100% 30/30"), HasSubstr("test acc")));
  EXPECT_EQ(err.str().back(), '\n');
}

TEST_F(TrainCommandTest, CliRunsTrainWithoutAServerAndMapsErrorsToExitTwo) {
  const std::string config = Write("tiny.yaml", kTinyTrial);
  std::ostringstream out, err;
  CliEnvironment env;
  env.out = &out;
  env.err = &err;
  EXPECT_EQ(RunCli({"bitsweep", "--server", "127.0.0.1:1", "train", config, "--json", "--threads",
                    "2", "--set", "train.iterations=10"},
                   env),
            0)
      << err.str();
  EXPECT_EQ(nlohmann::json::parse(out.str())["result"]["iterations"], 10);

  std::ostringstream out2, err2;
  env.out = &out2;
  env.err = &err2;
  EXPECT_EQ(RunCli({"bitsweep", "train", (dir_ / "missing.yaml").string()}, env), 2);
  EXPECT_THAT(err2.str(), HasSubstr("cannot read config file"));
  // A dataset that is not there: the error names the file.
  EXPECT_EQ(RunCli({"bitsweep", "train", config, "--set", "dataset.name=mnist", "--set",
                    "model.conv=[]", "--data-dir", dir_.string()},
                   env),
            2);
  EXPECT_THAT(err2.str(), HasSubstr((dir_ / "mnist").string()));
  EXPECT_EQ(RunCli({"bitsweep", "train", config, "--threads", "0"}, env), 2);
}

}  // namespace
}  // namespace bitsweep::client
