#include "worker/trainer/quant/quantizer.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>

#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

constexpr uint32_t kSignBit = 0x80000000u;
constexpr uint32_t kInfBits = 0x7F800000u;

// Stochastic rounding of pairs of float32 values with eight exponent bits (FloatOne's logic with
// selects): pair j takes CounterRandom(key, j), its low half for value 2j, its high half for
// value 2j + 1. Compiled twice: generically, and for AVX-512 (DQ has the 64-bit multiplies of
// splitmix64, so the compiler vectorises the whole loop); integer arithmetic, so the two
// give the same bits.
struct Float8Bits {
  uint32_t low_mask, keep_mask, max_bits;
};
inline uint32_t RoundWord(uint32_t u, uint32_t random32, const Float8Bits& f) {
  const uint32_t sign = u & kSignBit;
  const uint32_t mag = u ^ sign;
  const uint32_t rounded = std::min((mag + (random32 & f.low_mask)) & f.keep_mask, f.max_bits);
  return mag >= kInfBits ? u : (sign | rounded);
}
#define BITSWEEP_STOCHASTIC_PAIRS_BODY                                                       \
  for (int64_t j = 0; j < pairs; ++j) {                                                      \
    const uint64_t r = CounterRandom(key, static_cast<uint64_t>(first / 2 + j));             \
    uint64_t pair;                                                                           \
    std::memcpy(&pair, w + 2 * j, sizeof pair);                                              \
    const uint64_t lo = RoundWord(static_cast<uint32_t>(pair), static_cast<uint32_t>(r), f); \
    const uint64_t hi =                                                                      \
        RoundWord(static_cast<uint32_t>(pair >> 32), static_cast<uint32_t>(r >> 32), f);     \
    pair = lo | (hi << 32);                                                                  \
    std::memcpy(w + 2 * j, &pair, sizeof pair);                                              \
  }
void StochasticPairs(float* __restrict w, int64_t pairs, uint64_t key, int64_t first,
                     Float8Bits f) {
  BITSWEEP_STOCHASTIC_PAIRS_BODY
}
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) void StochasticPairsAvx512(
    float* __restrict w, int64_t pairs, uint64_t key, int64_t first, Float8Bits f) {
  BITSWEEP_STOCHASTIC_PAIRS_BODY
}
#undef BITSWEEP_STOCHASTIC_PAIRS_BODY

// Narrow exponents (float:E,M with E < 8, fp16, fp8...): what the branch-free loops below need.
// Values below 2^emin lie on a uniform grid of step 2^(emin-M) (the format's subnormals).
struct NarrowBits {
  uint32_t low_mask, keep_mask, max_bits, half_minus_one, lsb_enable, drop, min_normal_bits;
  float magic;             // 2^(emin-M+23): adding it rounds at the subnormal step
  float step;              // 2^(emin-M)
  double subnormal_scale;  // 2^(M-emin)
  double subnormal_step;   // 2^(emin-M)
};

// Deterministic rounding of narrow-exponent values. Below 2^emin adding `magic` makes
// float32's own round-to-nearest-even round at the subnormal step (the sum stays in one binade
// as M <= 23), and subtracting it again is exact; truncation steps back down where that went
// up. This gives bitwise what SubnormalOne's floor/nearbyint give. Compiled twice, like
// StochasticPairs: the AVX-512 copy is the same loop, vectorised 16 wide.
#define BITSWEEP_NARROW_DETERMINISTIC_BODY                                                    \
  for (int64_t i = 0; i < n; ++i) {                                                           \
    const uint32_t u = std::bit_cast<uint32_t>(w[i]);                                         \
    const uint32_t sign = u & kSignBit;                                                       \
    const uint32_t mag = u ^ sign;                                                            \
    const uint32_t inc = nearest ? f.half_minus_one + ((mag >> f.drop) & f.lsb_enable) : 0u;  \
    const uint32_t normal = std::min((mag + inc) & f.keep_mask, f.max_bits);                  \
    const float a = std::bit_cast<float>(mag);                                                \
    float sub = (a + f.magic) - f.magic;                                                      \
    if (!nearest) sub -= f.step * static_cast<float>(std::bit_cast<uint32_t>(sub) > mag);     \
    const uint32_t rounded = mag < f.min_normal_bits ? std::bit_cast<uint32_t>(sub) : normal; \
    w[i] = std::bit_cast<float>(mag >= kInfBits ? u : (sign | rounded));                      \
  }
