// Numeric gradient checks of every op: each backward against central differences of its
// forward, through the scalar objective L = Σ out ⊙ R for a fixed random R.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "tests/trainer/ops/random_values.h"
#include "worker/trainer/ops/activation.h"
#include "worker/trainer/ops/conv.h"
#include "worker/trainer/ops/dense.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/ops/pool.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double{a[i]} * b[i];
  return s;
}

// Checks analytic[i] ≈ dL/dx[i] for every i, where L() recomputes the objective from x.
void CheckGradient(const char* what, std::vector<float>& x, const std::vector<float>& analytic,
                   const std::function<double()>& objective, double eps = 1e-2,
                   double tolerance = 2e-2) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  for (size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = static_cast<float>(saved + eps);
    const double plus = objective();
    x[i] = static_cast<float>(saved - eps);
    const double minus = objective();
    x[i] = saved;
    const double numeric = (plus - minus) / (2 * eps);
    EXPECT_NEAR(analytic[i], numeric, tolerance * std::max(1.0, std::fabs(numeric)))
        << what << "[" << i << "]";
  }
}

TEST(ConvGradientTest, MatchesNumericGradient) {
  const ConvShape s{2, 6, 5, 3, 3};
  const int n = 2;
  std::vector<float> in = RandomValues(n * s.in_size(), 1);
  std::vector<float> w = RandomValues(s.weight_size(), 2, 0.5);
  std::vector<float> b = RandomValues(s.f, 3);
  const std::vector<float> r = RandomValues(n * s.out_size(), 4);
  std::vector<float> out(n * s.out_size());
  auto objective = [&] {
    ConvForward(s, n, in.data(), w.data(), b.data(), out.data());
    return Dot(out, r);
  };
  objective();
  std::vector<float> dw(w.size()), db(b.size()), din(in.size());
  ConvBackward(s, n, r.data(), in.data(), w.data(), dw.data(), db.data(), din.data());
  CheckGradient("dweights", w, dw, objective);
  CheckGradient("dbias", b, db, objective);
  CheckGradient("dinput", in, din, objective);
}

