#include "worker/trainer/network.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "worker/trainer/ops/loss.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;

v1::ModelConfig Model(std::vector<int> conv, int kernel, int pool, std::vector<int> dense,
                      const char* activation = "tanh") {
  v1::ModelConfig m;
  for (int c : conv) m.add_conv(c);
  m.set_kernel(kernel);
  m.set_pool(pool);
  for (int d : dense) m.add_dense(d);
  m.set_activation(activation);
  m.set_init("glorot");
  m.set_init_scale(1.0);
  return m;
}

// The whole network's backward pass against central differences of its loss, in fp32.
void CheckNetworkGradient(const v1::ModelConfig& model, int c, int h, int w) {
  const int n = 3, k = 4;
  auto net = Network::Create(model, c, h, w, k, n, 17);
  ASSERT_TRUE(net.ok()) << net.status();
  CounterRng rng(5);
  std::vector<float> x(int64_t{n} * c * h * w);
  for (float& v : x) v = static_cast<float>(rng.Uniform());
  const uint8_t labels[] = {0, 3, 1};
  SitePrecision fp32;
  auto loss = [&] {
    const float* z = (*net)->Forward(x.data(), n, fp32, 0);
    return LossForwardBackward(Loss::kCrossEntropy, n, k, z, labels, 0, nullptr, nullptr).loss_sum /
           n;
  };
  const float* z = (*net)->Forward(x.data(), n, fp32, 0);
  std::vector<float> dz(n * k);
  LossForwardBackward(Loss::kCrossEntropy, n, k, z, labels, 1.0f / n, dz.data(), nullptr);
  (*net)->Backward(dz.data(), n, fp32, 0);
  for (size_t p = 0; p < (*net)->params().size(); ++p) {
    Param& param = (*net)->params()[p];
    const std::vector<float> analytic = param.grad;
    // A sample of the entries keeps the test fast.
    for (size_t i = 0; i < param.value.size(); i += 1 + param.value.size() / 40) {
      const float saved = param.value[i];
      const double eps = 1e-2;
      param.value[i] = static_cast<float>(saved + eps);
      const double plus = loss();
      param.value[i] = static_cast<float>(saved - eps);
      const double minus = loss();
      param.value[i] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      EXPECT_NEAR(analytic[i], numeric, 2e-3 + 2e-2 * std::fabs(numeric))
          << "param " << p << "[" << i << "]";
    }
  }
}

TEST(NetworkTest, ConvPoolDenseGradientMatchesNumeric) {
  CheckNetworkGradient(Model({3, 2}, 3, 2, {5}), 2, 11, 10);
}

TEST(NetworkTest, ConvWithoutPoolingGradientMatchesNumeric) {
  CheckNetworkGradient(Model({2}, 2, 1, {}, "sigmoid"), 1, 5, 5);
}

TEST(NetworkTest, LogisticRegressionGradientMatchesNumeric) {
  CheckNetworkGradient(Model({}, 0, 1, {}), 1, 4, 4);
}

TEST(NetworkTest, DeepDenseGradientMatchesNumeric) {
  CheckNetworkGradient(Model({}, 0, 1, {6, 5, 4}), 1, 3, 3);
}

TEST(NetworkTest, PerLayerKernelsAndPoolsGradientMatchesNumeric) {
  // Smooth activations: with relu, a 1e-2 weight step moves pre-activations across the kink
  // (relu's own derivative is checked in ops/gradient_test.cc).
  for (const char* activation : {"sigmoid", "tanh"}) {
    v1::ModelConfig m = Model({3, 2}, 0, 0, {5}, activation);
    m.add_kernels(3);  // 12x11 -> 10x9, no pool -> kernel 2 -> 9x8 -> pool 2 -> 4x4
    m.add_kernels(2);
    m.add_pools(1);
    m.add_pools(2);
    SCOPED_TRACE(activation);
    CheckNetworkGradient(m, 2, 12, 11);
  }
}

