#include "worker/trainer/analysis/noise_gain.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "worker/trainer/ops/conv.h"
#include "worker/trainer/ops/pool.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

v1::ModelConfig Model(std::vector<int> conv, std::vector<int> dense) {
  v1::ModelConfig m;
  for (int c : conv) m.add_conv(c);
  m.set_kernel(3);
  m.set_pool(2);
  for (int d : dense) m.add_dense(d);
  m.set_activation("tanh");  // smooth: central differences are accurate
  m.set_init("glorot");
  m.set_init_scale(1.0);
  return m;
}

std::vector<float> Inputs(int64_t n, int64_t size, uint64_t seed) {
  CounterRng rng(seed);
  std::vector<float> x(n * size);
  for (float& v : x) v = static_cast<float>(rng.Uniform());
  return x;
}

SitePrecision kFp32;

// Σ_{i≠ŷ} Σ_h (∂D_i/∂h)² / (24 D_i²) for one input, with the derivatives by central
// differences of `logits(h + ε) − logits(h − ε)` over the entries `h` of `values`.
template <typename Logits>
double FiniteDifferenceGain(std::vector<float>& values, const Logits& logits, int k) {
  const std::vector<float> z = logits();
  int top = 0;
  for (int i = 1; i < k; ++i) top = z[i] > z[top] ? i : top;
  double total = 0;
  for (int i = 0; i < k; ++i) {
    if (i == top) continue;
    const double d = double(z[i]) - z[top];
    double sum = 0;
    for (float& h : values) {
      const float saved = h;
      const double eps = 1e-2;
      h = static_cast<float>(saved + eps);
      const std::vector<float> plus = logits();
      h = static_cast<float>(saved - eps);
      const std::vector<float> minus = logits();
      h = saved;
      const double g = ((plus[i] - plus[top]) - (minus[i] - minus[top])) / (2 * eps);
      sum += g * g;
    }
    total += sum / (24 * d * d);
  }
  return total;
}

TEST(NoiseGainTest, DenseNetwork_MatchesFiniteDifferences) {
  const int in = 4, hidden = 5, k = 3, n = 3;
  const v1::ModelConfig model = Model({}, {hidden});
  auto net = Network::Create(model, 1, 1, in, k, n, 11);
  ASSERT_TRUE(net.ok()) << net.status();
  const std::vector<float> x = Inputs(n, in, 3);
  auto report = ComputeNoiseGains(**net, model, x.data(), n, 1, 1, in);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->layers.size(), 2u);
  EXPECT_EQ(report->layers[0].layer, "dense0");
  EXPECT_EQ(report->layers[1].layer, "output");

  // The tail of the network from the hidden output on: the output layer alone, to perturb
  // the hidden activations directly.
  auto tail = Network::Create(Model({}, {}), 1, 1, hidden, k, 1, 1);
  ASSERT_TRUE(tail.ok());
  (*tail)->params()[0].value = (*net)->params()[2].value;
  (*tail)->params()[1].value = (*net)->params()[3].value;

  std::vector<double> expect_w(2, 0), expect_a(2, 0);
  for (int e = 0; e < n; ++e) {
    const float* xe = x.data() + e * in;
    auto logits = [&] {
      const float* z = (*net)->Forward(xe, 1, kFp32, 0);
      return std::vector<float>(z, z + k);
    };
    for (int l = 0; l < 2; ++l) {
      for (int p : {2 * l, 2 * l + 1}) {
        expect_w[l] += FiniteDifferenceGain((*net)->params()[p].value, logits, k) / n;
      }
    }
    // y = tanh(W0·x + b0): the hidden activations the activations site rounds.
    std::vector<float> y(hidden);
    const std::vector<float>& w0 = (*net)->params()[0].value;
    const std::vector<float>& b0 = (*net)->params()[1].value;
    for (int o = 0; o < hidden; ++o) {
      double s = b0[o];
      for (int j = 0; j < in; ++j) s += double(w0[o * in + j]) * xe[j];
      y[o] = static_cast<float>(std::tanh(s));
    }
    auto tail_logits = [&] {
      const float* z = (*tail)->Forward(y.data(), 1, kFp32, 0);
      return std::vector<float>(z, z + k);
    };
    expect_a[0] += FiniteDifferenceGain(y, tail_logits, k) / n;
    // The logits themselves: ∂D/∂Z = e_i − e_ŷ.
    std::vector<float> zvals = logits();
    auto identity = [&] { return zvals; };
    expect_a[1] += FiniteDifferenceGain(zvals, identity, k) / n;
  }
  for (int l = 0; l < 2; ++l) {
    EXPECT_NEAR(report->layers[l].weights, expect_w[l], 2e-2 * expect_w[l]) << l;
    EXPECT_NEAR(report->layers[l].activations, expect_a[l], 2e-2 * expect_a[l]) << l;
  }
  EXPECT_EQ(report->inputs, n);
}

