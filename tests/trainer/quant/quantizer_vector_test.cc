// The vectorised loops of Quantizer::Apply, ApplyMeasured, MarkSaturated and ApplyMarked
// (issue 9) against the per-element path QuantizeOne (FloatOne / SubnormalOne, kept as the
// scalar reference): bitwise, for the narrow-exponent float formats and the eight-bit ones,
// every rounding, both the AVX-512 loops and the portable ones, on dense sets of values that
// cover subnormals, the boundary to the normals, ties, overflow, ±Inf, NaN and ±0, with odd
// lengths and unaligned starts (so the vector loops' masked tails run at every length
// modulo 16).
#include <gtest/gtest.h>

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

const char* const kFormats[] = {"float:5,10", "fp16",    "float:4,3", "fp8e5m2",   "fp8e4m3",
                                "float:6,9",  "mask:12", "bf16",      "float:2,0", "float:7,22"};
const Rounding kRoundings[] = {Rounding::kTruncate, Rounding::kNearest, Rounding::kStochastic};

Format F(const std::string& spec) {
  auto f = ParseFormat(spec);
  EXPECT_TRUE(f.ok()) << spec << ": " << f.status();
  return f.ok() ? *f : Format();
}

// Restores the AVX-512 setting on scope exit, so a failing assertion leaves it as it was.
class Avx512Scope {
 public:
  explicit Avx512Scope(bool allowed) : before_(SetQuantizerAvx512ForTesting(allowed)) {}
  ~Avx512Scope() { SetQuantizerAvx512ForTesting(before_); }
  Avx512Scope(const Avx512Scope&) = delete;
  Avx512Scope& operator=(const Avx512Scope&) = delete;

 private:
  bool before_;
};

bool SameBits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

// Values for format f: every sign and float32 exponent with random mantissas (Inf and NaN
// included), the format's grid points, midpoints (ties) and their float32 neighbours in the
// subnormal range, around 2^emin, around the largest finite value and beyond, the specials,
// and tensors as training makes them (ReLU activations: half zeros; errors: tiny normals).
std::vector<float> Values(const Format& f, uint64_t key) {
  CounterRng rng(key);
  std::vector<float> v;
  for (uint32_t top = 0; top < (1u << 9); ++top) {  // sign and exponent
    for (int k = 0; k < 24; ++k) {
      v.push_back(std::bit_cast<float>(top << 23 | (static_cast<uint32_t>(rng.Next()) >> 9)));
    }
  }
  const bool mask = f.kind == FormatKind::kMask;
  const int e = mask ? 8 : f.exponent_bits;
  const int m = mask ? f.mask_bits - 9 : f.mantissa_bits;
  const int emin = 2 - (1 << (e - 1));
  const double step = std::ldexp(1.0, emin - m);  // the subnormal grid
  const double max = f.MaxFinite();
  auto add = [&v](double x) {
    const float xf = static_cast<float>(x);
    for (float y : {xf, std::nextafter(xf, kInf), std::nextafter(xf, -kInf)}) {
      v.push_back(y);
      v.push_back(-y);
    }
  };
  for (int k = 0; k < 300; ++k) {
    const double j = std::floor(rng.Uniform() * std::ldexp(1.0, m));
    add(j * step);          // on the subnormal grid
    add((j + 0.5) * step);  // a tie
    add((j + rng.Uniform()) * step);
    add(rng.Uniform() * step);  // below the first grid point
    add(std::ldexp(1.0, emin) * (1.0 + rng.Uniform()));
  }
  for (double x :
       {std::ldexp(1.0, emin), std::ldexp(1.0, emin) - step / 2, max, max + std::ldexp(max, -m - 1),
        max * 2, 0x1p-149, 0x1p-126, static_cast<double>(std::numeric_limits<float>::max())}) {
    add(x);
  }
  for (float x : {0.0f, -0.0f, kInf, -kInf, std::numeric_limits<float>::quiet_NaN(),
                  -std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::signaling_NaN(), std::bit_cast<float>(0xFFFFFFFFu)}) {
    v.push_back(x);
  }
  for (int k = 0; k < 4000; ++k) {
    const float a = static_cast<float>(rng.Normal());
    v.push_back(a < 0 ? 0.0f : a * 1e-3f);                              // activation-like
    v.push_back(static_cast<float>(rng.Normal()) * 1e-5f);              // error-like
    v.push_back(k % 37 == 0 ? static_cast<float>(step) * 0.3f : 0.0f);  // sparse subnormals
  }
  return v;
}