TEST(NetworkTest, PerLayerKernelsDecideTheShapes) {
  v1::ModelConfig m = Model({4, 4}, 5, 2, {});
  m.add_kernels(3);
  m.add_kernels(3);
  m.add_pools(2);
  m.add_pools(1);
  // 16 -> 14 -> 7 -> 5 (no pool): the output layer sees 4·5·5 inputs.
  auto net = Network::Create(m, 1, 16, 16, 10, 2, 1);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ((*net)->params()[4].value.size(), 10u * 4 * 5 * 5);
  EXPECT_EQ((*net)->num_layers(), 3);
  EXPECT_EQ((*net)->LayerName(0), "conv0");
  EXPECT_EQ((*net)->LayerName(2), "output");
  m.set_kernels(1, 9);  // 7x7 input < 9x9
  auto bad = Network::Create(m, 1, 16, 16, 10, 2, 1);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("model.conv: conv layer 2"));
}

TEST(NetworkTest, ParameterCountsFollowTheModel) {
  // MNIST reference CNN: conv 32 (5x5) -> pool -> conv 32 -> pool -> 512 -> 256 -> 10.
  auto net = Network::Create(Model({32, 32}, 5, 2, {256}, "relu"), 1, 28, 28, 10, 2, 0);
  ASSERT_TRUE(net.ok());
  EXPECT_EQ((*net)->num_weights(),
            (32 * 25 + 32) + (32 * 32 * 25 + 32) + (512 * 256 + 256) + (256 * 10 + 10));
}

TEST(NetworkTest, TooManyConvLayersForTheImageNamesTheField) {
  auto net = Network::Create(Model({8, 8, 8}, 5, 2, {}), 1, 28, 28, 10, 2, 0);
  ASSERT_FALSE(net.ok());
  EXPECT_EQ(net.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(net.status().message()), HasSubstr("model.conv: conv layer 3"));
  EXPECT_THAT(std::string(net.status().message()), HasSubstr("model.kernel"));
  auto pooled = Network::Create(Model({8}, 3, 8, {}), 1, 6, 6, 10, 2, 0);
  ASSERT_FALSE(pooled.ok());
  EXPECT_THAT(std::string(pooled.status().message()), HasSubstr("model.pool"));
}

TEST(NetworkTest, OversizedNetworkIsResourceExhaustedBeforeAllocating) {
  // 1024 filters of 24x24 activations for 65536 examples: hundreds of GiB.
  auto net = Network::Create(Model({1024}, 5, 1, {}), 1, 28, 28, 10, 65536, 0);
  EXPECT_EQ(net.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(net.status().message()), HasSubstr("train.batch_size"));
}

TEST(NetworkTest, MemoryEstimateIsCloseToTheReferenceCnnsBuffers) {
  const v1::ModelConfig m = Model({32, 32}, 5, 2, {256}, "relu");
  const int64_t bytes = EstimateNetworkBytes(m, 1, 28, 28, 10, 128);
  EXPECT_GT(bytes, 10 << 20);
  EXPECT_LT(bytes, 100 << 20);
}

TEST(NetworkTest, InitialisationIsDeterministicFromTheSeed) {
  auto a = Network::Create(Model({4}, 3, 2, {8}), 1, 8, 8, 10, 2, 1);
  auto b = Network::Create(Model({4}, 3, 2, {8}), 1, 8, 8, 10, 2, 1);
  auto c = Network::Create(Model({4}, 3, 2, {8}), 1, 8, 8, 10, 2, 2);
  EXPECT_EQ((*a)->params()[0].value, (*b)->params()[0].value);
  EXPECT_NE((*a)->params()[0].value, (*c)->params()[0].value);
  for (float v : (*a)->params()[1].value) EXPECT_EQ(v, 0.0f);  // biases start at zero
}

TEST(NetworkTest, ConstantInitTimesScale) {
  v1::ModelConfig m = Model({}, 0, 1, {3});
  m.set_init("constant:0.5");
  m.set_init_scale(2.0);
  auto net = Network::Create(m, 1, 2, 2, 10, 1, 0);
  ASSERT_TRUE(net.ok());
  for (float v : (*net)->params()[0].value) EXPECT_EQ(v, 1.0f);
}