template <bool nearest>
void NarrowDeterministic(float* __restrict w, int64_t n, const NarrowBits& f) {
  BITSWEEP_NARROW_DETERMINISTIC_BODY
}
template <bool nearest>
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) void NarrowDeterministicAvx512(
    float* __restrict w, int64_t n, const NarrowBits& f) {
  BITSWEEP_NARROW_DETERMINISTIC_BODY
}
#undef BITSWEEP_NARROW_DETERMINISTIC_BODY

// Stochastic rounding of one narrow-exponent value with its 64 random bits r (ElementRandom):
// FloatOne's and SubnormalOne's results, bitwise, then a select, without branches. Errors and
// gradients put many values below 2^emin, where a data-dependent branch to SubnormalOne
// mispredicts. The subnormal floor is a truncation to int64 of a magnitude clamped to the
// subnormal range: exact there, and never out of range or NaN.
inline uint32_t NarrowStochasticWord(uint32_t u, uint64_t r, const NarrowBits& f) {
  const uint32_t sign = u & kSignBit;
  const uint32_t mag = u ^ sign;
  const uint32_t normal =
      std::min((mag + (static_cast<uint32_t>(r) & f.low_mask)) & f.keep_mask, f.max_bits);
  const double y = static_cast<double>(std::bit_cast<float>(std::min(mag, f.min_normal_bits))) *
                   f.subnormal_scale;
  const double fl = static_cast<double>(static_cast<int64_t>(y));
  const double q = fl + (ToUnitDouble(Mix64(r)) < y - fl ? 1.0 : 0.0);
  const uint32_t sub = std::bit_cast<uint32_t>(static_cast<float>(q * f.subnormal_step));
  const uint32_t rounded = mag < f.min_normal_bits ? sub : normal;
  return mag >= kInfBits ? u : (sign | rounded);
}

// Saturates() of a float:E,M / mask:B value, on its magnitude bits: finite beyond the largest
// finite value, or infinite (NaN is not).
inline bool OutsideWord(uint32_t mag, const NarrowBits& f) {
  return mag > f.max_bits && mag <= kInfBits;
}

// The portable loop: one splitmix64 value per pair of elements (ElementRandom's halves).
// Elements [0, n) of the stream that starts at element `first` (even). With `marks`, also
// MarkSaturated's marks of the values before rounding; returns whether any is set.
bool NarrowStochastic(float* w, int64_t n, uint64_t key, int64_t first, const NarrowBits& f,
                      uint8_t* marks) {
  bool any = false;
  auto one = [&](int64_t i, uint64_t r) {
    const uint32_t u = std::bit_cast<uint32_t>(w[i]);
    if (marks != nullptr) {
      marks[i] = OutsideWord(u & ~kSignBit, f);
      any |= marks[i] != 0;
    }
    w[i] = std::bit_cast<float>(NarrowStochasticWord(u, r, f));
  };
  int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    const uint64_t r = CounterRandom(key, static_cast<uint64_t>(first + i) >> 1);
    one(i, r);
    one(i + 1, (r >> 32) | (r << 32));
  }
  if (i < n) one(i, ElementRandom(key, first + i));
  return any;
}

// The AVX-512 loops use the zero-masked forms of the intrinsics with all lanes set: the plain
// ones start from an undefined register, which GCC 12 reports as maybe-uninitialized.
constexpr __mmask8 kAll8 = 0xFF;
constexpr __mmask16 kAll16 = 0xFFFF;

