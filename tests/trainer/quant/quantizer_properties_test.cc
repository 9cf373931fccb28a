// Properties every format × rounding of DESIGN §4 must have (issue 3, "Tests"): idempotence,
// representable values unchanged, monotonicity, sign symmetry, saturation, subnormals, agreement
// with the compiler's fp16 conversion and a reference bf16 conversion, and the statistics of
// stochastic rounding. quantizer_test.cc checks the values themselves against a reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Every kind of format, with its edge cases (widest, narrowest, WL > 24, FL = 0, ...).
const char* const kAllFormats[] = {
    "fp32",        "fp16",        "bf16",       "tf32",      "fp8e5m2",   "fp8e4m3",
    "float:2,0",   "float:3,1",   "float:6,23", "float:8,0", "mask:9",    "mask:12",
    "mask:23",     "mask:32",     "fixed:16,8", "fixed:8,0", "fixed:2,1", "fixed:32,16",
    "fixed:24,23", "fixed:32,31", "int:2",      "int:8",     "int:16",    "int:32",
    "dynfixed:16", "dynfixed:8",  "dps:4,12",   "dps:16,16", "dps:1,0",   "dps:20,30"};
const Rounding kRoundings[] = {Rounding::kTruncate, Rounding::kNearest, Rounding::kStochastic};
const Rounding kDeterministic[] = {Rounding::kTruncate, Rounding::kNearest};

Format F(const std::string& spec) {
  auto f = ParseFormat(spec);
  EXPECT_TRUE(f.ok()) << spec << ": " << f.status();
  return f.ok() ? *f : Format();
}

bool IsFloatLike(const Format& f) {
  return f.kind == FormatKind::kFloat || f.kind == FormatKind::kMask || f.kind == FormatKind::kFp32;
}
bool IsFixedLike(const Format& f) {
  return f.kind == FormatKind::kFixed || f.kind == FormatKind::kDynFixed ||
         f.kind == FormatKind::kDps;
}
// Fixed-point WL and FL as the quantiser applies them (dynfixed starts at FL 0).
int WordBits(const Format& f) {
  return f.kind == FormatKind::kDps ? f.int_bits + f.frac_bits : f.word_bits;
}

bool Same(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b) || (a == 0 && b == 0);
}

// Finite values: random bit patterns over all of float32 and magnitudes 2^-40..2^20.
std::vector<float> Values(int n, uint64_t key) {
  CounterRng rng(key);
  std::vector<float> v;
  v.reserve(n);
  while (static_cast<int>(v.size()) < n) {
    float x;
    if (v.size() % 2 == 0) {
      x = std::bit_cast<float>(static_cast<uint32_t>(rng.Next()));
      if (!std::isfinite(x)) continue;
    } else {
      const double mag = std::ldexp(1.0 + rng.Uniform(), static_cast<int>(rng.Below(60)) - 40);
      x = static_cast<float>(rng.Uniform() < 0.5 ? -mag : mag);
    }
    v.push_back(x);
  }
  return v;
}

std::vector<float> Quantised(const Quantizer& q, std::vector<float> v, uint64_t key) {
  q.Apply(v.data(), static_cast<int64_t>(v.size()), key);
  return v;
}

TEST(QuantizerPropertiesTest, QuantisingTwiceIsQuantisingOnce) {
  for (const char* spec : kAllFormats) {
    const Format f = F(spec);
    for (Rounding r : kRoundings) {
      const Quantizer q(f, r);
      const std::vector<float> once = Quantised(q, Values(4000, 1), 10);
      for (Rounding again : kRoundings) {
        const std::vector<float> twice = Quantised(Quantizer(f, again), once, 11);
        for (size_t i = 0; i < once.size(); ++i) {
          ASSERT_TRUE(Same(once[i], twice[i]))
              << spec << " " << RoundingName(r) << " then " << RoundingName(again) << ": "
              << once[i] << " became " << twice[i];
        }
      }
    }
  }
}

