#include "worker/trainer/optim/optimizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

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

TEST(OptimizerTest, ParsesEveryOptimizerAndRejectsUnknownOnesWithTheSupportedList) {
  EXPECT_EQ(*ParseOptimizer("momentum"), OptimizerKind::kMomentum);
  EXPECT_EQ(*ParseOptimizer("adam"), OptimizerKind::kAdam);
  EXPECT_EQ(*ParseOptimizer("adagrad"), OptimizerKind::kAdagrad);
  EXPECT_EQ(*ParseOptimizer("rmsprop"), OptimizerKind::kRmsprop);
  auto bad = ParseOptimizer("lbfgs");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              ::testing::HasSubstr("supported: sgd, momentum, adam, adagrad, rmsprop"));
}

OptimizerOptions Options(OptimizerKind kind) {
  OptimizerOptions o;
  o.kind = kind;
  return o;
}

TEST(OptimizerTest, AdamMatchesKingmaBaByHand) {
  std::vector<Param> params(1);
  params[0].value = {1.0f, 1.0f};
  params[0].grad = {0.5f, -2.0f};
  OptimizerOptions o = Options(OptimizerKind::kAdam);
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.eps = 1e-8;
  Optimizer opt(o);
  // t = 1: m = 0.1 g, v = 0.01 g², m̂ = g, v̂ = g²: the step is lr·sign(g) (up to ε).
  opt.Step(params, 0.1);
  EXPECT_NEAR(params[0].value[0], 0.9f, 1e-6);
  EXPECT_NEAR(params[0].value[1], 1.1f, 1e-6);
  EXPECT_FLOAT_EQ(params[0].velocity[0], 0.05f);
  EXPECT_NEAR(params[0].second[1], 0.04f, 1e-7);
  // t = 2 with g = 0.5 again for element 0: m = 0.09·0.5·... by hand in double.
  params[0].grad = {0.5f, 0.0f};
  opt.Step(params, 0.1);
  const double m = 0.9 * 0.05 + 0.1 * 0.5, v = 0.99 * 0.0025 + 0.01 * 0.25;
  const double mh = m / (1 - 0.81), vh = v / (1 - 0.9801);
  EXPECT_NEAR(params[0].value[0], 0.9 - 0.1 * mh / (std::sqrt(vh) + 1e-8), 1e-6);
  // Element 1: m = 0.9·(-0.2), v = 0.99·0.04.
  const double m1 = 0.9 * -0.2, v1 = 0.99 * 0.04;
  EXPECT_NEAR(params[0].value[1], 1.1 - 0.1 * (m1 / 0.19) / (std::sqrt(v1 / 0.0199) + 1e-8), 1e-6);
}

TEST(OptimizerTest, AdagradAccumulatesSquaredGradients) {
  std::vector<Param> params(1);
  params[0].value = {1.0f};
  params[0].grad = {2.0f};
  OptimizerOptions o = Options(OptimizerKind::kAdagrad);
  o.eps = 1e-8;
  Optimizer opt(o);
  opt.Step(params, 0.1);  // G = 4, w = 1 - 0.1·2/2 = 0.9
  EXPECT_NEAR(params[0].value[0], 0.9f, 1e-6);
  params[0].grad = {1.0f};
  opt.Step(params, 0.1);  // G = 5, w = 0.9 - 0.1/√5
  EXPECT_FLOAT_EQ(params[0].velocity[0], 5.0f);
  EXPECT_NEAR(params[0].value[0], 0.9 - 0.1 / std::sqrt(5.0), 1e-6);
}

TEST(OptimizerTest, RmspropKeepsADecayingMeanSquare) {
  std::vector<Param> params(1);
  params[0].value = {0.0f};
  params[0].grad = {1.0f};
  OptimizerOptions o = Options(OptimizerKind::kRmsprop);
  o.rho = 0.9;
  o.eps = 0;
  Optimizer opt(o);
  opt.Step(params, 0.01);  // s = 0.1, w = -0.01/√0.1
  EXPECT_NEAR(params[0].velocity[0], 0.1f, 1e-7);
  EXPECT_NEAR(params[0].value[0], -0.01 / std::sqrt(0.1), 1e-7);
  params[0].grad = {-2.0f};
  opt.Step(params, 0.01);  // s = 0.09 + 0.4 = 0.49, w += 0.02/0.7
  EXPECT_NEAR(params[0].velocity[0], 0.49f, 1e-6);
  EXPECT_NEAR(params[0].value[0], -0.01 / std::sqrt(0.1) + 0.02 / 0.7, 1e-6);
}

TEST(OptimizerTest, WeightDecayAppliesToWeightsButNotBiases) {
  std::vector<Param> params(2);
  params[0].value = {2.0f};
  params[0].grad = {0.0f};
  params[1].value = {2.0f};
  params[1].grad = {0.0f};
  params[1].is_bias = true;
  OptimizerOptions o = Options(OptimizerKind::kSgd);
  o.weight_decay = 0.5;
  Optimizer(o).Step(params, 0.1);  // g = 0 + 0.5·2 = 1
  EXPECT_FLOAT_EQ(params[0].value[0], 1.9f);
  EXPECT_FLOAT_EQ(params[1].value[0], 2.0f);
  EXPECT_FLOAT_EQ(params[0].grad[0], 0.0f);  // the gradient itself is left alone
}

TEST(OptimizerTest, MasterWeightsAreWhatTheOptimiserUpdates) {
  std::vector<Param> params(1);
  params[0].value = {1.0f};
  params[0].master = {1.25f};
  params[0].grad = {1.0f};
  Optimizer(OptimizerKind::kSgd, 0).Step(params, 0.25);
  EXPECT_FLOAT_EQ(params[0].master[0], 1.0f);
  EXPECT_FLOAT_EQ(params[0].value[0], 1.0f);  // untouched: the trainer re-rounds it
}

TEST(OptimizerTest, StateIsRoundedBeforeTheWeightsUseIt) {
  std::vector<Param> params(1);
  params[0].value = {0.0f};
  params[0].grad = {0.3f};
  std::vector<int> tensors;
  Optimizer(OptimizerKind::kMomentum, 0.9)
      .Step(params, 1.0, [&](int tensor, float* data, int64_t n) {
        tensors.push_back(tensor);
        for (int64_t i = 0; i < n; ++i) data[i] = std::round(data[i] * 4) / 4;  // v -> 0.25
      });
  EXPECT_EQ(tensors, std::vector<int>{0});
  EXPECT_FLOAT_EQ(params[0].velocity[0], 0.25f);
  EXPECT_FLOAT_EQ(params[0].value[0], -0.25f);
  // adam rounds both moments: tensors 2i and 2i+1.
  tensors.clear();
  Optimizer(Options(OptimizerKind::kAdam)).Step(params, 1.0, [&](int t, float*, int64_t) {
    tensors.push_back(t);
  });
  EXPECT_EQ(tensors, (std::vector<int>{0, 1}));
}

}  // namespace
}  // namespace bitsweep::trainer
