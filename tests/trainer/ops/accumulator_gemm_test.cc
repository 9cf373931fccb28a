// AccumulatorGemm (ops/accumulator_gemm.h) against a scalar reference of its header's
// semantics that rounds with Quantizer::Apply one element at a time: bitwise, for the fused
// kernels (each that this machine runs) and for the row path, over values that reach every
// branch of the rounding (float32 subnormals and the format's subnormal range, saturation,
// ties, signed zeros, ±Inf and NaN).
#include "worker/trainer/ops/accumulator_gemm.h"

#include <gtest/gtest.h>

#include <bit>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/tbb/task_arena.h"
#include "tests/trainer/ops/random_values.h"
#include "worker/trainer/quant/format.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

// Element j of Apply over a row whose element j is x (the stochastic bits depend on j).
float ApplyAt(const Quantizer& q, float x, uint64_t key, int64_t j) {
  std::vector<float> row(j + 1, 0.0f);
  row[j] = x;
  q.Apply(row.data(), j + 1, key);
  return row[j];
}

// The header's definition, element by element.
std::vector<float> Reference(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b,
                             const std::vector<float>& c0, bool accumulate,
                             const AccumulatorRounding& r) {
  const Quantizer& q = *r.quantizer;
  std::vector<float> c(c0);
  for (int64_t i = 0; i < m; ++i) {
    const uint64_t row_key = DeriveKey(r.key, static_cast<uint64_t>(i));
    for (int64_t j = 0; j < n; ++j) {
      float s = accumulate ? c0[i * n + j] : 0.0f;
      float t = 0.0f;
      for (int64_t p = 0; p < k; ++p) {
        const float x = a.data[i * a.row_stride + p * a.col_stride];
        const float y = b.data[p * b.row_stride + j * b.col_stride];
        const uint64_t step = 3 * static_cast<uint64_t>(p);
        const float prod = ApplyAt(q, x * y, DeriveKey(row_key, step), j);
        if (r.chunk == 0) {
          s = ApplyAt(q, s + prod, DeriveKey(row_key, step + 1), j);
          continue;
        }
        t = ApplyAt(q, t + prod, DeriveKey(row_key, step + 1), j);
        if ((p + 1) % r.chunk == 0 || p + 1 == k) {
          s = ApplyAt(q, s + t, DeriveKey(row_key, step + 2), j);
          t = 0.0f;
        }
      }
      c[i * n + j] = s;
    }
  }
  return c;
}

// Operands that exercise every rounding branch: mostly uniform values at scales from 2^-20
// (products deep in float:5,10's subnormal range and below float32's normal range after
// rounding) to 2^9 (products and sums past float:5,10's and float:4,3's largest value), and a
// sprinkling of exact ties (odd multiples of 2^-12 times small powers of two), float32
// subnormals, ±0, huge values (up to float32's largest), ±Inf and NaN. Only one NaN bit pattern:
// x86's default NaN (0xFFC00000), the one that 0·Inf and Inf - Inf produce, so that the result does
// not depend on which operand of an add the compiler puts first when two NaNs meet.
std::vector<float> Operand(int64_t size, uint64_t key, bool specials) {
  CounterRng rng(key);
  std::vector<float> v(size);
  const float nan = std::bit_cast<float>(0xFFC00000u);
  for (float& x : v) {
    const uint64_t kind = rng.Below(40);
    const double u = 2 * rng.Uniform() - 1;
    if (kind < 24) {
      const int scale = static_cast<int>(rng.Below(30)) - 20;  // 2^-20 .. 2^9
      x = static_cast<float>(std::ldexp(u, scale));
    } else if (kind < 32) {
      const double odd = static_cast<double>(2 * rng.Below(2048) + 1);
      x = static_cast<float>(std::ldexp(u < 0 ? -odd : odd, -12 - static_cast<int>(rng.Below(4))));
    } else if (kind < 34) {
      x = static_cast<float>(std::ldexp(u, -130));  // float32 subnormal
    } else if (kind < 36) {
      x = u < 0 ? -0.0f : 0.0f;
    } else if (kind == 36) {
      x = static_cast<float>(u < 0 ? -1.0 : 1.0) * 1.5f;
    } else if (kind == 37) {
      // Past every narrow format's range, up to float32's largest value. Without specials,
      // at most 2^63: every float32 product stays finite (the kernels' path without the ±Inf
      // and NaN check), and still reaches 2^105 and beyond.
      if (!specials) {
        x = static_cast<float>(std::ldexp(u, 40 + static_cast<int>(rng.Below(24))));
      } else if (rng.Below(4) == 0) {
        x = std::copysign(std::numeric_limits<float>::max(), static_cast<float>(u));
      } else {
        x = static_cast<float>(std::ldexp(u, 90 + static_cast<int>(rng.Below(38))));
      }
    } else if (specials && kind == 38) {
      x = u < 0 ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
    } else if (specials) {
      x = nan;
    } else {
      x = static_cast<float>(u);
    }
  }
  return v;
}

