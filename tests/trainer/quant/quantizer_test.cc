// Property tests of the quantiser: every format × rounding against an independent reference
// written in double arithmetic, plus the special cases of DESIGN §4.
#include "worker/trainer/quant/quantizer.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

const char* const kFormats[] = {"float:5,10", "fp16",      "bf16",      "tf32",        "fp8e5m2",
                                "fp8e4m3",    "float:2,0", "float:3,1", "float:8,0",   "float:6,23",
                                "mask:9",     "mask:12",   "mask:16",   "mask:20",     "mask:31",
                                "fixed:16,8", "fixed:8,4", "fixed:2,1", "fixed:32,16", "fixed:24,0",
                                "fixed:12,11"};
const Rounding kRoundings[] = {Rounding::kTruncate, Rounding::kNearest, Rounding::kStochastic};

Quantizer Make(const std::string& spec, Rounding r) {
  auto f = ParseFormat(spec);
  EXPECT_TRUE(f.ok()) << spec;
  return Quantizer(*f, r);
}

// Finite floats over the whole range (random bit patterns) and over the range training sees.
std::vector<float> TestValues(int n, uint64_t key) {
  CounterRng rng(key);
  std::vector<float> v;
  for (int i = 0; i < n; ++i) {
    float x;
    if (i % 2 == 0) {
      do {
        x = std::bit_cast<float>(static_cast<uint32_t>(rng.Next()));
      } while (!std::isfinite(x));
    } else {
      const double mag = std::ldexp(1.0 + rng.Uniform(), static_cast<int>(rng.Below(60)) - 40);
      x = static_cast<float>(rng.Uniform() < 0.5 ? -mag : mag);
    }
    v.push_back(x);
  }
  return v;
}

// The two grid neighbours of x (toward zero first for floats, below first for fixed) under an
// independent double-precision reference, before saturation.
struct Neighbours {
  double lower, upper;  // lower <= x <= upper in value (signed)
};

Neighbours Reference(const Format& f, float xf) {
  const double x = xf;
  if (f.kind == FormatKind::kFixed) {
    const double step = std::ldexp(1.0, -f.frac_bits);
    const double lo = std::floor(x / step) * step;
    return {lo, lo == x ? lo : lo + step};
  }
  const int m = f.kind == FormatKind::kMask ? f.mask_bits - 9 : f.mantissa_bits;
  const int e_bits = f.kind == FormatKind::kMask ? 8 : f.exponent_bits;
  const int emin = 2 - (1 << (e_bits - 1));
  int ex = 0;
  std::frexp(std::fabs(x), &ex);  // |x| = mant * 2^ex, mant in [0.5, 1)
  const int e = std::max(ex - 1, emin);
  const double step = std::ldexp(1.0, e - m);
  const double a = std::floor(std::fabs(x) / step) * step;
  const double b = a == std::fabs(x) ? a : a + step;
  return x < 0 ? Neighbours{-b, -a} : Neighbours{a, b};
}

double Saturate(const Format& f, double v) {
  const double max = f.MaxFinite();
  const double min =
      f.kind == FormatKind::kFixed ? -std::ldexp(1.0, f.word_bits - f.frac_bits - 1) : -max;
  return std::min(std::max(v, min), max);
}

// The expected result of deterministic rounding, by the reference.
float Expected(const Format& f, Rounding r, float x) {
  const Neighbours nb = Reference(f, x);
  double v;
  if (r == Rounding::kTruncate) {
    v = f.kind == FormatKind::kFixed ? nb.lower : (x < 0 ? nb.upper : nb.lower);
  } else {
    const double dl = x - nb.lower, du = nb.upper - x;
    if (dl < du) {
      v = nb.lower;
    } else if (du < dl) {
      v = nb.upper;
    } else {  // tie: the neighbour with an even last kept digit
      const double step = nb.upper - nb.lower;
      v = std::fmod(std::fabs(nb.lower / step), 2.0) == 0 ? nb.lower : nb.upper;
    }
  }
  return static_cast<float>(Saturate(f, v));
}

bool SameValue(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b) || (a == 0 && b == 0);
}