// The values of the format's grid we can write down directly.
std::vector<float> Representable(const Format& f) {
  std::vector<float> v;
  CounterRng rng(3);
  if (IsFloatLike(f)) {
    const int m = f.kind == FormatKind::kMask   ? f.mask_bits - 9
                  : f.kind == FormatKind::kFp32 ? 23
                                                : f.mantissa_bits;
    const int e_bits = f.kind == FormatKind::kFloat ? f.exponent_bits : 8;
    const int emin = 2 - (1 << (e_bits - 1)), emax = (1 << (e_bits - 1)) - 1;
    for (int i = 0; i < 3000; ++i) {
      // Subnormals (e = emin - 1 encodes 0.mantissa · 2^emin) and normals.
      const int e = emin - 1 + static_cast<int>(rng.Below(static_cast<uint64_t>(emax - emin + 2)));
      const double mant = static_cast<double>(rng.Below(uint64_t{1} << m));
      const double value =
          e < emin ? std::ldexp(mant, emin - m) : std::ldexp(1.0 + std::ldexp(mant, -m), e);
      if (value > f.MaxFinite() || value < std::numeric_limits<float>::denorm_min()) continue;
      v.push_back(static_cast<float>(rng.Uniform() < 0.5 ? -value : value));
    }
  } else if (IsFixedLike(f)) {
    const int wl = std::min(WordBits(f), 24);  // more bits are not exactly float32
    for (int i = 0; i < 3000; ++i) {
      const int64_t k =
          static_cast<int64_t>(rng.Below(uint64_t{1} << wl)) - (int64_t{1} << (wl - 1));
      v.push_back(static_cast<float>(std::ldexp(static_cast<double>(k), -f.frac_bits)));
    }
  } else {  // int:B: k · s with s = max / (2^(B-1)-1); the tensor's max is on the grid.
    const double hi = std::ldexp(1.0, std::min(f.word_bits, 24) - 1) - 1;
    const double s = 0.5 / hi;  // max 0.5: k · s exact for k < 2^23
    for (int i = 0; i < 3000; ++i) {
      v.push_back(static_cast<float>(std::floor(rng.Uniform() * (2 * hi + 1) - hi) * s));
    }
    v.push_back(static_cast<float>(hi * s));
  }
  return v;
}

TEST(QuantizerPropertiesTest, RepresentableValuesAreUnchanged) {
  for (const char* spec : kAllFormats) {
    const Format f = F(spec);
    if (f.kind == FormatKind::kInt && f.word_bits > 24) continue;  // grid not float32-exact
    const std::vector<float> grid = Representable(f);
    ASSERT_GT(grid.size(), 100u) << spec;
    for (Rounding r : kRoundings) {
      const std::vector<float> q = Quantised(Quantizer(f, r), grid, 5);
      for (size_t i = 0; i < grid.size(); ++i) {
        ASSERT_TRUE(Same(q[i], grid[i]))
            << spec << " " << RoundingName(r) << ": " << grid[i] << " became " << q[i];
      }
    }
  }
}

TEST(QuantizerPropertiesTest, StochasticResultIsOneOfTheDeterministicNeighbours) {
  // Truncation gives one neighbour; for the other, round the other way: for sign-magnitude
  // formats away from zero, for two's complement up. Stochastic must give one of them.
  for (const char* spec : kAllFormats) {
    const Format f = F(spec);
    const std::vector<float> values = Values(5000, 7);
    const std::vector<float> trunc = Quantised(Quantizer(f, Rounding::kTruncate), values, 0);
    const std::vector<float> stoch = Quantised(Quantizer(f, Rounding::kStochastic), values, 8);
    const Quantizer nearest(f, Rounding::kNearest);
    int differ = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      if (Same(stoch[i], trunc[i])) continue;
      ++differ;
      // Not truncation: then the other neighbour, which lies on the far side of x from trunc.
      const double x = values[i], t = trunc[i], s = stoch[i];
      ASSERT_TRUE((t <= x && x <= s) || (s <= x && x <= t))
          << spec << " x=" << x << " trunc " << t << " stochastic " << s;
      // ... and nothing of the grid lies strictly between x and s: nearest of x is t or s.
      const float n = nearest.QuantizeOne(values[i], 0);
      if (f.kind != FormatKind::kInt) {
        ASSERT_TRUE(Same(n, trunc[i]) || Same(n, stoch[i]))
            << spec << " x=" << x << " nearest " << n << " trunc " << t << " stochastic " << s;
      }
    }
    if (f.kind != FormatKind::kFp32 && f.Bits() < 32) {
      EXPECT_GT(differ, 100) << spec;
    }
  }
}