std::string Bits(float x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", std::bit_cast<uint32_t>(x));
  return buf;
}

struct Shape {
  int64_t m, n, k;
};

// m, n, k odd and even, around the kernels' tile sizes (4 rows, 8 or 16 columns); k = 0.
constexpr Shape kShapes[] = {{1, 1, 7}, {5, 37, 23}, {4, 16, 40}, {9, 25, 17},
                             {3, 8, 1}, {6, 33, 0},  {2, 65, 12}};

void ExpectAllKernelsMatch(const char* format, Rounding rounding, bool specials) {
  const Quantizer q(*ParseFormat(format), rounding);
  for (const Shape& s : kShapes) {
    for (const int chunk : {0, 1, 4, 7}) {
      for (const bool accumulate : {false, true}) {
        for (const bool transposed : {false, true}) {
          const uint64_t seed = static_cast<uint64_t>(s.m * 1000003 + s.n * 1009 + s.k * 7 + chunk);
          const std::vector<float> av = Operand(s.m * s.k, seed, specials);
          const std::vector<float> bv = Operand(s.k * s.n, seed + 1, specials);
          const std::vector<float> c0 = Operand(s.m * s.n, seed + 2, specials);
          // Transposed: A read down its columns, B across (the conv weight gradient's views).
          const MatrixView a =
              transposed ? MatrixView{av.data(), 1, s.m} : MatrixView{av.data(), s.k, 1};
          const MatrixView b =
              transposed ? MatrixView{bv.data(), 1, s.k} : MatrixView{bv.data(), s.n, 1};
          const AccumulatorRounding r{&q, chunk, seed * 31 + 5};
          const std::vector<float> want = Reference(s.m, s.n, s.k, a, b, c0, accumulate, r);
          for (const char* kernel : {"avx512", "avx2", "portable", "rows"}) {
            for (const int threads : {1, 3}) {
              std::vector<float> c = c0;
              bool ran = false;
              oneapi::tbb::task_arena(threads).execute([&] {
                ran = AccumulatorGemmWithKernel(kernel, s.m, s.n, s.k, a, b, c.data(), s.n,
                                                accumulate, r, threads > 1);
              });
              if (!ran) continue;
              for (int64_t e = 0; e < s.m * s.n; ++e) {
                ASSERT_EQ(Bits(c[e]), Bits(want[e]))
                    << format << " " << RoundingName(rounding) << " " << kernel << " threads "
                    << threads << " " << s.m << "x" << s.n << "x" << s.k << " chunk " << chunk
                    << " accumulate " << accumulate << " transposed " << transposed << " element "
                    << e;
              }
            }
          }
          // And the dispatching entry point.
          std::vector<float> c = c0;
          AccumulatorGemm(s.m, s.n, s.k, a, b, c.data(), s.n, accumulate, r, false);
          ASSERT_TRUE(SameBits(c, want)) << format << " " << RoundingName(rounding);
        }
      }
    }
  }
}

class AccumulatorGemmFormatTest : public testing::TestWithParam<std::tuple<const char*, Rounding>> {
};

TEST_P(AccumulatorGemmFormatTest, EveryKernelGivesTheScalarDefinition) {
  const auto [format, rounding] = GetParam();
  ExpectAllKernelsMatch(format, rounding, /*specials=*/true);
}