TEST(QuantizerTest, MaskTruncateIsExactlyABitwiseAnd) {
  const std::vector<float> values = TestValues(20000, 1);
  for (int b = 9; b <= 32; ++b) {
    const Quantizer q = Make("mask:" + std::to_string(b), Rounding::kTruncate);
    const uint32_t mask = b == 32 ? ~0u : ~((1u << (32 - b)) - 1u);
    std::vector<float> data = values;
    q.Apply(data.data(), static_cast<int64_t>(data.size()), 0);
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(data[i]), std::bit_cast<uint32_t>(values[i]) & mask)
          << "mask:" << b << " x=" << values[i];
    }
  }
}

TEST(QuantizerTest, DeterministicRoundingMatchesTheReference) {
  const std::vector<float> values = TestValues(20000, 2);
  for (const char* spec : kFormats) {
    const Format f = *ParseFormat(spec);
    for (Rounding r : {Rounding::kTruncate, Rounding::kNearest}) {
      const Quantizer q(f, r);
      for (float x : values) {
        const float got = q.QuantizeOne(x, 0);
        const float want = Expected(f, r, x);
        ASSERT_TRUE(SameValue(got, want))
            << spec << " " << RoundingName(r) << " x=" << x << " got " << got << " want " << want;
      }
    }
  }
}

TEST(QuantizerTest, StochasticPicksOneOfTheTwoNeighbours) {
  const std::vector<float> values = TestValues(20000, 3);
  for (const char* spec : kFormats) {
    const Format f = *ParseFormat(spec);
    const Quantizer q(f, Rounding::kStochastic);
    std::vector<float> data = values;
    q.Apply(data.data(), static_cast<int64_t>(data.size()), 99);
    for (size_t i = 0; i < values.size(); ++i) {
      const Neighbours nb = Reference(f, values[i]);
      const float lo = static_cast<float>(Saturate(f, nb.lower));
      const float hi = static_cast<float>(Saturate(f, nb.upper));
      ASSERT_TRUE(SameValue(data[i], lo) || SameValue(data[i], hi))
          << spec << " x=" << values[i] << " got " << data[i] << " not " << lo << " or " << hi;
    }
  }
}

TEST(QuantizerTest, ResultsAreRepresentable_QuantisingTwiceChangesNothing) {
  const std::vector<float> values = TestValues(5000, 4);
  for (const char* spec : kFormats) {
    for (Rounding r : kRoundings) {
      const Quantizer q = Make(spec, r);
      std::vector<float> once = values;
      q.Apply(once.data(), static_cast<int64_t>(once.size()), 5);
      for (Rounding again : kRoundings) {
        std::vector<float> twice = once;
        Make(spec, again).Apply(twice.data(), static_cast<int64_t>(twice.size()), 6);
        for (size_t i = 0; i < once.size(); ++i) {
          ASSERT_TRUE(SameValue(once[i], twice[i]))
              << spec << " " << RoundingName(r) << " then " << RoundingName(again)
              << " x=" << values[i] << ": " << once[i] << " -> " << twice[i];
        }
      }
    }
  }
}

TEST(QuantizerTest, MaskIsFloatWithEightExponentBits) {
  const std::vector<float> values = TestValues(5000, 7);
  for (int b = 9; b <= 32; ++b) {
    for (Rounding r : kRoundings) {
      const Quantizer mask = Make("mask:" + std::to_string(b), r);
      const Quantizer flt = Make("float:8," + std::to_string(b - 9), r);
      for (size_t i = 0; i < values.size(); ++i) {
        const uint64_t bits = CounterRandom(8, i);
        ASSERT_TRUE(SameValue(mask.QuantizeOne(values[i], bits), flt.QuantizeOne(values[i], bits)))
            << "mask:" << b << " x=" << values[i];
      }
    }
  }
}