// splitmix64's Mix64 on eight lanes.
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) inline __m512i Mix64x8(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_maskz_srli_epi64(kAll8, z, 30)),
                         _mm512_set1_epi64(static_cast<int64_t>(0xBF58476D1CE4E5B9ULL)));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_maskz_srli_epi64(kAll8, z, 27)),
                         _mm512_set1_epi64(static_cast<int64_t>(0x94D049BB133111EBULL)));
  return _mm512_xor_si512(z, _mm512_maskz_srli_epi64(kAll8, z, 31));
}

// SubnormalOne's stochastic rounding of eight clamped magnitudes (the float32 bits in the low
// halves of the lanes of `mag`) with the random words `r`, as float32 bits in the low halves:
// the same double operations as NarrowStochasticWord, eight at a time (all exact, so bitwise
// the same).
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) inline __m512i SubnormalStochastic8(
    __m512i mag, __m512i r, __m512d scale, __m512d step) {
  const __m256 x = _mm256_castsi256_ps(_mm512_maskz_cvtepi64_epi32(kAll8, mag));
  const __m512d y = _mm512_mul_pd(_mm512_maskz_cvtps_pd(kAll8, x), scale);
  const __m512d fl = _mm512_maskz_roundscale_pd(kAll8, y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512d unit =
      _mm512_mul_pd(_mm512_maskz_cvtepi64_pd(kAll8, _mm512_maskz_srli_epi64(kAll8, Mix64x8(r), 11)),
                    _mm512_set1_pd(0x1.0p-53));
  const __mmask8 up = _mm512_cmp_pd_mask(unit, _mm512_sub_pd(y, fl), _CMP_LT_OQ);
  const __m512d q = _mm512_mask_add_pd(fl, up, fl, _mm512_set1_pd(1.0));
  const __m256 rounded = _mm512_maskz_cvtpd_ps(kAll8, _mm512_mul_pd(q, step));
  return _mm512_maskz_cvtepu32_epi64(kAll8, _mm256_castps_si256(rounded));
}

// NarrowStochastic, sixteen elements (eight pairs, one splitmix64 value each) at a time; the
// tail through masked loads and stores. The subnormal half (two more mixes and the double
// arithmetic per element) runs only for blocks holding a nonzero magnitude below 2^emin:
// zeros (ReLU's) and normal values round on the bit pattern alone.
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) bool NarrowStochasticAvx512(
    float* w, int64_t n, uint64_t key, int64_t first, const NarrowBits& f, uint8_t* marks) {
  const __m512i gamma8 = _mm512_set1_epi64(static_cast<int64_t>(8 * 0x9E3779B97F4A7C15ULL));
  // splitmix64's state for pair j is key + (j + 1)·gamma.
  __m512i state = _mm512_add_epi64(
      _mm512_set1_epi64(static_cast<int64_t>(key + (static_cast<uint64_t>(first) / 2 + 1) *
                                                       0x9E3779B97F4A7C15ULL)),
      _mm512_mullo_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi64(static_cast<int64_t>(0x9E3779B97F4A7C15ULL))));
  const __m512i sign_bit = _mm512_set1_epi32(static_cast<int>(kSignBit));
  const __m512i inf_bits = _mm512_set1_epi32(static_cast<int>(kInfBits));
  const __m512i low_mask = _mm512_set1_epi32(static_cast<int>(f.low_mask));
  const __m512i keep_mask = _mm512_set1_epi32(static_cast<int>(f.keep_mask));
  const __m512i max_bits = _mm512_set1_epi32(static_cast<int>(f.max_bits));
  const __m512i min_normal = _mm512_set1_epi32(static_cast<int>(f.min_normal_bits));
  const __m512d scale = _mm512_set1_pd(f.subnormal_scale);
  const __m512d step = _mm512_set1_pd(f.subnormal_step);
  __mmask16 any = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 live =
        n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i u = _mm512_maskz_loadu_epi32(live, w + i);
    const __m512i r = Mix64x8(state);  // lane k (32 bits): element k's low random bits
    state = _mm512_add_epi64(state, gamma8);
    const __m512i sign = _mm512_and_si512(u, sign_bit);
    const __m512i mag = _mm512_xor_si512(u, sign);
    if (marks != nullptr) {  // OutsideWord
      const __mmask16 outside =
          _mm512_mask_cmpgt_epu32_mask(_mm512_cmple_epu32_mask(mag, inf_bits), mag, max_bits);
      _mm_mask_storeu_epi8(marks + i, live, _mm_maskz_set1_epi8(outside, 1));
      any = static_cast<__mmask16>(any | outside);
    }
    __m512i rounded = _mm512_maskz_min_epu32(
        kAll16, _mm512_and_si512(_mm512_add_epi32(mag, _mm512_and_si512(r, low_mask)), keep_mask),
        max_bits);
    const __mmask16 small = _mm512_cmplt_epu32_mask(mag, min_normal);
    if (_mm512_mask_test_epi32_mask(small, mag, mag) != 0) {
      const __m512i clamped = _mm512_maskz_min_epu32(kAll16, mag, min_normal);
      const __m512i even = SubnormalStochastic8(clamped, r, scale, step);
      const __m512i odd = SubnormalStochastic8(_mm512_maskz_srli_epi64(kAll8, clamped, 32),
                                               _mm512_maskz_ror_epi64(kAll8, r, 32), scale, step);
      rounded = _mm512_mask_blend_epi32(
          small, rounded, _mm512_or_si512(even, _mm512_maskz_slli_epi64(kAll8, odd, 32)));
    }
    const __mmask16 special = _mm512_cmpge_epu32_mask(mag, inf_bits);
    const __m512i out = _mm512_mask_blend_epi32(special, _mm512_or_si512(sign, rounded), u);
    _mm512_mask_storeu_epi32(w + i, live, out);
  }
  return any != 0;
}