TEST(NetworkTest, ActivationsAreQuantisedInTheForwardPass) {
  auto net = Network::Create(Model({}, 0, 1, {16}, "relu"), 1, 4, 4, 10, 2, 3);
  ASSERT_TRUE(net.ok());
  std::vector<float> x(32, 0.37f);
  SitePrecision p;
  p.activations = Quantizer(*ParseFormat("mask:12"), Rounding::kTruncate);
  const float* z = (*net)->Forward(x.data(), 2, p, 0);
  for (int i = 0; i < 20; ++i) {
    const float v = z[i];
    EXPECT_EQ(Quantizer(*ParseFormat("mask:12"), Rounding::kTruncate).QuantizeOne(v, 0), v)
        << "logit " << i << " is not on the grid";
  }
}

TEST(NetworkTest, QuantizeWeightsPutsEveryParameterOnTheGrid) {
  auto net = Network::Create(Model({4}, 3, 2, {8}), 1, 8, 8, 10, 2, 4);
  ASSERT_TRUE(net.ok());
  SiteQuantizer q(Quantizer(*ParseFormat("fixed:8,4"), Rounding::kStochastic));
  (*net)->QuantizeWeights(q, 9);
  for (const Param& p : (*net)->params()) {
    for (float v : p.value) {
      EXPECT_EQ(v * 16, std::round(v * 16)) << v;
      EXPECT_LE(std::fabs(v), 8.0f);
    }
  }
}

TEST(NetworkTest, ErrorsAreQuantisedAsTheyArriveInTheBackwardPass) {
  // Logistic regression on one example: the output bias gradient is the quantised dlogits.
  auto net = Network::Create(Model({}, 0, 1, {}), 1, 2, 2, 4, 1, 0);
  ASSERT_TRUE(net.ok());
  SitePrecision p;
  p.errors = Quantizer(*ParseFormat("mask:10"), Rounding::kTruncate);  // 1 mantissa bit
  const std::vector<float> x = {0.1f, 0.2f, 0.3f, 0.4f};
  (*net)->Forward(x.data(), 1, p, 0);
  std::vector<float> dz = {0.3f, -0.7f, 0.2f, 0.2f};
  (*net)->Backward(dz.data(), 1, p, 0);
  const std::vector<float> want = {0.25f, -0.5f, 0.1875f, 0.1875f};
  EXPECT_EQ((*net)->params()[1].grad, want);
}