TEST(QuantizerPropertiesTest, DeterministicRoundingIsMonotonic) {
  for (const char* spec : kAllFormats) {
    const Format f = F(spec);
    std::vector<float> values = Values(6000, 12);
    values.push_back(kInf);
    values.push_back(-kInf);
    std::sort(values.begin(), values.end());
    for (Rounding r : kDeterministic) {
      const std::vector<float> q = Quantised(Quantizer(f, r), values, 0);
      for (size_t i = 1; i < q.size(); ++i) {
        ASSERT_LE(q[i - 1], q[i]) << spec << " " << RoundingName(r) << ": x=" << values[i - 1]
                                  << " <= " << values[i] << " but q(x)=" << q[i - 1] << " > "
                                  << q[i];
      }
    }
  }
}

TEST(QuantizerPropertiesTest, SignMagnitudeFormatsAreSymmetricAndTwosComplementIsFloor) {
  const std::vector<float> values = Values(5000, 13);
  for (const char* spec : kAllFormats) {
    const Format f = F(spec);
    for (Rounding r : kRoundings) {
      const Quantizer q(f, r);
      for (size_t i = 0; i < values.size(); ++i) {
        const float x = std::fabs(values[i]);
        const uint64_t bits = CounterRandom(14, i);
        const float pos = q.QuantizeOne(x, bits), neg = q.QuantizeOne(-x, bits);
        if (IsFloatLike(f)) {
          // Sign-magnitude: the same random bits give the mirrored result.
          ASSERT_EQ(std::bit_cast<uint32_t>(neg), std::bit_cast<uint32_t>(pos) ^ 0x80000000u)
              << spec << " " << RoundingName(r) << " x=" << x;
        } else if (IsFixedLike(f) && r == Rounding::kNearest) {
          // Symmetric except where -x saturates at -2^(IL-1) and x at 2^(IL-1) - 2^-FL.
          const double max = std::ldexp(1.0, WordBits(f) - f.frac_bits - 1);
          if (x < max - std::ldexp(1.0, -f.frac_bits)) {
            ASSERT_EQ(neg, -pos) << spec << " x=" << x;
          }
        } else if (IsFixedLike(f) && r == Rounding::kTruncate && WordBits(f) <= 24) {
          // Floor: q(-x) = -ceil(x) on the grid, inside the range.
          const double step = std::ldexp(1.0, -f.frac_bits);
          const double max = std::ldexp(1.0, WordBits(f) - f.frac_bits - 1) - step;
          if (x < max) {
            const double want = pos == x ? -double{pos} : -(double{pos} + step);
            ASSERT_EQ(double{neg}, want) << spec << " x=" << x;
          }
        }
      }
    }
  }
}

TEST(QuantizerPropertiesTest, IntIsSymmetricAroundZero) {
  // int:B's range is symmetric (±(2^(B-1)-1) steps), so nearest mirrors exactly.
  std::vector<float> values = Values(3000, 15);
  for (float& x : values) x = std::fabs(x) > 1e30f ? 1.0f : x;
  std::vector<float> negated = values;
  for (float& x : negated) x = -x;
  for (const char* spec : {"int:2", "int:8", "int:16", "int:32"}) {
    const Quantizer q(F(spec), Rounding::kNearest);
    const std::vector<float> a = Quantised(q, values, 0), b = Quantised(q, negated, 0);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], -b[i]) << spec << " x=" << values[i];
  }
}

TEST(QuantizerPropertiesTest, ValuesBeyondTheRangeSaturateAtItsEnds) {
  const float huge[] = {3e38f, 1e30f, 1e10f, 70000.0f, 65520.0f, 65504.5f};
  for (const char* spec : kAllFormats) {
    const Format f = F(spec);
    if (f.kind == FormatKind::kInt || f.kind == FormatKind::kDynFixed ||
        f.kind == FormatKind::kFp32) {
      continue;  // scaled to the data: nothing to saturate
    }
    const double max = f.MaxFinite();
    const double min = IsFixedLike(f) ? -std::ldexp(1.0, WordBits(f) - f.frac_bits - 1) : -max;
    for (Rounding r : kRoundings) {
      const Quantizer q(f, r);
      for (float x : huge) {
        if (x <= max) continue;
        EXPECT_EQ(q.QuantizeOne(x, ~0ull), static_cast<float>(max)) << spec << " x=" << x;
        EXPECT_EQ(q.QuantizeOne(-x, ~0ull), static_cast<float>(min)) << spec << " x=" << -x;
      }
      // The ends themselves are on the grid.
      EXPECT_EQ(q.QuantizeOne(static_cast<float>(max), ~0ull), static_cast<float>(max)) << spec;
      EXPECT_EQ(q.QuantizeOne(static_cast<float>(min), ~0ull), static_cast<float>(min)) << spec;
      // ±Inf: floats keep it (float32's overflow signal), fixed point saturates.
      const float inf = q.QuantizeOne(kInf, 0), ninf = q.QuantizeOne(-kInf, 0);
      if (IsFixedLike(f)) {
        EXPECT_EQ(inf, static_cast<float>(max)) << spec;
        EXPECT_EQ(ninf, static_cast<float>(min)) << spec;
      } else {
        EXPECT_EQ(inf, kInf) << spec;
        EXPECT_EQ(ninf, -kInf) << spec;
      }
    }
  }
}

