#include "client/analyze_command.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace bitsweep::client {
namespace {

v1::Trial Done(const std::string& format, const std::string& rounding, uint64_t seed,
               double accuracy, int64_t iterations) {
  static int64_t id = 1;
  v1::Trial t;
  t.set_id(id++);
  t.set_state(v1::TRIAL_STATE_DONE);
  t.set_seed(seed);
  for (const auto& [path, value] :
       {std::pair<std::string, std::string>{"precision.default.format", format},
        {"precision.default.rounding", rounding}}) {
    v1::TrialParam* p = t.add_params();
    p->set_path(path);
    p->set_value(value);
  }
  t.mutable_result()->set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  t.mutable_result()->set_final_test_accuracy(accuracy);
  t.mutable_result()->set_iterations_to_target(iterations);
  return t;
}

// Truncate loses accuracy below 14 bits, stochastic below 12; stochastic converges in 3/4 of
// the iterations at low precision.
std::vector<v1::Trial> Fixture() {
  std::vector<v1::Trial> trials;
  for (uint64_t seed : {0u, 1u}) {
    const double jitter = seed ? 0.001 : -0.001;
    trials.push_back(Done("fp32", "truncate", seed, 0.98 + jitter, 40));
    trials.push_back(Done("fp32", "stochastic", seed, 0.98 + jitter, 40));
    trials.push_back(Done("mask:14", "truncate", seed, 0.978 + jitter, 80));
    trials.push_back(Done("mask:14", "stochastic", seed, 0.979 + jitter, 60));
    trials.push_back(Done("mask:12", "truncate", seed, 0.90 + jitter, 120));
    trials.push_back(Done("mask:12", "stochastic", seed, 0.978 + jitter, 90));
  }
  return trials;
}

TEST(WriteAnalysisTest, Text_ShowsToleranceKneeConvergenceAndSensitivity) {
  std::ostringstream out;
  ASSERT_TRUE(WriteAnalysis(Fixture(), AnalyzeRequest{1, false, 0.5, ""}, out).ok());
  const std::string text = out.str();
  EXPECT_NE(text.find("12 trials in 6 groups"), std::string::npos) << text;
  EXPECT_NE(text.find("default.rounding=truncate: fp32 98.00%; fewest bits 14"), std::string::npos)
      << text;
  EXPECT_NE(text.find("below: mask:12 90.00% (n=2)"), std::string::npos) << text;
  EXPECT_NE(text.find("default.rounding=stochastic: fp32 98.00%; fewest bits 12"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("knee 14 -> 12 bits (-7.80 points)"), std::string::npos) << text;
  // (60 + 90) / (80 + 120) = 0.75
  EXPECT_NE(text.find("ratio stochastic/truncate = 0.750"), std::string::npos) << text;
  EXPECT_NE(text.find("needs 25.0% fewer iterations"), std::string::npos) << text;
  EXPECT_NE(text.find(" 1. precision.default."), std::string::npos) << text;
}

// A narrower width that happens to score higher (n = 1) is a rise at the knee, printed with
// its sign ("--0.50" before the fix), and no change prints as +0.00.
TEST(WriteAnalysisTest, Text_KneeChangeIsSigned) {
  for (const auto& [narrow, want] : {std::pair<double, const char*>{0.955, "(+0.50 points)"},
                                     {0.95, "(+0.00 points)"},
                                     {0.94, "(-1.00 points)"}}) {
    std::ostringstream out;
    ASSERT_TRUE(WriteAnalysis({Done("fp32", "truncate", 0, 0.95, 40),
                               Done("mask:16", "truncate", 0, narrow, 40)},
                              AnalyzeRequest{1, false, 0.5, ""}, out)
                    .ok());
    EXPECT_NE(out.str().find(std::string("knee 32 -> 16 bits ") + want), std::string::npos)
        << out.str();
  }
}

TEST(WriteAnalysisTest, Json_HasTheSameAnswers) {
  std::ostringstream out;
  ASSERT_TRUE(WriteAnalysis(Fixture(), AnalyzeRequest{1, true, 0.5, ""}, out).ok());
  const nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["groups"].size(), 6u);
  EXPECT_EQ(j["tolerance"]["slices"][0]["min_bits"], 14);
  EXPECT_EQ(j["tolerance"]["slices"][1]["min_bits"], 12);
  EXPECT_NEAR(j["convergence"]["ratio"].get<double>(), 0.75, 1e-12);
  EXPECT_EQ(j["sensitivity"]["observations"], 12);
  EXPECT_TRUE(j["groups"][0]["ci95"][0].is_number());
}

TEST(WriteAnalysisTest, BadAxisOrDelta_AreErrors) {
  std::ostringstream out;
  EXPECT_FALSE(WriteAnalysis(Fixture(), AnalyzeRequest{1, false, 0.5, "model.dense"}, out).ok());
  EXPECT_FALSE(WriteAnalysis(Fixture(), AnalyzeRequest{1, false, -1, ""}, out).ok());
}

TEST(WriteAnalysisTest, NoPrecisionAxis_StillSummarises) {
  std::vector<v1::Trial> trials = Fixture();
  for (v1::Trial& t : trials) t.mutable_params()->DeleteSubrange(0, 1);
  std::ostringstream out;
  ASSERT_TRUE(WriteAnalysis(trials, AnalyzeRequest{1, false, 0.5, ""}, out).ok());
  EXPECT_NE(out.str().find("precision tolerance: the sweep has no precision axis"),
            std::string::npos)
      << out.str();
}

}  // namespace
}  // namespace bitsweep::client
