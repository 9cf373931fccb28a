// The dense layer's GEMMs under the accumulator site (ops/dense.h): every one of the three is
// an AccumulatorGemm keyed DeriveKey(key, pass).
#include "worker/trainer/ops/dense.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/trainer/ops/random_values.h"
#include "worker/trainer/quant/format.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

// Regression: the input gradient din = dout · W skipped the accumulator site (it was a plain
// float32 GEMM), so accumulator sweeps left one of the three GEMMs of every dense layer exact.
TEST(DenseBackwardTest, AccumulatorRoundsTheInputGradientGemmToo) {
  const int n = 6, in_dim = 40, out_dim = 300;  // din chains of 300 products: swamping shows
  const std::vector<float> dout = RandomValues(int64_t{n} * out_dim, 1);
  const std::vector<float> in = RandomValues(int64_t{n} * in_dim, 2);
  const std::vector<float> weights = RandomValues(int64_t{out_dim} * in_dim, 3);
  const Quantizer coarse(*ParseFormat("float:8,3"), Rounding::kTruncate);
  const AccumulatorRounding rounding{&coarse, 0, 11};

  std::vector<float> dweights(int64_t{out_dim} * in_dim), dbias(out_dim), din(int64_t{n} * in_dim);
  DenseBackward(n, in_dim, out_dim, dout.data(), in.data(), weights.data(), dweights.data(),
                dbias.data(), din.data(), &rounding);

  // The definition: pass 1's AccumulatorGemm over dout [N, O] · W [O, I].
  AccumulatorRounding pass1 = rounding;
  pass1.key = DeriveKey(rounding.key, 1);
  std::vector<float> expected(din.size());
  AccumulatorGemm(n, in_dim, out_dim, MatrixView{dout.data(), out_dim, 1},
                  MatrixView{weights.data(), in_dim, 1}, expected.data(), in_dim, false, pass1,
                  false);
  EXPECT_TRUE(SameBits(din, expected));

  // And it is not the float32 product: a 4-bit significand cannot hold these sums.
  std::vector<float> exact_dw(dweights.size()), exact_db(dbias.size()), exact(din.size());
  DenseBackward(n, in_dim, out_dim, dout.data(), in.data(), weights.data(), exact_dw.data(),
                exact_db.data(), exact.data(), nullptr);
  EXPECT_FALSE(SameBits(din, exact));
  EXPECT_FALSE(SameBits(dweights, exact_dw));
}

}  // namespace
}  // namespace bitsweep::trainer