TEST(QuantizerPropertiesTest, IntSaturatesInfinityAtTheTensorsLargestValue) {
  for (Rounding r : kRoundings) {
    const Quantizer q(F("int:8"), r);
    std::vector<float> v = {0.5f, -kInf, 0.25f, kInf, -1.0f};
    q.Apply(v.data(), 5, 1);
    EXPECT_EQ(v[1], -1.0f) << RoundingName(r);
    EXPECT_EQ(v[3], 1.0f) << RoundingName(r);
    EXPECT_EQ(v[4], -1.0f) << RoundingName(r);
  }
}

TEST(QuantizerPropertiesTest, SubnormalsOfNarrowExponentsAreAUniformGrid) {
  struct Case {
    const char* spec;
    float min_subnormal;  // 2^(emin - M)
  };
  for (const Case& c : {Case{"fp16", 0x1p-24f}, Case{"fp8e5m2", 0x1p-16f}, Case{"fp8e4m3", 0x1p-9f},
                        Case{"float:2,0", 1.0f}, Case{"float:3,1", 0.125f}}) {
    const Format f = F(c.spec);
    const Quantizer trunc(f, Rounding::kTruncate), near(f, Rounding::kNearest);
    const int m = f.mantissa_bits;
    for (int k = 0; k < (1 << m); ++k) {
      const float grid = k * c.min_subnormal;
      EXPECT_EQ(near.QuantizeOne(grid, 0), grid) << c.spec << " k=" << k;
      // A quarter step above a grid point: truncate and nearest go down; 3/4 goes up.
      EXPECT_EQ(trunc.QuantizeOne(grid + 0.75f * c.min_subnormal, 0), grid) << c.spec;
      EXPECT_EQ(near.QuantizeOne(grid + 0.25f * c.min_subnormal, 0), grid) << c.spec;
      EXPECT_EQ(near.QuantizeOne(grid + 0.75f * c.min_subnormal, 0), (k + 1) * c.min_subnormal)
          << c.spec;
      // Ties go to the even multiple.
      EXPECT_EQ(near.QuantizeOne(grid + 0.5f * c.min_subnormal, 0),
                (k % 2 == 0 ? k : k + 1) * c.min_subnormal)
          << c.spec;
      EXPECT_EQ(near.QuantizeOne(-(grid + 0.5f * c.min_subnormal), 0),
                -(k % 2 == 0 ? k : k + 1) * c.min_subnormal)
          << c.spec;
    }
    // Below half the smallest subnormal everything flushes to (signed) zero.
    EXPECT_EQ(std::bit_cast<uint32_t>(near.QuantizeOne(0.49f * c.min_subnormal, 0)), 0u);
    EXPECT_EQ(std::bit_cast<uint32_t>(near.QuantizeOne(-0.49f * c.min_subnormal, 0)), 0x80000000u);
    EXPECT_EQ(
        std::bit_cast<uint32_t>(near.QuantizeOne(std::numeric_limits<float>::denorm_min(), 0)), 0u);
  }
  // Eight exponent bits: float32's own subnormals, with the mantissa cut.
  const Quantizer bf16(F("bf16"), Rounding::kTruncate);
  EXPECT_EQ(std::bit_cast<uint32_t>(bf16.QuantizeOne(std::bit_cast<float>(0x0001FFFFu), 0)),
            0x00010000u);
  EXPECT_EQ(std::bit_cast<uint32_t>(bf16.QuantizeOne(std::bit_cast<float>(0x0000FFFFu), 0)), 0u);
}