TEST(NoiseGainTest, ConvNetwork_WeightGainsMatchFiniteDifferences) {
  const int h = 6, k = 3, n = 2;
  const v1::ModelConfig model = Model({2}, {});
  auto net = Network::Create(model, 1, h, h, k, n, 5);
  ASSERT_TRUE(net.ok()) << net.status();
  const std::vector<float> x = Inputs(n, h * h, 9);
  auto report = ComputeNoiseGains(**net, model, x.data(), n, 1, h, h);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->layers.size(), 2u);
  EXPECT_EQ(report->layers[0].layer, "conv0");
  EXPECT_GT(report->layers[0].activations, 0);
  for (int l = 0; l < 2; ++l) {
    double expect = 0;
    for (int e = 0; e < n; ++e) {
      auto logits = [&] {
        const float* z = (*net)->Forward(x.data() + e * h * h, 1, kFp32, 0);
        return std::vector<float>(z, z + k);
      };
      for (int p : {2 * l, 2 * l + 1}) {
        expect += FiniteDifferenceGain((*net)->params()[p].value, logits, k) / n;
      }
    }
    EXPECT_NEAR(report->layers[l].weights, expect, 2e-2 * expect) << l;
  }
}

// conv0 -> conv1 -> output: conv0's E_A goes through the per-position δ of conv1. The expected
// value perturbs conv0's block output (after pooling, if any; pooling routes each derivative to
// one activation, so the sums agree) and runs the rest of the network from there.
void CheckConvFollowedByConv(int pool) {
  SCOPED_TRACE(pool);
  const int h = 10, k = 3, n = 2;
  v1::ModelConfig model = Model({2, 3}, {});
  model.set_pool(pool);
  auto net = Network::Create(model, 1, h, h, k, n, 5);
  ASSERT_TRUE(net.ok()) << net.status();
  const std::vector<float> x = Inputs(n, h * h, 9);
  auto report = ComputeNoiseGains(**net, model, x.data(), n, 1, h, h);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->layers.size(), 3u);

  const ConvShape conv0{1, h, h, 2, 3};
  const PoolShape pool0{2, conv0.oh(), conv0.ow(), pool};
  const int oh = pool > 1 ? pool0.oh() : conv0.oh();
  v1::ModelConfig tail_model = Model({3}, {});
  tail_model.set_pool(pool);
  auto tail = Network::Create(tail_model, 2, oh, oh, k, 1, 1);
  ASSERT_TRUE(tail.ok()) << tail.status();
  for (int p = 0; p < 4; ++p) (*tail)->params()[p].value = (*net)->params()[p + 2].value;

  const Activation tanh_act = Activation::kTanh;
  double expect = 0;
  for (int e = 0; e < n; ++e) {
    std::vector<float> act(conv0.out_size()), out(pool0.out_size());
    std::vector<int32_t> argmax(pool0.out_size());
    ConvForward(conv0, 1, x.data() + e * h * h, (*net)->params()[0].value.data(),
                (*net)->params()[1].value.data(), act.data(), &tanh_act);
    if (pool > 1) {
      MaxPoolForward(pool0, 1, act.data(), out.data(), argmax.data());
    } else {
      out = act;
    }
    auto tail_logits = [&] {
      const float* z = (*tail)->Forward(out.data(), 1, kFp32, 0);
      return std::vector<float>(z, z + k);
    };
    // The tail reproduces the whole network.
    const std::vector<float> whole = [&] {
      const float* z = (*net)->Forward(x.data() + e * h * h, 1, kFp32, 0);
      return std::vector<float>(z, z + k);
    }();
    const std::vector<float> part = tail_logits();
    for (int i = 0; i < k; ++i) ASSERT_NEAR(part[i], whole[i], 1e-5);
    expect += FiniteDifferenceGain(out, tail_logits, k) / n;
  }
  EXPECT_GT(expect, 0);
  EXPECT_NEAR(report->layers[0].activations, expect, 2e-2 * expect);
  EXPECT_GT(report->layers[1].activations, 0);
}