// DESIGN §4: where the activations site clipped a value (outside fixed:8,4's [-8, 7.9375]), the
// backward pass sends no error through it (clipped straight-through estimator); values inside
// the range pass theirs straight through.
TEST(NetworkTest, SaturatedActivationsPassNoErrorBack) {
  SitePrecision p;
  p.activations = Quantizer(*ParseFormat("fixed:8,4"), Rounding::kNearest);
  {  // Logistic regression: logits 10 and -10 saturate, 1 and 0.5 do not.
    auto net = Network::Create(Model({}, 0, 1, {}), 1, 1, 1, 4, 1, 0);
    ASSERT_TRUE(net.ok());
    (*net)->params()[0].value = {10.0f, 1.0f, -10.0f, 0.5f};
    (*net)->params()[1].value = {0, 0, 0, 0};
    const std::vector<float> x = {1.0f};
    (*net)->Forward(x.data(), 1, p, 0);
    std::vector<float> dz = {0.3f, -0.7f, 0.2f, 0.2f};
    (*net)->Backward(dz.data(), 1, p, 0);
    EXPECT_THAT((*net)->params()[1].grad, ::testing::ElementsAre(0.0f, -0.7f, 0.0f, 0.2f));
  }
  {  // A hidden relu layer: unit 0 (20) saturates, unit 1 (1) does not.
    auto net = Network::Create(Model({}, 0, 1, {2}, "relu"), 1, 1, 1, 1, 1, 0);
    ASSERT_TRUE(net.ok());
    std::vector<Param>& params = (*net)->params();
    params[0].value = {20.0f, 1.0f};
    params[1].value = {0, 0};
    params[2].value = {0.25f, 0.5f};
    params[3].value = {0};
    const std::vector<float> x = {1.0f};
    (*net)->Forward(x.data(), 1, p, 0);
    std::vector<float> dz = {1.0f};
    (*net)->Backward(dz.data(), 1, p, 0);
    EXPECT_THAT(params[1].grad, ::testing::ElementsAre(0.0f, 0.5f));
    // The output layer still sees the (clipped) value it was given.
    EXPECT_THAT(params[2].grad, ::testing::ElementsAre(7.9375f, 1.0f));
  }
  {  // A 1x1 conv block with 2 filters: filter 0's outputs (12) saturate.
    auto net = Network::Create(Model({2}, 1, 1, {}, "relu"), 1, 1, 1, 1, 1, 0);
    ASSERT_TRUE(net.ok());
    std::vector<Param>& params = (*net)->params();
    params[0].value = {12.0f, 3.0f};
    params[1].value = {0, 0};
    params[2].value = {0.25f, 0.25f};  // the logit, 2.73, stays in range
    params[3].value = {0};
    const std::vector<float> x = {1.0f};
    (*net)->Forward(x.data(), 1, p, 0);
    std::vector<float> dz = {1.0f};
    (*net)->Backward(dz.data(), 1, p, 0);
    EXPECT_THAT(params[1].grad, ::testing::ElementsAre(0.0f, 0.25f));
  }
  {  // Without quantisation nothing is clipped: the same conv passes both errors.
    auto net = Network::Create(Model({2}, 1, 1, {}, "relu"), 1, 1, 1, 1, 1, 0);
    ASSERT_TRUE(net.ok());
    std::vector<Param>& params = (*net)->params();
    params[0].value = {12.0f, 3.0f};
    params[1].value = {0, 0};
    params[2].value = {0.25f, 0.25f};
    params[3].value = {0};
    SitePrecision fp32;
    const std::vector<float> x = {1.0f};
    (*net)->Forward(x.data(), 1, fp32, 0);
    std::vector<float> dz = {1.0f};
    (*net)->Backward(dz.data(), 1, fp32, 0);
    EXPECT_THAT(params[1].grad, ::testing::ElementsAre(0.25f, 0.25f));
  }
}

TEST(NetworkTest, GradientsSiteRoundsEveryWeightGradient) {
  auto net = Network::Create(Model({4}, 3, 2, {8}), 1, 8, 8, 10, 2, 4);
  ASSERT_TRUE(net.ok());
  std::vector<float> x(128);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) / 7.0f;
  SitePrecision p;
  (*net)->Forward(x.data(), 2, p, 0);
  std::vector<float> dz(20, 0.0f);
  dz[3] = 0.37f;
  dz[12] = -0.61f;
  (*net)->Backward(dz.data(), 2, p, 0);
  SiteQuantizer q(Quantizer(*ParseFormat("fixed:12,10"), Rounding::kStochastic));
  (*net)->QuantizeGradients(q, 5);
  int nonzero = 0;
  for (const Param& param : (*net)->params()) {
    for (float g : param.grad) {
      EXPECT_EQ(g * 1024, std::round(g * 1024)) << g;
      EXPECT_LE(std::fabs(g), 2.0f);
      nonzero += g != 0;
    }
  }
  EXPECT_GT(nonzero, 10);
}

TEST(NetworkTest, MasterWeightsAreKeptAndTheValuesAreTheirRounding) {
  auto net = Network::Create(Model({}, 0, 1, {4}), 1, 2, 2, 3, 1, 4);
  ASSERT_TRUE(net.ok());
  (*net)->KeepMasterWeights();
  SiteQuantizer q(Quantizer(*ParseFormat("fixed:8,2"), Rounding::kNearest));
  const std::vector<float> master = (*net)->params()[0].master;
  (*net)->QuantizeWeights(q, 1);
  const Param& p = (*net)->params()[0];
  EXPECT_EQ(p.master, master);  // the float32 copy is untouched
  for (size_t i = 0; i < p.value.size(); ++i) {
    EXPECT_EQ(p.value[i], std::nearbyint(master[i] * 4) / 4) << i;
  }
}

}  // namespace
}  // namespace bitsweep::trainer