// saturated[i] = data[i] outside [low, high]; returns whether any is. Compiled twice, like
// StochasticPairs.
#define BITSWEEP_MARK_OUTSIDE_BODY                                  \
  uint8_t any = 0;                                                  \
  for (int64_t i = 0; i < n; ++i) {                                 \
    const float x = data[i];                                        \
    const uint8_t s = static_cast<uint8_t>((x < low) | (x > high)); \
    saturated[i] = s;                                               \
    any |= s;                                                       \
  }                                                                 \
  return any != 0;
// clang-format off
bool MarkOutside(const float* __restrict data, int64_t n, float low, float high,
                 uint8_t* __restrict saturated) {
  BITSWEEP_MARK_OUTSIDE_BODY
}
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) bool MarkOutsideAvx512(
    const float* __restrict data, int64_t n, float low, float high,
    uint8_t* __restrict saturated) {
  BITSWEEP_MARK_OUTSIDE_BODY
}
// clang-format on
#undef BITSWEEP_MARK_OUTSIDE_BODY

std::atomic<bool> avx512_allowed{true};

bool UseAvx512() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f") &&
                                                     __builtin_cpu_supports("avx512dq") &&
                                                     __builtin_cpu_supports("avx512vl") &&
                                                     __builtin_cpu_supports("avx512bw"));
  return has && avx512_allowed.load(std::memory_order_relaxed);
}

}  // namespace

