#include "worker/trainer/optim/optimizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bitsweep::trainer {
namespace {

TEST(OptimizerTest, SgdSubtractsLrTimesGradient) {
  std::vector<Param> params(1);
  params[0].value = {1.0f, -2.0f};
  params[0].grad = {0.5f, -1.0f};
  Optimizer(OptimizerKind::kSgd, 0.9).Step(params, 0.1);
  EXPECT_FLOAT_EQ(params[0].value[0], 0.95f);
  EXPECT_FLOAT_EQ(params[0].value[1], -1.9f);
}

TEST(OptimizerTest, MomentumAccumulatesVelocity) {
  std::vector<Param> params(1);
  params[0].value = {1.0f};
  params[0].grad = {1.0f};
  Optimizer opt(OptimizerKind::kMomentum, 0.5);
  opt.Step(params, 0.1);  // v = 1, w = 0.9
  EXPECT_FLOAT_EQ(params[0].value[0], 0.9f);
  opt.Step(params, 0.1);  // v = 0.5 + 1 = 1.5, w = 0.75
  EXPECT_FLOAT_EQ(params[0].velocity[0], 1.5f);
  EXPECT_FLOAT_EQ(params[0].value[0], 0.75f);
}

TEST(OptimizerTest, LaterIssueOptimizersAreRejectedWithTheSupportedList) {
  auto adam = ParseOptimizer("adam");
  ASSERT_FALSE(adam.ok());
  EXPECT_THAT(std::string(adam.status().message()),
              ::testing::HasSubstr("not supported yet; supported: sgd, momentum"));
  EXPECT_FALSE(ParseOptimizer("lbfgs").ok());
  EXPECT_EQ(*ParseOptimizer("momentum"), OptimizerKind::kMomentum);
}

}  // namespace
}  // namespace bitsweep::trainer
