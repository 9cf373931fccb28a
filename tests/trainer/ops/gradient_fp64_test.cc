// train.compute fp64: numeric gradient checks of every op's double overload (as gradient_test.cc
// does for float32, with a 10^4 times tighter tolerance), and the double GEMM's summation order.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "oneapi/tbb/task_arena.h"
#include "worker/trainer/ops/activation.h"
#include "worker/trainer/ops/conv.h"
#include "worker/trainer/ops/dense.h"
#include "worker/trainer/ops/gemm.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/ops/pool.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

// Doubles with all 53 bits in use (not widened floats), so a float32 path would show.
std::vector<double> Random(int64_t n, uint64_t key, double scale = 1.0) {
  CounterRng rng(key);
  std::vector<double> v(n);
  for (double& x : v) x = scale * (2 * rng.Uniform() - 1);
  return v;
}

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences with eps 1e-5: truncation error ~eps², rounding error ~1e-16/eps, both far
// below the tolerance (float32's checks need 2e-2).
void CheckGradient(const char* what, std::vector<double>& x, const std::vector<double>& analytic,
                   const std::function<double()>& objective, double tolerance = 2e-6) {
  constexpr double kEps = 1e-5;
  ASSERT_EQ(x.size(), analytic.size()) << what;
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + kEps;
    const double plus = objective();
    x[i] = saved - kEps;
    const double minus = objective();
    x[i] = saved;
    const double numeric = (plus - minus) / (2 * kEps);
    EXPECT_NEAR(analytic[i], numeric, tolerance * std::max(1.0, std::fabs(numeric)))
        << what << "[" << i << "]";
  }
}

TEST(Fp64ConvGradientTest, MatchesNumericGradient) {
  const ConvShape s{2, 6, 5, 3, 3};
  const int n = kConvGroup + 2;  // two gradient groups
  std::vector<double> in = Random(n * s.in_size(), 1);
  std::vector<double> w = Random(s.weight_size(), 2, 0.5);
  std::vector<double> b = Random(s.f, 3);
  const std::vector<double> r = Random(n * s.out_size(), 4);
  std::vector<double> out(n * s.out_size());
  const Activation tanh_act = Activation::kTanh;
  auto objective = [&] {
    ConvForward(s, n, in.data(), w.data(), b.data(), out.data(), &tanh_act);
    return Dot(out, r);
  };
  objective();
  std::vector<double> dout = r;
  ActivationBackward(tanh_act, out.data(), dout.data(), static_cast<int64_t>(dout.size()));
  std::vector<double> dw(w.size()), db(b.size()), din(in.size());
  ConvBackward(s, n, dout.data(), in.data(), w.data(), dw.data(), db.data(), din.data());
  CheckGradient("dweights", w, dw, objective);
  CheckGradient("dbias", b, db, objective);
  CheckGradient("dinput", in, din, objective);
}

TEST(Fp64MaxPoolGradientTest, MatchesNumericGradient) {
  const PoolShape s{2, 5, 4, 2};
  const int n = 2;
  std::vector<double> in = Random(n * s.in_size(), 6);
  const std::vector<double> r = Random(n * s.out_size(), 7);
  std::vector<double> out(n * s.out_size());
  std::vector<int32_t> argmax(out.size());
  auto objective = [&] {
    MaxPoolForward(s, n, in.data(), out.data(), argmax.data());
    return Dot(out, r);
  };
  objective();
  std::vector<double> din(in.size());
  MaxPoolBackward(s, n, r.data(), argmax.data(), din.data());
  CheckGradient("dinput", in, din, objective);
}

TEST(Fp64DenseGradientTest, MatchesNumericGradient) {
  const int n = 3, in_dim = 37, out_dim = 6;  // rows of 4 and a remainder in the GEMM
  std::vector<double> in = Random(n * in_dim, 8);
  std::vector<double> w = Random(out_dim * in_dim, 9);
  std::vector<double> b = Random(out_dim, 10);
  const std::vector<double> r = Random(n * out_dim, 11);
  std::vector<double> out(n * out_dim);
  auto objective = [&] {
    DenseForward(n, in_dim, out_dim, in.data(), w.data(), b.data(), out.data());
    return Dot(out, r);
  };
  std::vector<double> dw(w.size()), db(b.size()), din(in.size());
  DenseBackward(n, in_dim, out_dim, r.data(), in.data(), w.data(), dw.data(), db.data(),
                din.data());
  CheckGradient("dweights", w, dw, objective);
  CheckGradient("dbias", b, db, objective);
  CheckGradient("dinput", in, din, objective);
}