TEST_P(AccumulatorGemmFormatTest, EveryKernelGivesTheScalarDefinitionForFiniteOperands) {
  const auto [format, rounding] = GetParam();
  ExpectAllKernelsMatch(format, rounding, /*specials=*/false);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, AccumulatorGemmFormatTest,
    testing::Combine(testing::Values("float:5,10", "mask:12", "float:4,3", "fixed:16,14",
                                     "float:8,23", "bf16", "fp8e5m2", "float:5,23", "float:2,1"),
                     testing::Values(Rounding::kTruncate, Rounding::kNearest,
                                     Rounding::kStochastic)),
    [](const testing::TestParamInfo<std::tuple<const char*, Rounding>>& param) {
      std::string name = std::string(std::get<0>(param.param)) + "_" +
                         std::string(RoundingName(std::get<1>(param.param)));
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

// The fused kernels cover float:E,M and mask:B with truncate and nearest; the rest takes the
// row path.
TEST(AccumulatorGemmTest, KernelChoice) {
  EXPECT_NE(
      std::string(AccumulatorKernelName(Quantizer(*ParseFormat("float:5,10"), Rounding::kNearest))),
      "rows");
  EXPECT_NE(
      std::string(AccumulatorKernelName(Quantizer(*ParseFormat("mask:12"), Rounding::kTruncate))),
      "rows");
  EXPECT_EQ(std::string(AccumulatorKernelName(
                Quantizer(*ParseFormat("float:5,10"), Rounding::kStochastic))),
            "rows");
  EXPECT_EQ(std::string(
                AccumulatorKernelName(Quantizer(*ParseFormat("fixed:16,14"), Rounding::kNearest))),
            "rows");
}

// A product the size of the reference CNN's second convolution (32 filters, 64 positions, 800
// inputs), with the activations' and errors' magnitudes: the fused kernel is the row path.
TEST(AccumulatorGemmTest, ConvSizedProductMatchesTheRowPath) {
  const int64_t m = 32, n = 64, k = 800;
  const std::vector<float> a = RandomValues(m * k, 21, 0.1), b = RandomValues(k * n, 22, 1e-3);
  for (const Rounding rounding : {Rounding::kNearest, Rounding::kTruncate}) {
    const Quantizer q(*ParseFormat("float:5,10"), rounding);
    const AccumulatorRounding r{&q, 0, 3};
    std::vector<float> rows(m * n), fused(m * n);
    ASSERT_TRUE(AccumulatorGemmWithKernel("rows", m, n, k, MatrixView{a.data(), k, 1},
                                          MatrixView{b.data(), n, 1}, rows.data(), n, false, r,
                                          false));
    AccumulatorGemm(m, n, k, MatrixView{a.data(), k, 1}, MatrixView{b.data(), n, 1}, fused.data(),
                    n, false, r, false);
    EXPECT_TRUE(SameBits(rows, fused)) << RoundingName(rounding);
  }
}

// One ±Inf or NaN anywhere in otherwise finite operands (in a vector body, in a row's tail, in a
// transposed view) turns off the fused kernel's path without the special-value check: the
// result is still the row path's.
TEST(AccumulatorGemmTest, OneSpecialValueAnywhereIsSeen) {
  const int64_t m = 5, n = 19, k = 21;
  const Quantizer q(*ParseFormat("float:5,10"), Rounding::kNearest);
  const AccumulatorRounding r{&q, 0, 9};
  const float specials[] = {std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  for (const bool transposed : {false, true}) {
    for (const int which : {0, 1}) {  // the special value in A or in B
      const int64_t size = which == 0 ? m * k : k * n;
      for (const int64_t at : {int64_t{0}, int64_t{16}, size - 1}) {
        for (const float special : specials) {
          std::vector<float> a = RandomValues(m * k, 31, 0.5), b = RandomValues(k * n, 32, 0.5);
          (which == 0 ? a : b)[at] = special;
          const MatrixView av =
              transposed ? MatrixView{a.data(), 1, m} : MatrixView{a.data(), k, 1};
          const MatrixView bv =
              transposed ? MatrixView{b.data(), 1, k} : MatrixView{b.data(), n, 1};
          std::vector<float> rows(m * n), fused(m * n);
          ASSERT_TRUE(
              AccumulatorGemmWithKernel("rows", m, n, k, av, bv, rows.data(), n, false, r, false));
          AccumulatorGemm(m, n, k, av, bv, fused.data(), n, false, r, false);
          EXPECT_TRUE(SameBits(rows, fused))
              << "transposed " << transposed << " operand " << which << " at " << at;
        }
      }
    }
  }
}

}  // namespace
}  // namespace bitsweep::trainer
