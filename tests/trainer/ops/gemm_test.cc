// The GEMM's one summation order: every kernel, every blocking and every thread split give the
// bits of the plain fma chain.
#include "worker/trainer/ops/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "oneapi/tbb/task_arena.h"
#include "tests/trainer/ops/random_values.h"
#include "worker/trainer/ops/accumulator_gemm.h"
#include "worker/trainer/quant/format.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

// The definition (gemm.h): C[i][j] = fma chain over k in increasing order.
std::vector<float> Reference(int64_t m, int64_t n, int64_t k, const MatrixView& a,
                             const MatrixView& b, std::vector<float> c, bool accumulate) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float acc = accumulate ? c[i * n + j] : 0.0f;
      for (int64_t p = 0; p < k; ++p) {
        acc = std::fma(a.data[i * a.row_stride + p * a.col_stride],
                       b.data[p * b.row_stride + j * b.col_stride], acc);
      }
      c[i * n + j] = acc;
    }
  }
  return c;
}

struct Shape {
  int64_t m, n, k;
  bool transpose_a, transpose_b, accumulate;
};

const Shape kShapes[] = {
    {1, 1, 1, false, false, false},
    {7, 5, 3, false, false, true},
    {32, 576, 25, false, false, false},
    {32, 800, 64, false, true, true},
    {800, 64, 32, true, false, false},
    {128, 256, 512, false, true, false},
    {97, 515, 300, true, true, true},
    {8, 32, 0, false, false, false},
    // A and B read in place, with partial row and column panels and k blocks.
    {32, 25, 576, false, false, true},
    {20, 40, 300, false, false, false},
    {33, 64, 70, false, false, true},
    // A transposed B packed in 8x8 register transposes, with a last panel of 13 columns (one
    // block of 8, five left over).
    {16, 45, 40, false, true, false},
};

TEST(GemmTest, EveryKernelGivesTheBitsOfTheFmaChain) {
  int ran = 0;
  for (const char* kernel : {"avx512", "avx2", "portable"}) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(testing::Message() << kernel << " " << s.m << "x" << s.n << "x" << s.k);
      const std::vector<float> a = RandomValues(s.m * s.k, 1), b = RandomValues(s.k * s.n, 2);
      const std::vector<float> c0 = RandomValues(s.m * s.n, 3);
      const MatrixView av =
          s.transpose_a ? MatrixView{a.data(), 1, s.m} : MatrixView{a.data(), s.k, 1};
      const MatrixView bv =
          s.transpose_b ? MatrixView{b.data(), 1, s.k} : MatrixView{b.data(), s.n, 1};
      std::vector<float> c = c0;
      if (!GemmWithKernel(kernel, s.m, s.n, s.k, av, bv, c.data(), s.n, s.accumulate)) break;
      EXPECT_TRUE(SameBits(c, Reference(s.m, s.n, s.k, av, bv, c0, s.accumulate)));
      ++ran;
    }
  }
  EXPECT_GE(ran, static_cast<int>(std::size(kShapes)));  // at least the portable kernel
}

TEST(GemmTest, ParallelGemmIsBitwiseTheSameForAnyThreadCount) {
  for (const Shape& s : kShapes) {
    const std::vector<float> a = RandomValues(s.m * s.k, 4), b = RandomValues(s.k * s.n, 5);
    const std::vector<float> c0 = RandomValues(s.m * s.n, 6);
    const MatrixView av{a.data(), s.k, 1}, bv{b.data(), s.n, 1};
    std::vector<float> serial = c0;
    Gemm(s.m, s.n, s.k, av, bv, serial.data(), s.n, s.accumulate);
    for (int threads : {1, 2, 3}) {
      std::vector<float> c = c0;
      oneapi::tbb::task_arena(threads).execute(
          [&] { ParallelGemm(s.m, s.n, s.k, av, bv, c.data(), s.n, s.accumulate); });
      EXPECT_TRUE(SameBits(c, serial)) << threads << " threads, " << s.m << "x" << s.n;
    }
  }
}