TEST(Fp64ActivationGradientTest, MatchesNumericGradient) {
  for (Activation act : {Activation::kRelu, Activation::kSigmoid, Activation::kTanh}) {
    std::vector<double> x = Random(50, 12, 3.0);
    for (double& v : x) {
      if (std::fabs(v) < 0.05) v = 0.5;  // keep relu's kink out of the difference quotient
    }
    const std::vector<double> r = Random(50, 13);
    std::vector<double> y;
    auto objective = [&] {
      y = x;
      ActivationForward(act, y.data(), static_cast<int64_t>(y.size()));
      return Dot(y, r);
    };
    objective();
    std::vector<double> dx = r;
    ActivationBackward(act, y.data(), dx.data(), static_cast<int64_t>(dx.size()));
    CheckGradient("dx", x, dx, objective);
  }
}

TEST(Fp64LossGradientTest, MatchesNumericGradientOfTheMeanLoss) {
  const int n = 4, k = 5;
  const uint8_t labels[] = {0, 3, 4, 3};
  for (Loss loss : {Loss::kCrossEntropy, Loss::kSquaredError}) {
    std::vector<double> z = Random(n * k, 14, 2.0);
    auto objective = [&] {
      return LossForwardBackward(loss, n, k, z.data(), labels, 0.0, nullptr, nullptr).loss_sum / n;
    };
    std::vector<double> dz(z.size());
    LossForwardBackward(loss, n, k, z.data(), labels, 1.0 / n, dz.data(), nullptr);
    CheckGradient("dlogits", z, dz, objective);
  }
}

TEST(Fp64LossTest, GradientIsNotRoundedToFloat32) {
  const double z[] = {0.1, 0.2, 0.3};
  const uint8_t label = 1;
  double dz[3];
  LossForwardBackward(Loss::kSquaredError, 1, 3, z, &label, 1.0, dz, nullptr);
  EXPECT_EQ(dz[0], 0.1);
  EXPECT_EQ(dz[1], 0.2 - 1.0);
  EXPECT_NE(dz[0], static_cast<double>(static_cast<float>(0.1)));
}

// The documented chain, C[i][j] = (((c0 + a0·b0) + a1·b1) + ...) with separate roundings, for
// every stride pattern the ops use, any block split and any thread count.
TEST(Fp64GemmTest, IsTheUnfusedChainInIncreasingKForAnyThreadCount) {
  const int64_t m = 13, n = 300, k = 270;  // crosses the j and k blocks, rows of 4 + 1
  const std::vector<double> a = Random(m * k, 20);
  const std::vector<double> b = Random(k * n, 21);
  for (bool transposed_b : {false, true}) {
    const DoubleMatrixView av{a.data(), k, 1};
    const DoubleMatrixView bv = transposed_b ? DoubleMatrixView{b.data(), 1, k}   // b is [n, k]
                                             : DoubleMatrixView{b.data(), n, 1};  // b is [k, n]
    std::vector<double> want(m * n);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        volatile double s = 0.5;  // accumulate onto C = 0.5; volatile: no fused multiply-add
        for (int64_t p = 0; p < k; ++p) {
          const double product = a[i * k + p] * b[p * bv.row_stride + j * bv.col_stride];
          s = s + product;
        }
        want[i * n + j] = s;
      }
    }
    std::vector<double> c(m * n, 0.5);
    Gemm(m, n, k, av, bv, c.data(), n, true);
    EXPECT_EQ(c, want) << "transposed_b " << transposed_b;
    for (int threads : {1, 2, 3}) {
      oneapi::tbb::task_arena arena(threads);
      std::vector<double> p(m * n, 0.5);
      arena.execute([&] { ParallelGemm(m, n, k, av, bv, p.data(), n, true); });
      EXPECT_EQ(p, want) << threads << " threads";
      // ParallelGemm above split the columns (m < n); Cᵀ = BᵀAᵀ splits the rows.
      std::vector<double> t(n * m, 0.5);
      const DoubleMatrixView at{a.data(), 1, k};  // Aᵀ as B: [k, m]
      const DoubleMatrixView bt{bv.data, bv.col_stride, bv.row_stride};
      arena.execute([&] { ParallelGemm(n, m, k, bt, at, t.data(), m, true); });
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) ASSERT_EQ(t[j * m + i], want[i * n + j]) << threads;
      }
    }
  }
}

}  // namespace
}  // namespace bitsweep::trainer