TEST(QuantizerPropertiesTest, NanStaysNanAndZerosKeepTheirSign) {
  const float nans[] = {std::numeric_limits<float>::quiet_NaN(),
                        -std::numeric_limits<float>::quiet_NaN(), std::bit_cast<float>(0x7F800001u),
                        std::bit_cast<float>(0xFFFFFFFFu)};
  for (const char* spec : kAllFormats) {
    for (Rounding r : kRoundings) {
      const Quantizer q(F(spec), r);
      std::vector<float> v = {nans[0], 0.0f, nans[1], -0.0f, nans[2], 1.0f, nans[3], -2.0f};
      q.Apply(v.data(), static_cast<int64_t>(v.size()), 3);
      for (int i : {0, 2, 4, 6}) EXPECT_TRUE(std::isnan(v[i])) << spec << " " << i;
      EXPECT_EQ(std::bit_cast<uint32_t>(v[1]), 0u) << spec;
      EXPECT_EQ(std::bit_cast<uint32_t>(v[3]), 0x80000000u) << spec;
      // All-zero (and all-NaN) tensors too, for int's scale.
      std::vector<float> zeros = {0.0f, -0.0f, nans[0]};
      q.Apply(zeros.data(), 3, 3);
      EXPECT_EQ(std::bit_cast<uint32_t>(zeros[0]), 0u) << spec;
      EXPECT_EQ(std::bit_cast<uint32_t>(zeros[1]), 0x80000000u) << spec;
      EXPECT_TRUE(std::isnan(zeros[2])) << spec;
    }
  }
}

TEST(QuantizerPropertiesTest, MaskTruncateIsABitwiseAndOnEveryKindOfWord) {
  // Including NaN, ±Inf, ±0 and subnormal words: the AND keeps NaN a NaN only while the
  // mantissa bit that makes it one survives, so NaN words are compared as "still NaN".
  CounterRng rng(21);
  for (int b = 9; b <= 32; ++b) {
    const Quantizer q(F("mask:" + std::to_string(b)), Rounding::kTruncate);
    const uint32_t mask = b == 32 ? ~0u : ~((1u << (32 - b)) - 1u);
    for (int i = 0; i < 20000; ++i) {
      uint32_t u = static_cast<uint32_t>(rng.Next());
      if (i % 4 == 1) u &= 0x807FFFFFu;  // subnormals
      const float x = std::bit_cast<float>(u);
      const float got = q.QuantizeOne(x, 0);
      if (std::isnan(x)) {
        ASSERT_TRUE(std::isnan(got));
      } else {
        ASSERT_EQ(std::bit_cast<uint32_t>(got), u & mask) << "mask:" << b << " word " << u;
      }
    }
  }
}

// --- Agreement with hardware / compiler conversions -------------------------------------------

// Values to convert: every fp16 value, the midpoints between neighbours (ties), one float32 ulp
// either side of them, subnormals, values near and beyond the overflow threshold, random words.
std::vector<float> ConversionSample() {
  std::vector<float> v;
  for (uint32_t h = 0; h < 0x7C00; ++h) {  // positive finite fp16 words
    const float a = static_cast<float>(std::bit_cast<_Float16>(static_cast<uint16_t>(h)));
    const float b = static_cast<float>(std::bit_cast<_Float16>(static_cast<uint16_t>(h + 1)));
    const float mid = static_cast<float>((double{a} + double{b}) / 2);
    for (float x : {a, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)}) {
      v.push_back(x);
      v.push_back(-x);
    }
  }
  CounterRng rng(31);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng.Next()));
    if (!std::isnan(x)) v.push_back(x);
  }
  for (float x : {65504.0f, 65519.99f, 65520.0f, 65536.0f, 1e9f, 3.4e38f, 0x1p-25f, 0x1p-26f,
                  0x1.8p-25f, 1e-30f}) {
    v.push_back(x);
    v.push_back(-x);
  }
  return v;
}

