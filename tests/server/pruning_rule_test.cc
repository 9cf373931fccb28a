#include "server/pruning_rule.h"

#include <gtest/gtest.h>

namespace bitsweep::server {
namespace {

v1::PruningConfig Median(std::vector<int64_t> at, int min_trials = 0) {
  v1::PruningConfig config;
  config.set_rule("median");
  for (int64_t iteration : at) config.add_at_iterations(iteration);
  config.set_min_trials(min_trials);
  return config;
}

TEST(PruningRuleTest, NoRule_NeverPrunes) {
  absl::StatusOr<PruningRule> rule = PruningRule::FromConfig(v1::PruningConfig());
  ASSERT_TRUE(rule.ok());
  EXPECT_FALSE(rule->enabled());
  EXPECT_FALSE(rule->DecidesAt(100));
  EXPECT_FALSE(rule->ShouldPrune(0.0, {0.9, 0.9, 0.9, 0.9, 0.9, 0.9}));
}

TEST(PruningRuleTest, Median_PrunesBelowTheMedianOfOthersAtItsIterations) {
  absl::StatusOr<PruningRule> rule = PruningRule::FromConfig(Median({200, 100}, 3));
  ASSERT_TRUE(rule.ok()) << rule.status();
  EXPECT_TRUE(rule->DecidesAt(100));
  EXPECT_TRUE(rule->DecidesAt(200));
  EXPECT_FALSE(rule->DecidesAt(150));
  EXPECT_TRUE(rule->ShouldPrune(0.4, {0.5, 0.6, 0.7}));        // median 0.6
  EXPECT_FALSE(rule->ShouldPrune(0.6, {0.5, 0.6, 0.7}));       // at the median: kept
  EXPECT_TRUE(rule->ShouldPrune(0.54, {0.5, 0.6, 0.7, 0.2}));  // median (0.5 + 0.6) / 2
  EXPECT_FALSE(rule->ShouldPrune(0.56, {0.5, 0.6, 0.7, 0.2}));
}

TEST(PruningRuleTest, Median_WaitsForMinTrials_DefaultFive) {
  absl::StatusOr<PruningRule> rule = PruningRule::FromConfig(Median({100}));
  ASSERT_TRUE(rule.ok());
  EXPECT_FALSE(rule->ShouldPrune(0.1, {0.9, 0.9, 0.9, 0.9}));
  EXPECT_TRUE(rule->ShouldPrune(0.1, {0.9, 0.9, 0.9, 0.9, 0.9}));
}

TEST(PruningRuleTest, BadConfigs_AreReportedWithTheField) {
  v1::PruningConfig unknown = Median({100});
  unknown.set_rule("hyperband");
  EXPECT_EQ(PruningRule::FromConfig(unknown).status().message(),
            "sweep.pruning.rule: 'hyperband' is unknown (known: median)");
  EXPECT_EQ(PruningRule::FromConfig(Median({})).status().message(),
            "sweep.pruning.at_iterations: the median rule needs at least one iteration");
  EXPECT_EQ(PruningRule::FromConfig(Median({100, 0})).status().message(),
            "sweep.pruning.at_iterations[1]: 0 is not a positive iteration");
  EXPECT_EQ(PruningRule::FromConfig(Median({100}, -1)).status().message(),
            "sweep.pruning.min_trials: -1 is negative");
  v1::PruningConfig no_rule;
  no_rule.add_at_iterations(5);
  EXPECT_EQ(PruningRule::FromConfig(no_rule).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bitsweep::server