Quantizer::Quantizer(const Format& format, Rounding rounding)
    : format_(format), rounding_(rounding) {
  switch (format.kind) {
    case FormatKind::kFp32:
      enabled_ = false;
      break;
    case FormatKind::kMask:
    case FormatKind::kFloat: {
      const bool mask = format.kind == FormatKind::kMask;
      mantissa_bits_ = mask ? format.mask_bits - 9 : format.mantissa_bits;
      const int e = mask ? 8 : format.exponent_bits;
      emin_ = 2 - (1 << (e - 1));  // 1 - bias, bias = 2^(E-1) - 1
      drop_ = 23 - mantissa_bits_;
      low_mask_ = drop_ == 0 ? 0u : (1u << drop_) - 1u;
      keep_mask_ = ~low_mask_;
      half_minus_one_ = drop_ == 0 ? 0u : (1u << (drop_ - 1)) - 1u;
      lsb_enable_ = drop_ == 0 ? 0u : 1u;
      max_bits_ = std::bit_cast<uint32_t>(static_cast<float>(format.MaxFinite()));
      // With 8 exponent bits the format's subnormals are float32's subnormals with fewer
      // bits, which the bit path rounds correctly; only narrower exponents need the slow path.
      min_normal_bits_ = e == 8 ? 0u : static_cast<uint32_t>(emin_ + 127) << 23;
      subnormal_scale_ = std::ldexp(1.0, mantissa_bits_ - emin_);
      subnormal_step_ = std::ldexp(1.0, emin_ - mantissa_bits_);
      enabled_ = !(drop_ == 0 && e == 8);
      if (enabled_) {
        highest_ = format.MaxFinite();
        lowest_ = -highest_;
      }
      break;
    }
    case FormatKind::kFixed:
    case FormatKind::kDynFixed:
    case FormatKind::kDps: {
      const int wl =
          format.kind == FormatKind::kDps ? format.int_bits + format.frac_bits : format.word_bits;
      scale_ = std::ldexp(1.0, format.frac_bits);
      inv_scale_ = std::ldexp(1.0, -format.frac_bits);
      lo_ = -std::ldexp(1.0, wl - 1);
      hi_ = std::ldexp(1.0, wl - 1) - 1.0;
      lowest_ = lo_ * inv_scale_;
      highest_ = hi_ * inv_scale_;
      fixed_ = true;
      enabled_ = true;
      break;
    }
    case FormatKind::kInt:
      hi_ = std::ldexp(1.0, format.word_bits - 1) - 1.0;
      lo_ = -hi_;
      enabled_ = true;
      break;
  }
}

bool Quantizer::MarkSaturated(const float* __restrict data, int64_t n,
                              uint8_t* __restrict saturated) const {
  // In float: for a float x, x > highest ⇔ x > (the largest float ≤ highest), and likewise
  // below, so comparing with those floats is exact and vectorises without conversions.
  float high = static_cast<float>(highest_), low = static_cast<float>(lowest_);
  if (static_cast<double>(high) > highest_) high = std::nextafter(high, -INFINITY);
  if (static_cast<double>(low) < lowest_) low = std::nextafter(low, INFINITY);
  return (UseAvx512() ? MarkOutsideAvx512 : MarkOutside)(data, n, low, high, saturated);
}

bool SetQuantizerAvx512ForTesting(bool allowed) { return avx512_allowed.exchange(allowed); }

void QuantStats::Add(const QuantStats& other) {
  values += other.values;
  overflows += other.overflows;
  overflows_one_less += other.overflows_one_less;
  nonzero += other.nonzero;
  error_percent_sum += other.error_percent_sum;
  bits_sum += other.bits_sum;
}

namespace {

// Rounds y (in steps) to an integer: the shared core of the fixed and int paths.
template <Rounding R>
inline double RoundSteps(double y, uint64_t random_bits) {
  if constexpr (R == Rounding::kTruncate) {
    return std::floor(y);  // two's complement drops low bits: floor
  } else if constexpr (R == Rounding::kNearest) {
    return std::nearbyint(y);  // default rounding mode: ties to even
  } else {
    const double fl = std::floor(y);
    return fl + (ToUnitDouble(Mix64(random_bits)) < y - fl ? 1.0 : 0.0);
  }
}

// Adds one value's rounding to *stats.
inline void Count(float x, float q, bool overflow, bool overflow_one_less, int bits,
                  QuantStats* stats) {
  if (!std::isfinite(x)) return;
  ++stats->values;
  stats->bits_sum += bits;
  stats->overflows += overflow;
  stats->overflows_one_less += overflow_one_less;
  if (x != 0.0f) {
    ++stats->nonzero;
    stats->error_percent_sum +=
        std::fabs(static_cast<double>(q) - static_cast<double>(x)) / std::fabs(double{x}) * 100.0;
  }
}

}  // namespace