TEST(QuantizerPropertiesTest, Fp16NearestEqualsTheCompilersHalfConversionExceptOverflow) {
  const Quantizer q(F("fp16"), Rounding::kNearest);
  const std::vector<float> sample = ConversionSample();
  std::vector<float> ours = sample;
  q.Apply(ours.data(), static_cast<int64_t>(ours.size()), 0);
  int64_t saturated = 0;
  for (size_t i = 0; i < sample.size(); ++i) {
    const float x = sample[i];
    const float hw = static_cast<float>(static_cast<_Float16>(x));  // IEEE RNE, overflow to Inf
    if (std::isinf(hw) && std::isfinite(x)) {
      // DESIGN §4: our formats saturate where IEEE overflows to Inf (|x| >= 65520).
      ASSERT_GE(std::fabs(x), 65520.0f);
      ASSERT_EQ(ours[i], std::copysign(65504.0f, x)) << "x=" << x;
      ++saturated;
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(ours[i]), std::bit_cast<uint32_t>(hw)) << "x=" << x;
  }
  EXPECT_GT(saturated, 1000);  // the difference is exercised, not assumed
  EXPECT_EQ(q.QuantizeOne(kInf, 0), kInf);
  EXPECT_EQ(static_cast<float>(static_cast<_Float16>(65520.0f)), kInf);
  EXPECT_EQ(q.QuantizeOne(65520.0f, 0), 65504.0f);
}

// bfloat16 round-to-nearest-even as hardware (and e.g. Eigen's bfloat16) does it on the word;
// overflow goes to Inf.
float ReferenceBf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return std::bit_cast<float>(u & 0xFFFF0000u);
}

TEST(QuantizerPropertiesTest, Bf16NearestEqualsReferenceRoundToNearestEvenExceptOverflow) {
  const Quantizer q(F("bf16"), Rounding::kNearest);
  std::vector<float> sample = ConversionSample();
  // bf16 ties and their neighbours, across the whole exponent range (subnormals included).
  CounterRng rng(41);
  for (int i = 0; i < 100000; ++i) {
    const uint32_t word = static_cast<uint32_t>(rng.Next()) & 0xFFFF0000u;
    for (uint32_t low : {0x8000u, 0x7FFFu, 0x8001u, 0x0u}) {
      const float x = std::bit_cast<float>(word | low);
      if (!std::isnan(x) && !std::isinf(x)) sample.push_back(x);
    }
  }
  std::vector<float> ours = sample;
  q.Apply(ours.data(), static_cast<int64_t>(ours.size()), 0);
  const float max = static_cast<float>(F("bf16").MaxFinite());
  int64_t saturated = 0;
  for (size_t i = 0; i < sample.size(); ++i) {
    if (!std::isfinite(sample[i])) continue;
    const float ref = ReferenceBf16(sample[i]);
    if (std::isinf(ref)) {
      ASSERT_EQ(ours[i], std::copysign(max, sample[i])) << "x=" << sample[i];
      ++saturated;
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(ours[i]), std::bit_cast<uint32_t>(ref)) << "x=" << sample[i];
  }
  EXPECT_GT(saturated, 10);
}

// --- Stochastic rounding statistics -----------------------------------------------------------

// For x a fraction p of the way from its lower to its upper neighbour, P(up) = p. N draws are
// Binomial(N, p): the observed rate must be within 5 standard deviations (false-alarm
// probability ~6e-7 per case; the draws are fixed by the key, so the test is deterministic).
TEST(QuantizerPropertiesTest, StochasticRoundsUpWithProbabilityEqualToTheDistance) {
  constexpr int kDraws = 100000;
  struct Case {
    const char* spec;
    double lower, step;  // a grid interval of the format
  };
  const Case cases[] = {{"fp16", 1.0, 0x1p-10},      {"fp16", 0x1p-20, 0x1p-24},  // subnormal
                        {"bf16", 4.0, 0x1p-5},       {"mask:12", 3.0, 0.25},
                        {"fp8e4m3", 0x1p-8, 0x1p-9}, {"fixed:16,8", -2.0, 0x1p-8},
                        {"fixed:8,0", 5.0, 1.0},     {"dps:8,4", 1.0, 0.0625},
                        {"float:8,0", 0.0, 0x1p-126}};  // float32 subnormals
  for (const Case& c : cases) {
    const Quantizer q(F(c.spec), Rounding::kStochastic);
    for (double p : {0.03125, 0.25, 0.5, 0.75, 0.96875}) {
      const float x = static_cast<float>(c.lower + p * c.step);
      ASSERT_EQ(double{x}, c.lower + p * c.step);  // exact in float32
      std::vector<float> v(kDraws, x);
      q.Apply(v.data(), kDraws, DeriveKey(51, std::bit_cast<uint32_t>(x)));
      int64_t up = 0;
      for (float y : v) {
        ASSERT_TRUE(y == static_cast<float>(c.lower) || y == static_cast<float>(c.lower + c.step))
            << c.spec << " x=" << x << " gave " << y;
        up += y != static_cast<float>(c.lower);
      }
      const double rate = static_cast<double>(up) / kDraws;
      const double sigma = std::sqrt(p * (1 - p) / kDraws);
      EXPECT_NEAR(rate, p, 5 * sigma) << c.spec << " x=" << x;
    }
  }
}