// Batches of several gradient groups (kConvGroup) against direct loops over the definition.
TEST(ConvGradientTest, GroupedBatchMatchesDirectConvolution) {
  const ConvShape s{8, 20, 20, 3, 5};
  const int n = 2 * kConvGroup + 3;
  const std::vector<float> in = RandomValues(n * s.in_size(), 21);
  const std::vector<float> w = RandomValues(s.weight_size(), 22, 0.2);
  const std::vector<float> b = RandomValues(s.f, 23);
  const std::vector<float> dout = RandomValues(n * s.out_size(), 24);
  std::vector<float> out(n * s.out_size()), dw(w.size()), db(s.f), din(in.size());
  ConvForward(s, n, in.data(), w.data(), b.data(), out.data());
  ConvBackward(s, n, dout.data(), in.data(), w.data(), dw.data(), db.data(), din.data());
  std::vector<double> want_out(out.size()), want_dw(dw.size(), 0), want_db(s.f, 0),
      want_din(in.size(), 0);
  for (int e = 0; e < n; ++e) {
    for (int f = 0; f < s.f; ++f) {
      for (int y = 0; y < s.oh(); ++y) {
        for (int x = 0; x < s.ow(); ++x) {
          const int64_t o = e * s.out_size() + (int64_t{f} * s.oh() + y) * s.ow() + x;
          double acc = b[f];
          want_db[f] += dout[o];
          for (int c = 0; c < s.c; ++c) {
            for (int i = 0; i < s.k; ++i) {
              for (int j = 0; j < s.k; ++j) {
                const int64_t wi = ((int64_t{f} * s.c + c) * s.k + i) * s.k + j;
                const int64_t ii = e * s.in_size() + (int64_t{c} * s.h + y + i) * s.w + x + j;
                acc += double{w[wi]} * in[ii];
                want_dw[wi] += double{dout[o]} * in[ii];
                want_din[ii] += double{dout[o]} * w[wi];
              }
            }
          }
          want_out[o] = acc;
        }
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want_out[i], 1e-4) << i;
  for (size_t i = 0; i < dw.size(); ++i) ASSERT_NEAR(dw[i], want_dw[i], 1e-3) << i;
  for (int f = 0; f < s.f; ++f) ASSERT_NEAR(db[f], want_db[f], 1e-3);
  for (size_t i = 0; i < din.size(); ++i) ASSERT_NEAR(din[i], want_din[i], 1e-4) << i;
}

TEST(ConvGradientTest, OneByOneKernelIsAPerPixelDenseLayer) {
  const ConvShape s{2, 3, 3, 1, 1};
  const std::vector<float> in = RandomValues(s.in_size(), 5);
  const std::vector<float> w = {0.5f, -2.0f};
  const std::vector<float> b = {0.25f};
  std::vector<float> out(s.out_size());
  ConvForward(s, 1, in.data(), w.data(), b.data(), out.data());
  for (int i = 0; i < 9; ++i) EXPECT_FLOAT_EQ(out[i], 0.5f * in[i] - 2.0f * in[9 + i] + 0.25f);
}

TEST(MaxPoolGradientTest, MatchesNumericGradientAndDropsTheRemainder) {
  const PoolShape s{2, 5, 4, 2};  // 5 rows: the last one is dropped
  const int n = 2;
  std::vector<float> in = RandomValues(n * s.in_size(), 6);
  const std::vector<float> r = RandomValues(n * s.out_size(), 7);
  std::vector<float> out(n * s.out_size());
  std::vector<int32_t> argmax(out.size());
  auto objective = [&] {
    MaxPoolForward(s, n, in.data(), out.data(), argmax.data());
    return Dot(out, r);
  };
  objective();
  std::vector<float> din(in.size());
  MaxPoolBackward(s, n, r.data(), argmax.data(), din.data());
  // Small eps: the window maxima of random values are separated by far more than 2e-3.
  CheckGradient("dinput", in, din, objective, 1e-3, 2e-2);
  EXPECT_EQ(s.oh(), 2);
  EXPECT_EQ(s.ow(), 2);
}

TEST(DenseGradientTest, MatchesNumericGradient) {
  const int n = 3, in_dim = 5, out_dim = 4;
  std::vector<float> in = RandomValues(n * in_dim, 8);
  std::vector<float> w = RandomValues(out_dim * in_dim, 9);
  std::vector<float> b = RandomValues(out_dim, 10);
  const std::vector<float> r = RandomValues(n * out_dim, 11);
  std::vector<float> out(n * out_dim);
  auto objective = [&] {
    DenseForward(n, in_dim, out_dim, in.data(), w.data(), b.data(), out.data());
    return Dot(out, r);
  };
  std::vector<float> dw(w.size()), db(b.size()), din(in.size());
  DenseBackward(n, in_dim, out_dim, r.data(), in.data(), w.data(), dw.data(), db.data(),
                din.data());
  CheckGradient("dweights", w, dw, objective);
  CheckGradient("dbias", b, db, objective);
  CheckGradient("dinput", in, din, objective);
}

TEST(ActivationGradientTest, MatchesNumericGradient) {
  for (Activation act : {Activation::kRelu, Activation::kSigmoid, Activation::kTanh}) {
    std::vector<float> x = RandomValues(50, 12, 3.0);
    for (float& v : x) {
      if (std::fabs(v) < 0.05f) v = 0.5f;  // keep relu's kink out of the difference quotient
    }
    const std::vector<float> r = RandomValues(50, 13);
    std::vector<float> y;
    auto objective = [&] {
      y = x;
      ActivationForward(act, y.data(), static_cast<int64_t>(y.size()));
      return Dot(y, r);
    };
    objective();
    std::vector<float> dx = r;
    ActivationBackward(act, y.data(), dx.data(), static_cast<int64_t>(dx.size()));
    CheckGradient("dx", x, dx, objective, 1e-3, 1e-2);
  }
}

TEST(LossGradientTest, MatchesNumericGradientOfTheMeanLoss) {
  const int n = 4, k = 5;
  const uint8_t labels[] = {0, 3, 4, 3};
  for (Loss loss : {Loss::kCrossEntropy, Loss::kSquaredError}) {
    std::vector<float> z = RandomValues(n * k, 14, 2.0);
    auto objective = [&] {
      return LossForwardBackward(loss, n, k, z.data(), labels, 0, nullptr, nullptr).loss_sum / n;
    };
    std::vector<float> dz(z.size());
    LossForwardBackward(loss, n, k, z.data(), labels, 1.0f / n, dz.data(), nullptr);
    CheckGradient("dlogits", z, dz, objective, 1e-3, 1e-2);
  }
}

TEST(LossTest, CrossEntropyValuesAndAccuracy) {
  const float z[] = {0, 0, 0, 1000, 0, 0};  // stable for huge logits
  const uint8_t labels[] = {2, 0};
  int predictions[2];
  const LossStats s =
      LossForwardBackward(Loss::kCrossEntropy, 2, 3, z, labels, 1, nullptr, predictions);
  EXPECT_NEAR(s.loss_sum, std::log(3.0) + 0.0, 1e-9);  // example 1 is confidently right
  EXPECT_EQ(s.correct, 1);                             // ties go to the first class
  EXPECT_EQ(predictions[0], 0);
  EXPECT_EQ(predictions[1], 0);
  const LossStats se =
      LossForwardBackward(Loss::kSquaredError, 1, 3, z, labels, 1, nullptr, nullptr);
  EXPECT_DOUBLE_EQ(se.loss_sum, 0.5);
}

TEST(ParseTest, RejectsUnknownActivationsAndLosses) {
  EXPECT_FALSE(ParseActivation("gelu").ok());
  EXPECT_FALSE(ParseLoss("hinge").ok());
  EXPECT_EQ(*ParseLoss("squared_error"), Loss::kSquaredError);
}

}  // namespace
}  // namespace bitsweep::trainer