template <Rounding R>
void Quantizer::ApplyInt(float* data, int64_t n, uint64_t key, QuantStats* stats) const {
  double max = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isfinite(data[i])) max = std::max(max, std::fabs(static_cast<double>(data[i])));
  }
  const int bits = format_.word_bits;
  if (max == 0) {
    if (stats != nullptr) {
      for (int64_t i = 0; i < n; ++i) Count(data[i], data[i], false, false, bits, stats);
    }
    return;
  }
  // y = x / max · qmax keeps the largest magnitude exactly on ±qmax.
  const double step = max / hi_;
  for (int64_t i = 0; i < n; ++i) {
    const float x = data[i];
    if (std::isnan(x)) continue;
    double y = static_cast<double>(x) / max * hi_;
    // A value already on the grid (as stored in float32) stays there: without this, the
    // float32 rounding of k·step (relative error 2^-24) could put y just below k, and truncate
    // or stochastic rounding would move an already quantised tensor down a step.
    if (const double k = std::nearbyint(y); static_cast<float>(k * step) == x) y = k;
    const uint64_t r = R == Rounding::kStochastic ? ElementRandom(key, i) : 0;
    const double q =
        std::isinf(x) ? std::copysign(hi_, y) : std::clamp(RoundSteps<R>(y, r), lo_, hi_);
    data[i] = x == 0.0f ? x : static_cast<float>(q * step);
    if (stats != nullptr) Count(x, data[i], false, false, bits, stats);
  }
}

template <Rounding R>
float Quantizer::SubnormalOne(float x, uint64_t random_bits) const {
  // |x| < 2^emin: the grid is uniform with step 2^(emin-M). Scaling by a power of two is exact
  // in double, and y < 2^M, so floor/rint below are exact too.
  const double y = static_cast<double>(std::fabs(x)) * subnormal_scale_;
  double q;
  if constexpr (R == Rounding::kTruncate) {
    q = std::floor(y);
  } else if constexpr (R == Rounding::kNearest) {
    q = std::nearbyint(y);  // default rounding mode: ties to even
  } else {
    const double fl = std::floor(y);
    q = fl + (ToUnitDouble(Mix64(random_bits)) < y - fl ? 1.0 : 0.0);
  }
  return std::copysign(static_cast<float>(q * subnormal_step_), x);
}

template <Rounding R>
inline float Quantizer::FloatOne(float x, uint64_t random_bits) const {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = u & kSignBit;
  uint32_t mag = u ^ sign;
  if (mag >= kInfBits) return x;  // NaN and Inf are kept
  if (mag < min_normal_bits_) return SubnormalOne<R>(x, random_bits);
  // The magnitude bits are monotonic in the value, and a carry out of the mantissa steps the
  // exponent, so rounding the word at bit `drop` rounds the value to the next grid point.
  if constexpr (R == Rounding::kNearest) {
    mag += half_minus_one_ + ((mag >> drop_) & lsb_enable_);
  } else if constexpr (R == Rounding::kStochastic) {
    // Up exactly when the dropped bits plus uniform random bits carry: P = dropped / 2^drop.
    mag += static_cast<uint32_t>(random_bits) & low_mask_;
  }
  mag &= keep_mask_;
  mag = std::min(mag, max_bits_);  // saturate (also catches a round-up into Inf)
  return std::bit_cast<float>(sign | mag);
}

template <Rounding R>
inline float Quantizer::FixedOne(float x, uint64_t random_bits) const {
  if (std::isnan(x) || x == 0.0f) return x;
  const double y = static_cast<double>(x) * scale_;  // exact: scaling by 2^FL
  const double q = std::clamp(RoundSteps<R>(y, random_bits), lo_, hi_);
  return static_cast<float>(q * inv_scale_);
}