// The lengths and starts every comparison runs with: all lengths up to 40 (every tail modulo
// 16 and both parities), then the whole buffer from unaligned starts.
struct Slice {
  size_t offset, length;
};
std::vector<Slice> Slices(size_t size) {
  std::vector<Slice> s;
  for (size_t len = 1; len <= 40; ++len) s.push_back({size - len - 5, len});
  for (size_t offset : {0, 1, 3, 16, 17}) s.push_back({offset, size - offset});
  return s;
}

TEST(QuantizerVectorTest, ApplyEqualsThePerElementPathOnEveryLengthAndStart) {
  for (const char* spec : kFormats) {
    const Format f = F(spec);
    const std::vector<float> values = Values(f, 11);
    for (Rounding r : kRoundings) {
      const Quantizer q(f, r);
      std::vector<float> reference(values.size());
      for (bool avx512 : {true, false}) {
        const Avx512Scope scope(avx512);
        for (const Slice& s : Slices(values.size())) {
          const uint64_t key = 1000 + s.offset + s.length;
          std::vector<float> v(values.begin() + s.offset, values.begin() + s.offset + s.length);
          q.Apply(v.data(), static_cast<int64_t>(v.size()), key);
          for (size_t i = 0; i < v.size(); ++i) {
            const float x = values[s.offset + i];
            const float want = q.QuantizeOne(x, ElementRandom(key, static_cast<int64_t>(i)));
            ASSERT_TRUE(SameBits(v[i], want))
                << spec << " " << RoundingName(r) << " avx512 " << avx512 << " offset " << s.offset
                << " length " << s.length << " i=" << i << " x=" << x << " (" << std::hex
                << std::bit_cast<uint32_t>(x) << ") got " << v[i] << " want " << want;
          }
        }
      }
    }
  }
}

// ApplyMeasured runs Apply's loops on chunks: the values and every statistic (the error sum
// in element order) must be what the per-element path gives.
TEST(QuantizerVectorTest, ApplyMeasuredEqualsThePerElementPathAndItsStatistics) {
  for (const char* spec : kFormats) {
    const Format f = F(spec);
    const std::vector<float> values = Values(f, 12);
    const float max = static_cast<float>(f.MaxFinite());
    for (Rounding r : kRoundings) {
      const Quantizer q(f, r);
      for (bool avx512 : {true, false}) {
        const Avx512Scope scope(avx512);
        for (size_t length :
             {size_t{1}, size_t{255}, size_t{256}, size_t{257}, size_t{513}, values.size() - 1}) {
          const uint64_t key = 77 + length;
          QuantStats want;
          want.values = 5;  // statistics add to what is there
          want.error_percent_sum = 0.25;
          QuantStats got = want;
          std::vector<float> v(values.begin() + 1, values.begin() + 1 + length);
          q.ApplyMeasured(v.data(), static_cast<int64_t>(length), key, &got);
          for (size_t i = 0; i < length; ++i) {
            const float x = values[1 + i];
            const float qx = q.QuantizeOne(x, ElementRandom(key, static_cast<int64_t>(i)));
            ASSERT_TRUE(SameBits(v[i], qx)) << spec << " " << RoundingName(r) << " i=" << i;
            if (!std::isfinite(x)) continue;
            ++want.values;
            want.bits_sum += f.Bits();
            want.overflows += std::fabs(x) > max;
            if (x != 0.0f) {
              ++want.nonzero;
              want.error_percent_sum +=
                  std::fabs(double{qx} - double{x}) / std::fabs(double{x}) * 100.0;
            }
          }
          EXPECT_EQ(got.values, want.values) << spec << " " << RoundingName(r);
          EXPECT_EQ(got.overflows, want.overflows) << spec << " " << RoundingName(r);
          EXPECT_EQ(got.overflows_one_less, 0) << spec;
          EXPECT_EQ(got.nonzero, want.nonzero) << spec << " " << RoundingName(r);
          EXPECT_EQ(std::bit_cast<uint64_t>(got.error_percent_sum),
                    std::bit_cast<uint64_t>(want.error_percent_sum))
              << spec << " " << RoundingName(r) << " length " << length;
          EXPECT_EQ(got.bits_sum, want.bits_sum) << spec;
        }
      }
    }
  }
}