TEST(QuantizerPropertiesTest, StochasticIsUnbiasedOverManyValues) {
  // Mean error over many different x (each drawn once) within 5 standard errors of zero:
  // the per-value error has variance at most step^2/4.
  for (const char* spec :
       {"fp16", "bf16", "fp8e5m2", "mask:10", "fixed:12,8", "int:4", "dps:6,6"}) {
    const Format f = F(spec);
    CounterRng rng(61);
    std::vector<float> x(200000);
    for (float& v : x) v = static_cast<float>(rng.Uniform() * 3.0 - 1.5);
    const Quantizer trunc(f, Rounding::kTruncate), near(f, Rounding::kNearest);
    const std::vector<float> q = Quantised(Quantizer(f, Rounding::kStochastic), x, 62);
    double sum = 0, var_bound = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      sum += double{q[i]} - double{x[i]};
      // The grid step around x: 2^-FL, int's max/(2^(B-1)-1), or at most |x|·2^-M (+ the
      // subnormal step) for floats.
      double step = 0;
      if (IsFixedLike(f)) {
        step = std::ldexp(1.0, -f.frac_bits);
      } else if (f.kind == FormatKind::kInt) {
        step = 1.5 / (std::ldexp(1.0, f.word_bits - 1) - 1);
      } else {
        const int m = f.kind == FormatKind::kMask ? f.mask_bits - 9 : f.mantissa_bits;
        step = std::fabs(double{x[i]}) * std::ldexp(1.0, -m) + std::ldexp(1.0, -149);
      }
      var_bound += step * step / 4;
    }
    const double bound = 5 * std::sqrt(var_bound) / static_cast<double>(x.size());
    EXPECT_LT(std::fabs(sum / static_cast<double>(x.size())), bound) << spec;
    // Deterministic rounding is visibly biased on the same data (truncate toward zero/floor
    // is not symmetric for fixed point): a sanity check that the bound can fail.
    const std::vector<float> t = Quantised(trunc, x, 0);
    double tsum = 0;
    for (size_t i = 0; i < x.size(); ++i) tsum += double{t[i]} - double{x[i]};
    if (IsFixedLike(f) || f.kind == FormatKind::kInt) {
      EXPECT_GT(std::fabs(tsum / static_cast<double>(x.size())), bound) << spec;
    }
  }
}

// Adding 1.0 to a running sum held in the format: with nearest, once the step reaches 2 each
// addition is a tie that rounds back to the even sum, so the sum stalls at 2^(M+1)
// (fp16: 2048, bf16: 256). Stochastic rounding keeps growing by 1 per addition in expectation.
float Accumulate(const Quantizer& q, int additions, uint64_t key) {
  float sum = 0;
  for (int i = 0; i < additions; ++i) sum = q.QuantizeOne(sum + 1.0f, CounterRandom(key, i));
  return sum;
}

TEST(QuantizerPropertiesTest, AccumulatingOnesStallsWithNearestButNotWithStochastic) {
  EXPECT_EQ(Accumulate(Quantizer(F("fp16"), Rounding::kNearest), 10000, 0), 2048.0f);
  EXPECT_EQ(Accumulate(Quantizer(F("bf16"), Rounding::kNearest), 10000, 0), 256.0f);
  EXPECT_EQ(Accumulate(Quantizer(F("fp16"), Rounding::kTruncate), 10000, 0), 2048.0f);
  // Stochastic: the expected sum after n additions is n; the variance of one addition is at
  // most step^2/4 with step <= 4 (fp16 below 8192) or <= 8 (bf16 below 2048), so 5 sigma
  // bounds are 5·sqrt(n)·2 and 5·sqrt(n)·4.
  constexpr int kRuns = 20;
  double fp16 = 0, bf16 = 0;
  for (int run = 0; run < kRuns; ++run) {
    fp16 += Accumulate(Quantizer(F("fp16"), Rounding::kStochastic), 4096, 100 + run);
    bf16 += Accumulate(Quantizer(F("bf16"), Rounding::kStochastic), 1024, 200 + run);
  }
  EXPECT_NEAR(fp16 / kRuns, 4096.0, 5 * std::sqrt(4096.0) * 2 / std::sqrt(double{kRuns}));
  EXPECT_NEAR(bf16 / kRuns, 1024.0, 5 * std::sqrt(1024.0) * 4 / std::sqrt(double{kRuns}));
}