TEST(QuantizerTest, NearestBreaksTiesToEven) {
  struct Case {
    const char* spec;
    float x, want;
  };
  const Case cases[] = {
      {"fp16", 1.0f + 0x1p-11f, 1.0f},                // mantissa 0 is even
      {"fp16", 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-9f},  // between 1 and 2 ulps: 2 is even
      {"fp16", -(1.0f + 0x1p-11f), -1.0f},
      {"mask:12", 1.0f + 0x1p-4f, 1.0f},  // 3 mantissa bits
      {"mask:12", 1.0f + 3 * 0x1p-4f, 1.25f},
      {"bf16", 1.0f + 0x1p-8f, 1.0f},
      {"fixed:8,2", 0.125f, 0.0f},
      {"fixed:8,2", 0.375f, 0.5f},
      {"fixed:8,2", -0.375f, -0.5f},
      {"fixed:8,2", 0.625f, 0.5f},
      {"fp16", 0x1p-25f, 0.0f},          // subnormal tie: 0 is even
      {"fp16", 3 * 0x1p-25f, 0x1p-23f},  // 1.5 ulps -> 2 ulps
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Make(c.spec, Rounding::kNearest).QuantizeOne(c.x, 0), c.want)
        << c.spec << " x=" << c.x;
  }
}

TEST(QuantizerTest, Fp16SubnormalsAndExtremesMatchIeeeHalf) {
  const Quantizer near = Make("fp16", Rounding::kNearest);
  const Quantizer trunc = Make("fp16", Rounding::kTruncate);
  EXPECT_EQ(near.QuantizeOne(0x1p-24f, 0), 0x1p-24f);  // smallest subnormal
  EXPECT_EQ(near.QuantizeOne(0x1p-14f, 0), 0x1p-14f);  // smallest normal
  EXPECT_EQ(near.QuantizeOne(65504.0f, 0), 65504.0f);  // largest finite
  EXPECT_EQ(near.QuantizeOne(1.5f * 0x1p-24f, 0), 0x1p-23f);
  EXPECT_EQ(trunc.QuantizeOne(1.9f * 0x1p-24f, 0), 0x1p-24f);
  EXPECT_EQ(trunc.QuantizeOne(0x1p-26f, 0), 0.0f);
  EXPECT_EQ(near.QuantizeOne(0.1f, 0), 0.0999755859375f);  // fp16(0.1)
  EXPECT_EQ(near.QuantizeOne(1.0f / 3, 0), 0.333251953125f);
  EXPECT_EQ(trunc.QuantizeOne(1e-30f, 0), 0.0f);
  EXPECT_EQ(near.QuantizeOne(3e-8f, 0), 0x1p-25f * 2);  // nearest subnormal to 3e-8
}

TEST(QuantizerTest, OverflowSaturatesToTheLargestFiniteValue) {
  for (Rounding r : kRoundings) {
    const Quantizer fp16 = Make("fp16", r);
    EXPECT_EQ(fp16.QuantizeOne(1e6f, 12345), 65504.0f);
    EXPECT_EQ(fp16.QuantizeOne(-1e6f, 12345), -65504.0f);
    EXPECT_EQ(fp16.QuantizeOne(65519.0f, ~0ull), 65504.0f);  // a round-up past max
    EXPECT_EQ(Make("fp8e4m3", r).QuantizeOne(1000.0f, 1), 240.0f);
    EXPECT_EQ(Make("fp8e5m2", r).QuantizeOne(-1e9f, 1), -57344.0f);
    const float max_mask12 = std::bit_cast<float>(0x7F7FFFFFu & ~((1u << 20) - 1u));
    EXPECT_EQ(Make("mask:12", r).QuantizeOne(std::numeric_limits<float>::max(), ~0ull), max_mask12);
    const Quantizer fixed = Make("fixed:8,4", r);
    EXPECT_EQ(fixed.QuantizeOne(100.0f, 3), 7.9375f);
    EXPECT_EQ(fixed.QuantizeOne(-100.0f, 3), -8.0f);
    EXPECT_EQ(fixed.QuantizeOne(std::numeric_limits<float>::infinity(), 3), 7.9375f);
    // Float formats keep ±Inf: it is float32's overflow signal.
    EXPECT_EQ(fp16.QuantizeOne(-std::numeric_limits<float>::infinity(), 3),
              -std::numeric_limits<float>::infinity());
  }
}