TEST(GemmTest, PackedOperandGivesTheSameBits) {
  for (const Shape& s : kShapes) {
    const std::vector<float> a = RandomValues(s.m * s.k, 11), b = RandomValues(s.k * s.n, 12);
    const std::vector<float> c0 = RandomValues(s.m * s.n, 13);
    const MatrixView av =
        s.transpose_a ? MatrixView{a.data(), 1, s.m} : MatrixView{a.data(), s.k, 1};
    const MatrixView bv{b.data(), s.n, 1};
    std::vector<float> plain = c0, packed = c0;
    Gemm(s.m, s.n, s.k, av, bv, plain.data(), s.n, s.accumulate);
    PackedMatrix pa;
    pa.Pack(s.m, s.k, av);
    GemmPacked(pa, s.n, bv, packed.data(), s.n, s.accumulate);
    EXPECT_TRUE(SameBits(plain, packed)) << s.m << "x" << s.n << "x" << s.k;
  }
}

TEST(GemmTest, IsCloseToTheExactProduct) {
  const int64_t m = 33, n = 47, k = 700;
  const std::vector<float> a = RandomValues(m * k, 7), b = RandomValues(k * n, 8);
  std::vector<float> c(m * n);
  Gemm(m, n, k, MatrixView{a.data(), k, 1}, MatrixView{b.data(), n, 1}, c.data(), n, false);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double exact = 0;
      for (int64_t p = 0; p < k; ++p) exact += double{a[i * k + p]} * b[p * n + j];
      ASSERT_NEAR(c[i * n + j], exact, 1e-4) << i << "," << j;
    }
  }
}

// seeds/003: a float16 accumulator with round-to-nearest stops growing at 2048 (the spacing
// there is 2, so 2048 + 1 ties back to 2048); chunked accumulation avoids the stall.
TEST(AccumulatorGemmTest, Fp16NearestStallsAt2048AndChunkingRecovers) {
  const int64_t k = 4096;
  const std::vector<float> ones(k, 1.0f);
  const Quantizer fp16(*ParseFormat("fp16"), Rounding::kNearest);
  float c = 0;
  AccumulatorRounding rounding{&fp16, 0, 7};
  AccumulatorGemm(1, 1, k, MatrixView{ones.data(), k, 1}, MatrixView{ones.data(), 1, 1}, &c, 1,
                  false, rounding, false);
  EXPECT_EQ(c, 2048.0f);
  rounding.chunk = 1024;
  AccumulatorGemm(1, 1, k, MatrixView{ones.data(), k, 1}, MatrixView{ones.data(), 1, 1}, &c, 1,
                  false, rounding, false);
  EXPECT_EQ(c, 4096.0f);
  // Stochastic rounding keeps growing in expectation: well past the stall.
  const Quantizer sr(*ParseFormat("fp16"), Rounding::kStochastic);
  rounding = AccumulatorRounding{&sr, 0, 7};
  AccumulatorGemm(1, 1, k, MatrixView{ones.data(), k, 1}, MatrixView{ones.data(), 1, 1}, &c, 1,
                  false, rounding, false);
  EXPECT_GT(c, 3500.0f);
  EXPECT_LT(c, 4700.0f);
}

TEST(AccumulatorGemmTest, ExactFormatGivesTheUnfusedChainAndRowsSplitFreely) {
  // float:8,23 is float32's grid: q is the identity, so each step is s = (s + a·b) rounded
  // twice, without fusion; with any thread split the bits are the same.
  const int64_t m = 19, n = 23, k = 300;
  const std::vector<float> a = RandomValues(m * k, 9), b = RandomValues(k * n, 10);
  const Quantizer exact(*ParseFormat("float:8,23"), Rounding::kNearest);
  const AccumulatorRounding rounding{&exact, 0, 1};
  std::vector<float> serial(m * n), parallel(m * n);
  AccumulatorGemm(m, n, k, MatrixView{a.data(), k, 1}, MatrixView{b.data(), n, 1}, serial.data(), n,
                  false, rounding, false);
  oneapi::tbb::task_arena(2).execute([&] {
    AccumulatorGemm(m, n, k, MatrixView{a.data(), k, 1}, MatrixView{b.data(), n, 1},
                    parallel.data(), n, false, rounding, true);
  });
  EXPECT_TRUE(SameBits(serial, parallel));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float s = 0;
      for (int64_t p = 0; p < k; ++p) {
        const float prod = a[i * k + p] * b[p * n + j];
        s = s + prod;
      }
      ASSERT_EQ(serial[i * n + j], s) << i << "," << j;
    }
  }
}