template <Rounding R>
bool Quantizer::ApplyFloat(float* data, int64_t n, uint64_t key, int64_t first,
                           uint8_t* saturated) const {
  const bool avx512 = UseAvx512();
  auto narrow = [this] {
    return NarrowBits{low_mask_,
                      keep_mask_,
                      max_bits_,
                      half_minus_one_,
                      lsb_enable_,
                      static_cast<uint32_t>(drop_),
                      min_normal_bits_,
                      std::ldexp(1.0f, emin_ - mantissa_bits_ + 23),
                      std::ldexp(1.0f, emin_ - mantissa_bits_),
                      subnormal_scale_,
                      subnormal_step_};
  };
  if (R == Rounding::kStochastic && min_normal_bits_ != 0) {
    // Narrow exponent: the normal and the subnormal rounding for every element, and a select;
    // the marks in the same pass (activations are large: one pass over them less).
    const NarrowBits f = narrow();
    return avx512 ? NarrowStochasticAvx512(data, n, key, first, f, saturated)
                  : NarrowStochastic(data, n, key, first, f, saturated);
  }
  const bool any = saturated != nullptr && MarkSaturated(data, n, saturated);
  if constexpr (R != Rounding::kStochastic) {
    // Branch-free (NarrowBits above). With eight exponent bits min_normal_bits_ is 0, so the
    // select always takes the rounding on the bit pattern.
    const NarrowBits f = narrow();
    constexpr bool kNearest = R == Rounding::kNearest;
    avx512 ? NarrowDeterministicAvx512<kNearest>(data, n, f)
           : NarrowDeterministic<kNearest>(data, n, f);
  } else {
    // Eight exponent bits (mask:B, bf16, tf32, ...): no subnormal path, and one 64-bit random
    // number serves two elements (ElementRandom's halves).
    const Float8Bits bits{low_mask_, keep_mask_, max_bits_};
    const int64_t pairs = n / 2;
    avx512 ? StochasticPairsAvx512(data, pairs, key, first, bits)
           : StochasticPairs(data, pairs, key, first, bits);
    if (n % 2 != 0) {
      const uint32_t u = std::bit_cast<uint32_t>(data[n - 1]);
      const uint64_t r = ElementRandom(key, first + n - 1);
      data[n - 1] = std::bit_cast<float>(RoundWord(u, static_cast<uint32_t>(r), bits));
    }
  }
  return any;
}