TEST(QuantizerTest, NanAndSignedZerosArePreserved) {
  const float nans[] = {std::numeric_limits<float>::quiet_NaN(),
                        std::bit_cast<float>(0x7F800001u),  // NaN with only a low bit set
                        std::bit_cast<float>(0xFF800001u)};
  for (const char* spec : kFormats) {
    for (Rounding r : kRoundings) {
      const Quantizer q = Make(spec, r);
      for (float nan : nans) EXPECT_TRUE(std::isnan(q.QuantizeOne(nan, ~0ull))) << spec;
      for (uint64_t bits : {uint64_t{0}, ~uint64_t{0}}) {
        EXPECT_EQ(std::bit_cast<uint32_t>(q.QuantizeOne(0.0f, bits)), 0u) << spec;
        EXPECT_EQ(std::bit_cast<uint32_t>(q.QuantizeOne(-0.0f, bits)), 0x80000000u) << spec;
      }
    }
  }
}

TEST(QuantizerTest, FixedTruncateIsFloorOnNegatives) {
  const Quantizer q = Make("fixed:8,2", Rounding::kTruncate);
  EXPECT_EQ(q.QuantizeOne(-0.1f, 0), -0.25f);
  EXPECT_EQ(q.QuantizeOne(0.1f, 0), 0.0f);
  EXPECT_EQ(q.QuantizeOne(-1.3f, 0), -1.5f);
  EXPECT_EQ(q.QuantizeOne(1.3f, 0), 1.25f);
  // Floats truncate toward zero instead.
  EXPECT_EQ(Make("mask:12", Rounding::kTruncate).QuantizeOne(-1.3f, 0), -1.25f);
}

TEST(QuantizerTest, StochasticIsUnbiased) {
  constexpr int kDraws = 200000;
  const float xs[] = {1.3f, -0.7f, 3.14159f, 1e-3f, -2.5e-6f, 0.3f};
  for (const char* spec :
       {"mask:12", "mask:16", "fp16", "bf16", "fp8e4m3", "fixed:16,8", "fixed:8,4", "float:5,2"}) {
    const Format f = *ParseFormat(spec);
    const Quantizer q(f, Rounding::kStochastic);
    for (float x : xs) {
      const Neighbours nb = Reference(f, x);
      if (nb.lower == nb.upper) continue;
      std::vector<float> data(kDraws, x);
      q.Apply(data.data(), kDraws, DeriveKey(11, std::bit_cast<uint32_t>(x)));
      double sum = 0;
      for (float v : data) sum += v;
      const double mean = sum / kDraws;
      const double step = nb.upper - nb.lower;
      // Bernoulli with p <= 1: standard error <= step/(2 sqrt(N)); allow 6 of them.
      const double bound = 6 * step * 0.5 / std::sqrt(double{kDraws});
      EXPECT_NEAR(mean, static_cast<double>(x), bound) << spec << " x=" << x;
    }
  }
}

TEST(QuantizerTest, StochasticIsReproducibleForAKeyAndDiffersAcrossKeys) {
  const std::vector<float> values = TestValues(4096, 12);
  for (const char* spec : {"mask:12", "fp8e5m2", "fixed:12,6"}) {
    const Quantizer q = Make(spec, Rounding::kStochastic);
    std::vector<float> a = values, b = values, c = values;
    q.Apply(a.data(), 4096, 77);
    q.Apply(b.data(), 4096, 77);
    q.Apply(c.data(), 4096, 78);
    int differ = 0;
    for (int i = 0; i < 4096; ++i) {
      ASSERT_TRUE(SameValue(a[i], b[i]));
      differ += !SameValue(a[i], c[i]);
    }
    EXPECT_GT(differ, 100) << spec;
  }
}

TEST(QuantizerTest, Fp32AndMask32AreNoOps) {
  const std::vector<float> values = TestValues(1000, 13);
  for (const char* spec : {"fp32", "mask:32", "float:8,23"}) {
    for (Rounding r : kRoundings) {
      const Quantizer q = Make(spec, r);
      EXPECT_FALSE(q.enabled()) << spec;
      std::vector<float> data = values;
      q.Apply(data.data(), 1000, 1);
      for (int i = 0; i < 1000; ++i) ASSERT_TRUE(SameValue(data[i], values[i]));
    }
  }
}

}  // namespace
}  // namespace bitsweep::trainer
