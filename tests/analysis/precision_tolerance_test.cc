#include "analysis/precision_tolerance.h"

#include <vector>

#include "gtest/gtest.h"
#include "tests/analysis/trial_fixture.h"

namespace bitsweep::analysis {
namespace {

// Two seeds per width; means fp32 0.98, 16 bits 0.978, 14 bits 0.976, 12 bits 0.96, 10 bits 0.5.
std::vector<v1::Trial> Sweep(const std::string& rounding) {
  std::vector<v1::Trial> t;
  for (const auto& [format, acc] : std::vector<std::pair<std::string, double>>{{"fp32", 0.98},
                                                                               {"mask:16", 0.978},
                                                                               {"mask:14", 0.976},
                                                                               {"mask:12", 0.96},
                                                                               {"mask:10", 0.5}}) {
    t.push_back(DoneTrial({{kFormat, format}, {kRounding, rounding}}, 0, acc - 0.001));
    t.push_back(DoneTrial({{kFormat, format}, {kRounding, rounding}}, 1, acc + 0.001));
  }
  return t;
}

TEST(PrecisionToleranceTest, FewestBitsWithinDelta_WithEvidenceAndKnee) {
  const std::vector<TrialGroup> groups = GroupTrials(Sweep("truncate"));
  auto report = PrecisionTolerance(groups, kFormat, 0.005);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->slices.size(), 1u);
  const ToleranceSlice& s = report->slices[0];
  ASSERT_NE(s.baseline, nullptr);
  EXPECT_NEAR(s.baseline->final_accuracy.mean, 0.98, 1e-12);
  ASSERT_EQ(s.widths.size(), 4u);
  EXPECT_EQ(s.min_bits, 14);
  EXPECT_EQ(s.widths[s.min_index].format, "mask:14");
  ASSERT_GE(s.below_index, 0);
  EXPECT_EQ(s.widths[s.below_index].format, "mask:12");
  EXPECT_FALSE(s.widths[s.below_index].within);
  EXPECT_EQ(s.knee_from_bits, 12);
  EXPECT_EQ(s.knee_to_bits, 10);
  EXPECT_NEAR(s.knee_drop, 0.46, 1e-12);
}

TEST(PrecisionToleranceTest, LargerDelta_AdmitsFewerBits) {
  const std::vector<TrialGroup> groups = GroupTrials(Sweep("truncate"));
  EXPECT_EQ(PrecisionTolerance(groups, kFormat, 0.03)->slices[0].min_bits, 12);
  EXPECT_EQ(PrecisionTolerance(groups, kFormat, 0.0)->slices[0].min_bits, -1);
}

TEST(PrecisionToleranceTest, OneSlicePerValueOfTheOtherAxes) {
  std::vector<v1::Trial> trials = Sweep("truncate");
  for (v1::Trial& t : Sweep("stochastic")) {
    // Stochastic rounding holds 12 bits in this fixture.
    if (t.params(0).value() == "mask:12") t.mutable_result()->set_final_test_accuracy(0.979);
    trials.push_back(t);
  }
  const std::vector<TrialGroup> groups = GroupTrials(trials);
  auto report = PrecisionTolerance(groups, kFormat, 0.005);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->slices.size(), 2u);
  EXPECT_EQ(report->slices[0].others[0].value, "truncate");
  EXPECT_EQ(report->slices[0].min_bits, 14);
  EXPECT_EQ(report->slices[1].min_bits, 12);
}

TEST(PrecisionToleranceTest, AccuracyMustStayWithinAboveTheAnswer) {
  // 12 bits is within δ but 14 is not: the answer is 16, not 12.
  std::vector<v1::Trial> t = {
      DoneTrial({{kFormat, "fp32"}}, 0, 0.98), DoneTrial({{kFormat, "mask:16"}}, 0, 0.98),
      DoneTrial({{kFormat, "mask:14"}}, 0, 0.90), DoneTrial({{kFormat, "mask:12"}}, 0, 0.98)};
  const std::vector<TrialGroup> groups = GroupTrials(t);
  auto report = PrecisionTolerance(groups, kFormat, 0.005);
  EXPECT_EQ(report->slices[0].min_bits, 16);
}

TEST(PrecisionToleranceTest, NoBaseline_NoAnswerButKnee) {
  const std::vector<TrialGroup> groups = GroupTrials(std::vector<v1::Trial>{
      DoneTrial({{kFormat, "mask:16"}}, 0, 0.9), DoneTrial({{kFormat, "mask:8"}}, 0, 0.1)});
  auto report = PrecisionTolerance(groups, kFormat, 0.005);
  EXPECT_EQ(report->slices[0].baseline, nullptr);
  EXPECT_EQ(report->slices[0].min_bits, -1);
  EXPECT_NEAR(report->slices[0].knee_drop, 0.8, 1e-12);
}

TEST(PrecisionToleranceTest, NonFormatValue_IsAnErrorNamingTheAxis) {
  const std::vector<TrialGroup> groups =
      GroupTrials(std::vector<v1::Trial>{DoneTrial({{kFormat, "mask:x"}}, 0, 0.9)});
  auto report = PrecisionTolerance(groups, kFormat, 0.005);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.status().message().find(kFormat), std::string::npos);
}

TEST(FindPrecisionAxisTest, PrefersDefaultFormat_ElseAnyFormatAxis) {
  const std::vector<TrialGroup> a = GroupTrials(std::vector<v1::Trial>{
      DoneTrial({{"precision.weights.format", "mask:9"}, {kFormat, "fp32"}}, 0, 0.9)});
  EXPECT_EQ(*FindPrecisionAxis(a, ""), kFormat);
  const std::vector<TrialGroup> b = GroupTrials(std::vector<v1::Trial>{
      DoneTrial({{"train.batch_size", "32"}, {"precision.weights.format", "mask:9"}}, 0, 0.9)});
  EXPECT_EQ(*FindPrecisionAxis(b, ""), "precision.weights.format");
  EXPECT_FALSE(FindPrecisionAxis(b, kFormat).ok());
  const std::vector<TrialGroup> c =
      GroupTrials(std::vector<v1::Trial>{DoneTrial({{"train.batch_size", "32"}}, 0, 0.9)});
  EXPECT_FALSE(FindPrecisionAxis(c, "").ok());
}

}  // namespace
}  // namespace bitsweep::analysis