// GemmRowRuns against the fma chain over B's rows gathered from their runs: tiles read in place
// (AVX-512, m % 8 == 0, n % 32 == 0) and the gathering fallback (odd sizes, k == 0).
TEST(GemmTest, RowRunsGiveTheBitsOfTheFmaChain) {
  const struct {
    int64_t m, n, k, run, ldb, run_stride;
    bool accumulate;
  } kCases[] = {
      {32, 160, 64, 8, 32, 384, false},  // the reference CNN's second conv layer
      {16, 64, 37, 5, 70, 400, true},    // a partial last run
      {8, 32, 1, 1, 0, 40, false},      {7, 33, 10, 3, 35, 120, true},  // odd m and n: gathered
      {24, 40, 9, 4, 41, 170, false},   {8, 32, 0, 2, 32, 64, false},
  };
  for (const auto& t : kCases) {
    SCOPED_TRACE(testing::Message() << t.m << "x" << t.n << "x" << t.k << " run " << t.run);
    const int64_t b_size = ((t.k + t.run - 1) / t.run) * t.run_stride + t.run * t.ldb + t.n;
    const std::vector<float> a = RandomValues(t.m * t.k + 1, 7), b = RandomValues(b_size, 8);
    const std::vector<float> c0 = RandomValues(t.m * t.n, 9);
    std::vector<float> rows(t.k * t.n + 1);
    for (int64_t p = 0; p < t.k; ++p) {
      for (int64_t j = 0; j < t.n; ++j) {
        rows[p * t.n + j] = b[(p / t.run) * t.run_stride + (p % t.run) * t.ldb + j];
      }
    }
    std::vector<float> c = c0;
    GemmRowRuns(t.m, t.n, t.k, a.data(), t.k, b.data(), t.ldb, t.run, t.run_stride, c.data(), t.n,
                t.accumulate);
    EXPECT_TRUE(SameBits(c, Reference(t.m, t.n, t.k, MatrixView{a.data(), t.k, 1},
                                      MatrixView{rows.data(), t.n, 1}, c0, t.accumulate)));
  }
}

// GemmPackedGather8 against the fma chain over B gathered from its 8-column pieces: tiles read
// in place (AVX-512, m % 8 == 0, n % 32 == 0; k over several blocks) and the fallback.
TEST(GemmTest, PackedGather8GivesTheBitsOfTheFmaChain) {
  const struct {
    int64_t m, n, k;
  } kCases[] = {{32, 64, 800}, {16, 96, 25}, {8, 32, 1}, {12, 40, 30}, {7, 8, 3}, {8, 32, 0}};
  for (const auto& t : kCases) {
    SCOPED_TRACE(testing::Message() << t.m << "x" << t.n << "x" << t.k);
    const int64_t pieces = (t.n + 7) / 8;
    std::vector<int32_t> rows(t.k + 1), chunks(pieces);
    for (int64_t p = 0; p < t.k; ++p) rows[p] = static_cast<int32_t>((p * 37) % 101);
    for (int64_t q = 0; q < pieces; ++q) chunks[q] = static_cast<int32_t>(120 + q * 13);
    const std::vector<float> a = RandomValues(t.m * t.k + 1, 10);
    const std::vector<float> b = RandomValues(120 + pieces * 13 + 101 + 8, 11);
    std::vector<float> dense(t.k * t.n + 1);
    for (int64_t p = 0; p < t.k; ++p) {
      for (int64_t j = 0; j < t.n; ++j) dense[p * t.n + j] = b[rows[p] + chunks[j / 8] + j % 8];
    }
    PackedMatrix packed;
    packed.Pack(t.m, t.k, MatrixView{a.data(), t.k, 1});
    std::vector<float> c = RandomValues(t.m * t.n, 12);
    GemmPackedGather8(packed, t.n, b.data(), rows.data(), chunks.data(), c.data(), t.n);
    EXPECT_TRUE(SameBits(
        c, Reference(t.m, t.n, t.k, MatrixView{a.data(), t.k, 1}, MatrixView{dense.data(), t.n, 1},
                     std::vector<float>(t.m * t.n), false)));
  }
}

TEST(GemmTest, NamesItsKernel) {
  const std::string name = GemmKernelName();
  EXPECT_TRUE(name == "avx512" || name == "avx2" || name == "portable") << name;
}

}  // namespace
}  // namespace bitsweep::trainer