template <Rounding R>
void Quantizer::ApplyFixed(float* data, int64_t n, uint64_t key) const {
  if constexpr (R != Rounding::kStochastic) {
    // Branch-free, without libm calls: y = x·2^FL has at most 24 significant bits, so it is an
    // integer when |y| >= 2^24, and below 2^51 adding and subtracting 1.5·2^52 rounds it to
    // the nearest integer, ties to even, exactly as nearbyint does; floor steps down from
    // there. copysign keeps nearbyint's / floor's sign of a zero result.
    const double lo = lo_, hi = hi_, scale = scale_, inv = inv_scale_;
    for (int64_t i = 0; i < n; ++i) {
      const float x = data[i];
      const double y = static_cast<double>(x) * scale;
      double r = std::fabs(y) < 0x1p51 ? (y + 0x1.8p52) - 0x1.8p52 : y;
      if constexpr (R == Rounding::kTruncate) r = r > y ? r - 1.0 : r;
      r = std::copysign(r, y);
      r = r < lo ? lo : r;
      r = r > hi ? hi : r;
      const float q = static_cast<float>(r * inv);
      data[i] = (std::isnan(x) || x == 0.0f) ? x : q;
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = R == Rounding::kStochastic ? ElementRandom(key, i) : 0;
    data[i] = FixedOne<R>(data[i], r);
  }
}

template <Rounding R>
void Quantizer::ApplyMeasuredImpl(float* data, int64_t n, uint64_t key, QuantStats* stats) const {
  if (format_.kind == FormatKind::kInt) return ApplyInt<R>(data, n, key, stats);
  const int bits = format_.Bits();
  if (!fixed_) {
    // Apply's loops on chunks (of an even length, so that each chunk starts a pair of the
    // random stream), then the statistics from the chunk's values before and after.
    const float max = static_cast<float>(format_.MaxFinite());
    constexpr int64_t kChunk = 256;
    float before[kChunk];
    for (int64_t start = 0; start < n; start += kChunk) {
      const int64_t m = std::min(kChunk, n - start);
      float* chunk = data + start;
      std::memcpy(before, chunk, static_cast<size_t>(m) * sizeof(float));
      if (enabled_) ApplyFloat<R>(chunk, m, key, start, nullptr);
      for (int64_t i = 0; i < m; ++i) {
        Count(before[i], chunk[i], std::fabs(before[i]) > max, false, bits, stats);
      }
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float x = data[i];
    const uint64_t r = R == Rounding::kStochastic ? ElementRandom(key, i) : 0;
    const double y = static_cast<double>(x) * scale_;
    data[i] = FixedOne<R>(x, r);
    Count(x, data[i], y > hi_ || y<lo_, y> hi_ / 2 || y < lo_ / 2, bits, stats);
  }
}

void Quantizer::ApplyMeasured(float* data, int64_t n, uint64_t key, QuantStats* stats) const {
  switch (rounding_) {
    case Rounding::kTruncate:
      return ApplyMeasuredImpl<Rounding::kTruncate>(data, n, key, stats);
    case Rounding::kNearest:
      return ApplyMeasuredImpl<Rounding::kNearest>(data, n, key, stats);
    case Rounding::kStochastic:
      return ApplyMeasuredImpl<Rounding::kStochastic>(data, n, key, stats);
  }
}

void Quantizer::Apply(float* data, int64_t n, uint64_t key) const {
  if (!enabled_) return;
  if (format_.kind == FormatKind::kInt) {
    switch (rounding_) {
      case Rounding::kTruncate:
        return ApplyInt<Rounding::kTruncate>(data, n, key, nullptr);
      case Rounding::kNearest:
        return ApplyInt<Rounding::kNearest>(data, n, key, nullptr);
      case Rounding::kStochastic:
        return ApplyInt<Rounding::kStochastic>(data, n, key, nullptr);
    }
  }
  const bool fixed = fixed_;
  switch (rounding_) {
    case Rounding::kTruncate:
      fixed ? ApplyFixed<Rounding::kTruncate>(data, n, key)
            : static_cast<void>(ApplyFloat<Rounding::kTruncate>(data, n, key, 0, nullptr));
      break;
    case Rounding::kNearest:
      fixed ? ApplyFixed<Rounding::kNearest>(data, n, key)
            : static_cast<void>(ApplyFloat<Rounding::kNearest>(data, n, key, 0, nullptr));
      break;
    case Rounding::kStochastic:
      fixed ? ApplyFixed<Rounding::kStochastic>(data, n, key)
            : static_cast<void>(ApplyFloat<Rounding::kStochastic>(data, n, key, 0, nullptr));
      break;
  }
}

bool Quantizer::ApplyMarked(float* data, int64_t n, uint64_t key, uint8_t* saturated) const {
  if (enabled_ && !fixed_ && format_.kind != FormatKind::kInt) {
    switch (rounding_) {
      case Rounding::kTruncate:
        return ApplyFloat<Rounding::kTruncate>(data, n, key, 0, saturated);
      case Rounding::kNearest:
        return ApplyFloat<Rounding::kNearest>(data, n, key, 0, saturated);
      case Rounding::kStochastic:
        return ApplyFloat<Rounding::kStochastic>(data, n, key, 0, saturated);
    }
  }
  const bool any = MarkSaturated(data, n, saturated);
  Apply(data, n, key);
  return any;
}

float Quantizer::QuantizeOne(float x, uint64_t random_bits) const {
  if (!enabled_ || format_.kind == FormatKind::kInt) return x;
  const bool fixed = fixed_;
  switch (rounding_) {
    case Rounding::kTruncate:
      return fixed ? FixedOne<Rounding::kTruncate>(x, random_bits)
                   : FloatOne<Rounding::kTruncate>(x, random_bits);
    case Rounding::kNearest:
      return fixed ? FixedOne<Rounding::kNearest>(x, random_bits)
                   : FloatOne<Rounding::kNearest>(x, random_bits);
    case Rounding::kStochastic:
      return fixed ? FixedOne<Rounding::kStochastic>(x, random_bits)
                   : FloatOne<Rounding::kStochastic>(x, random_bits);
  }
  return x;
}

}  // namespace bitsweep::trainer