TEST(QuantizerPropertiesTest, ApplyMeasuredGivesBitwiseTheSameResultAsApply) {
  const std::vector<float> values = Values(3000, 71);
  for (const char* spec : kAllFormats) {
    for (Rounding r : kRoundings) {
      const Quantizer q(F(spec), r);
      std::vector<float> a = values, b = values;
      q.Apply(a.data(), static_cast<int64_t>(a.size()), 72);
      QuantStats stats;
      q.ApplyMeasured(b.data(), static_cast<int64_t>(b.size()), 72, &stats);
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_TRUE(Same(a[i], b[i])) << spec << " " << RoundingName(r) << " x=" << values[i];
      }
      EXPECT_EQ(stats.values, static_cast<int64_t>(values.size())) << spec;
    }
  }
}

TEST(QuantizerPropertiesTest, ApplyEqualsQuantizeOneWithElementRandomBits) {
  // The contract of Apply (also after vectorisation): element i gets ElementRandom(key, i), and
  // the result does not depend on the buffer's length or alignment. Specials included: the
  // branch-free loops compute every path for every element and select.
  std::vector<float> values = Values(1001, 81);
  for (float special : {kInf, -kInf, std::numeric_limits<float>::quiet_NaN(), 0.0f, -0.0f,
                        std::numeric_limits<float>::denorm_min(), 0x1p-14f, -0x1p-15f}) {
    values.insert(values.begin() + 5, special);
  }
  for (const char* spec : kAllFormats) {
    const Format f = F(spec);
    if (f.kind == FormatKind::kInt) continue;  // per-tensor scale: QuantizeOne is the identity
    for (Rounding r : kRoundings) {
      const Quantizer q(f, r);
      for (bool avx512 : {true, false}) {  // the vector loops and the portable ones
        const bool before = SetQuantizerAvx512ForTesting(avx512);
        for (int offset : {0, 1, 3}) {
          std::vector<float> v(values.begin() + offset, values.end());
          q.Apply(v.data(), static_cast<int64_t>(v.size()), 82);
          for (size_t i = 0; i < v.size(); ++i) {
            ASSERT_TRUE(Same(v[i], q.QuantizeOne(values[i + offset], ElementRandom(82, i))))
                << spec << " " << RoundingName(r) << " avx512 " << avx512 << " i=" << i;
          }
        }
        SetQuantizerAvx512ForTesting(before);
      }
    }
  }
}

// MarkSaturated compares in float with bounds rounded inward; it must mark exactly what the
// per-element Saturates (double bounds) marks, also where a bound is not a float (fixed:32,16's
// top is 32767.99998...) and for values next to the bounds.
TEST(QuantizerPropertiesTest, MarkSaturatedMarksExactlyWhatSaturatesSays) {
  for (const char* spec : kAllFormats) {
    const Quantizer q(F(spec), Rounding::kNearest);
    std::vector<float> values = Values(2001, 91);
    for (float x : {kInf, -kInf, std::numeric_limits<float>::quiet_NaN(), 0.0f, -0.0f}) {
      values.push_back(x);
    }
    const float top = q.QuantizeOne(std::numeric_limits<float>::max(), 0);
    const float bottom = q.QuantizeOne(std::numeric_limits<float>::lowest(), 0);
    for (float edge : {top, bottom}) {
      values.push_back(edge);
      values.push_back(std::nextafter(edge, kInf));
      values.push_back(std::nextafter(edge, -kInf));
    }
    std::vector<uint8_t> marks(values.size(), 7);
    const bool any =
        q.MarkSaturated(values.data(), static_cast<int64_t>(values.size()), marks.data());
    bool expected_any = false;
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(marks[i], q.Saturates(values[i]) ? 1 : 0) << spec << " x=" << values[i];
      expected_any = expected_any || q.Saturates(values[i]);
    }
    EXPECT_EQ(any, expected_any) << spec;
  }
}

}  // namespace
}  // namespace bitsweep::trainer
