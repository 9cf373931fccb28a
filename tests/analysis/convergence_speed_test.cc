#include "analysis/convergence_speed.h"

#include <vector>

#include "gtest/gtest.h"
#include "tests/analysis/trial_fixture.h"

namespace bitsweep::analysis {
namespace {

std::vector<v1::Trial> Fixture() {
  return {
      // mask:12: stochastic 60, 80 (mean 70) vs truncate 100, 100 -> 0.7
      DoneTrial({{kFormat, "mask:12"}, {kRounding, "stochastic"}}, 0, 0.9, 60),
      DoneTrial({{kFormat, "mask:12"}, {kRounding, "stochastic"}}, 1, 0.9, 80),
      DoneTrial({{kFormat, "mask:12"}, {kRounding, "truncate"}}, 0, 0.9, 100),
      DoneTrial({{kFormat, "mask:12"}, {kRounding, "truncate"}}, 1, 0.9, 100),
      // mask:10: stochastic 30 vs truncate 50 (the second never reached the target) -> 0.6
      DoneTrial({{kFormat, "mask:10"}, {kRounding, "stochastic"}}, 0, 0.9, 30),
      DoneTrial({{kFormat, "mask:10"}, {kRounding, "truncate"}}, 0, 0.9, 50),
      DoneTrial({{kFormat, "mask:10"}, {kRounding, "truncate"}}, 1, 0.2, -1),
      // fp32: rounding changes nothing
      DoneTrial({{kFormat, "fp32"}, {kRounding, "stochastic"}}, 0, 0.9, 100),
      DoneTrial({{kFormat, "fp32"}, {kRounding, "truncate"}}, 0, 0.9, 100),
  };
}

TEST(CompareConvergenceTest, PooledRatioOfSliceMeans_WithBootstrapInterval) {
  const std::vector<TrialGroup> groups = GroupTrials(Fixture());
  ConvergenceOptions options;
  options.exclude_path = kFormat;
  options.exclude_values = {"fp32"};
  auto report = CompareConvergence(groups, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->compared_slices, 2);
  ASSERT_EQ(report->slices.size(), 2u);
  EXPECT_NEAR(report->slices[0].ratio, 0.7, 1e-12);
  EXPECT_NEAR(report->slices[1].ratio, 0.6, 1e-12);
  EXPECT_EQ(report->slices[1].b_missed, 1);
  // (70 + 30) / (100 + 50)
  EXPECT_NEAR(report->ratio, 100.0 / 150.0, 1e-12);
  EXPECT_NEAR(report->speedup(), 1.0 / 3.0, 1e-12);
  EXPECT_LE(report->ci_low, report->ratio);
  EXPECT_GE(report->ci_high, report->ratio);
  EXPECT_LT(report->ci_low, report->ci_high);  // the 60/80 cell has spread
  // Resampling 60/80 alone moves the ratio between (60+30)/150 and (80+30)/150.
  EXPECT_GE(report->ci_low, 90.0 / 150.0 - 1e-12);
  EXPECT_LE(report->ci_high, 110.0 / 150.0 + 1e-12);
}

TEST(CompareConvergenceTest, IncludingBaselineSlices_DilutesTheRatio) {
  const std::vector<TrialGroup> groups = GroupTrials(Fixture());
  auto report = CompareConvergence(groups, ConvergenceOptions());
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->compared_slices, 3);
  EXPECT_NEAR(report->ratio, 200.0 / 250.0, 1e-12);
}

TEST(CompareConvergenceTest, AxisWithoutBothValues_IsAnError) {
  const std::vector<TrialGroup> groups =
      GroupTrials(std::vector<v1::Trial>{DoneTrial({{kRounding, "truncate"}}, 0, 0.9, 10)});
  auto report = CompareConvergence(groups, ConvergenceOptions());
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.status().message().find("stochastic"), std::string::npos);
}

}  // namespace
}  // namespace bitsweep::analysis