TEST(NoiseGainTest, ConvFollowedByConv_ActivationGainMatchesFiniteDifferences) {
  CheckConvFollowedByConv(1);
  CheckConvFollowedByConv(2);
}

TEST(NoiseGainTest, BadInput_IsAnError) {
  const v1::ModelConfig model = Model({2, 2}, {});
  auto net = Network::Create(model, 1, 12, 12, 3, 1, 5);
  ASSERT_TRUE(net.ok()) << net.status();
  const std::vector<float> x = Inputs(1, 144, 2);
  EXPECT_FALSE(ComputeNoiseGains(**net, Model({2}, {}), x.data(), 1, 1, 12, 12).ok());
  EXPECT_FALSE(ComputeNoiseGains(**net, model, x.data(), 1, 2, 12, 12).ok());
  EXPECT_FALSE(ComputeNoiseGains(**net, model, x.data(), 0, 1, 12, 12).ok());
}

TEST(IntegerBitsTest, RangesHoldEveryValueWithTheFewestIntegerBits) {
  const int in = 4, k = 3, n = 8;
  const v1::ModelConfig model = Model({}, {5});
  auto net = Network::Create(model, 1, 1, in, k, n, 11);
  ASSERT_TRUE(net.ok());
  (*net)->params()[0].value[0] = 2.5f;   // dense0 weights: needs 2 integer bits
  (*net)->params()[3].value[1] = -1.0f;  // output bias: |−1| needs 1 (symmetric [−2, 2))
  EXPECT_EQ(WeightIntegerBits(**net), (std::vector<int>{2, 1}));
  for (float& w : (*net)->params()[2].value) w *= 20;  // large logits
  const std::vector<float> x = Inputs(n, in, 3);
  const std::vector<int> bits = ActivationIntegerBits(**net, x.data(), n, in);
  ASSERT_EQ(bits.size(), 2u);
  EXPECT_EQ(bits[0], 0);  // tanh outputs lie in (−1, 1)
  // The logits' own maximum decides the output layer's bits.
  double max = 0;
  for (int e = 0; e < n; ++e) {
    const float* z = (*net)->Forward(x.data() + e * in, 1, kFp32, 0);
    for (int i = 0; i < k; ++i) max = std::max(max, double(std::abs(z[i])));
  }
  EXPECT_GT(bits[1], 1);
  EXPECT_LT(max, std::ldexp(1.0, bits[1]));
  EXPECT_GE(max, std::ldexp(1.0, bits[1] - 1));
}

TEST(MeasureMismatchRateTest, CoarseFormatsMismatchMoreAndWeightsAreRestored) {
  const int in = 8, k = 4, n = 64;
  const v1::ModelConfig model = Model({}, {16});
  auto net = Network::Create(model, 1, 1, in, k, 32, 21);
  ASSERT_TRUE(net.ok());
  const std::vector<float> x = Inputs(n, in, 4);
  const std::vector<float> before = (*net)->params()[0].value;
  auto rate = [&](const char* format) {
    v1::PrecisionConfig config;
    config.mutable_default_()->set_format(format);
    config.mutable_default_()->set_rounding("nearest");
    config.add_sites("weights");
    config.add_sites("activations");
    auto precision = MakeSitePrecision(config);
    EXPECT_TRUE(precision.ok()) << precision.status();
    return MeasureMismatchRate(**net, x.data(), n, in, *precision, 1);
  };
  EXPECT_EQ(rate("fp32"), 0.0);
  const double fine = rate("fixed:16,12");
  const double coarse = rate("fixed:4,1");
  EXPECT_LE(fine, coarse);
  EXPECT_GT(coarse, 0.0);
  EXPECT_EQ((*net)->params()[0].value, before);
}

}  // namespace
}  // namespace bitsweep::trainer