TEST(QuantizerVectorTest, MarkSaturatedIsTheSameWithAndWithoutAvx512) {
  for (const char* spec : {"float:5,10", "fp8e4m3", "mask:12", "fixed:16,8", "fixed:32,16"}) {
    const Format f = F(spec);
    const Quantizer q(f, Rounding::kNearest);
    const std::vector<float> values = Values(f.kind == FormatKind::kFixed ? F("fp16") : f, 13);
    for (const Slice& s : Slices(values.size())) {
      std::vector<uint8_t> portable(s.length, 7), vector(s.length, 7);
      const float* x = values.data() + s.offset;
      const int64_t n = static_cast<int64_t>(s.length);
      bool any_portable, any_vector;
      {
        const Avx512Scope scope(false);
        any_portable = q.MarkSaturated(x, n, portable.data());
      }
      {
        const Avx512Scope scope(true);
        any_vector = q.MarkSaturated(x, n, vector.data());
      }
      bool any = false;
      for (size_t i = 0; i < s.length; ++i) {
        ASSERT_EQ(portable[i], q.Saturates(x[i]) ? 1 : 0) << spec << " x=" << x[i];
        ASSERT_EQ(vector[i], portable[i]) << spec << " x=" << x[i];
        any = any || q.Saturates(x[i]);
      }
      EXPECT_EQ(any_portable, any) << spec;
      EXPECT_EQ(any_vector, any) << spec;
    }
  }
}

// ApplyMarked fuses the two passes where it can: the same marks, values and answer as
// MarkSaturated then Apply, for every kind of format.
TEST(QuantizerVectorTest, ApplyMarkedEqualsMarkSaturatedThenApply) {
  for (const char* spec : {"float:5,10", "fp8e4m3", "float:4,3", "mask:12", "bf16", "fp32",
                           "fixed:16,8", "int:8", "dynfixed:16"}) {
    const Format f = F(spec);
    const std::vector<float> values =
        Values(f.kind == FormatKind::kFloat || f.kind == FormatKind::kMask ? f : F("fp16"), 14);
    for (Rounding r : kRoundings) {
      const Quantizer q(f, r);
      for (bool avx512 : {true, false}) {
        const Avx512Scope scope(avx512);
        for (const Slice& s : Slices(values.size())) {
          const uint64_t key = 5 + s.length;
          std::vector<float> want(values.begin() + s.offset, values.begin() + s.offset + s.length);
          std::vector<float> got = want;
          std::vector<uint8_t> want_marks(s.length, 7), got_marks(s.length, 9);
          const int64_t n = static_cast<int64_t>(s.length);
          const bool want_any = q.MarkSaturated(want.data(), n, want_marks.data());
          q.Apply(want.data(), n, key);
          const bool got_any = q.ApplyMarked(got.data(), n, key, got_marks.data());
          ASSERT_EQ(got_any, want_any) << spec << " " << RoundingName(r) << " avx512 " << avx512;
          for (size_t i = 0; i < s.length; ++i) {
            ASSERT_EQ(got_marks[i], want_marks[i])
                << spec << " " << RoundingName(r) << " avx512 " << avx512 << " i=" << i;
            ASSERT_TRUE(SameBits(got[i], want[i]))
                << spec << " " << RoundingName(r) << " avx512 " << avx512 << " i=" << i;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace bitsweep::trainer
