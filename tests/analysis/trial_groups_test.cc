#include "analysis/trial_groups.h"

#include <vector>

#include "gtest/gtest.h"
#include "tests/analysis/trial_fixture.h"

namespace bitsweep::analysis {
namespace {

TEST(GroupTrialsTest, TrialsDifferingOnlyInSeed_FormOneGroup) {
  std::vector<v1::Trial> trials = {
      DoneTrial({{kFormat, "fp32"}}, 0, 0.90), DoneTrial({{kFormat, "mask:12"}}, 0, 0.50),
      DoneTrial({{kFormat, "fp32"}}, 1, 0.92), DoneTrial({{kFormat, "mask:12"}}, 1, 0.70)};
  const std::vector<TrialGroup> groups = GroupTrials(trials);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].Value(kFormat), "fp32");
  EXPECT_EQ(groups[0].final_accuracy.n, 2);
  EXPECT_NEAR(groups[0].final_accuracy.mean, 0.91, 1e-12);
  EXPECT_NEAR(groups[1].final_accuracy.mean, 0.60, 1e-12);
  EXPECT_EQ(groups[1].completed, 2);
}

TEST(GroupTrialsTest, CountsOutcomes_PrunedAndFailedHaveNoAccuracy) {
  std::vector<v1::Trial> trials;
  trials.push_back(DoneTrial({{kFormat, "mask:9"}}, 0, 0.10));
  trials.back().mutable_result()->set_outcome(v1::TRIAL_OUTCOME_DIVERGED);
  trials.push_back(DoneTrial({{kFormat, "mask:9"}}, 1, 0.99));
  trials.back().mutable_result()->set_outcome(v1::TRIAL_OUTCOME_PRUNED);
  trials.push_back(DoneTrial({{kFormat, "mask:9"}}, 2, 0.99));
  trials.back().set_state(v1::TRIAL_STATE_FAILED);
  trials.push_back(DoneTrial({{kFormat, "mask:9"}}, 3, 0.99));
  trials.back().set_state(v1::TRIAL_STATE_RUNNING);
  trials.push_back(DoneTrial({{kFormat, "mask:9"}}, 4, 0.99));
  trials.back().set_state(v1::TRIAL_STATE_CANCELLED);
  const std::vector<TrialGroup> groups = GroupTrials(trials);
  ASSERT_EQ(groups.size(), 1u);
  const TrialGroup& g = groups[0];
  EXPECT_EQ(g.diverged, 1);
  EXPECT_EQ(g.pruned, 1);
  EXPECT_EQ(g.failed, 1);
  EXPECT_EQ(g.unfinished, 1);
  EXPECT_EQ(g.cancelled, 1);
  EXPECT_EQ(g.completed, 0);
  EXPECT_EQ(g.final_accuracy.n, 1);  // the diverged trial's accuracy only
  EXPECT_NEAR(g.final_accuracy.mean, 0.10, 1e-12);
}

TEST(WithoutPathsTest, DropsListedPaths) {
  const std::vector<ParamValue> p = {{kFormat, "fp32"}, {kRounding, "truncate"}};
  const std::vector<ParamValue> expected = {{kRounding, "truncate"}};
  EXPECT_EQ(WithoutPaths(p, {kFormat}), expected);
  EXPECT_EQ(DescribeParams(p), "default.format=fp32, default.rounding=truncate");
}

}  // namespace
}  // namespace bitsweep::analysis
