#include "worker/trainer/quant/quantizer.h"

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
    const uint64_t r = CounterRandom(key, static_cast<uint64_t>(j));                         \
    uint64_t pair;                                                                           \
    std::memcpy(&pair, w + 2 * j, sizeof pair);                                              \
    const uint64_t lo = RoundWord(static_cast<uint32_t>(pair), static_cast<uint32_t>(r), f); \
    const uint64_t hi =                                                                      \
        RoundWord(static_cast<uint32_t>(pair >> 32), static_cast<uint32_t>(r >> 32), f);     \
    pair = lo | (hi << 32);                                                                  \
    std::memcpy(w + 2 * j, &pair, sizeof pair);                                              \
  }
void StochasticPairs(float* __restrict w, int64_t pairs, uint64_t key, Float8Bits f) {
  BITSWEEP_STOCHASTIC_PAIRS_BODY
}
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) void StochasticPairsAvx512(
    float* __restrict w, int64_t pairs, uint64_t key, Float8Bits f){BITSWEEP_STOCHASTIC_PAIRS_BODY}
#undef BITSWEEP_STOCHASTIC_PAIRS_BODY

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
  uint8_t any = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float x = data[i];
    const uint8_t s = static_cast<uint8_t>((x < low) | (x > high));
    saturated[i] = s;
    any |= s;
  }
  return any != 0;
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
void Quantizer::ApplyFloat(float* data, int64_t n, uint64_t key) const {
  if (min_normal_bits_ != 0 && R != Rounding::kStochastic) {
    // Narrow exponent, deterministic: branch-free. Below 2^emin the grid is uniform with step
    // 2^(emin-M); adding 2^(emin-M+23) makes float32's own round-to-nearest-even round at that
    // step (the sum stays in one binade as M <= 23), and subtracting it again is exact. This
    // gives bitwise what SubnormalOne's floor/nearbyint give.
    const float magic = std::ldexp(1.0f, emin_ - mantissa_bits_ + 23);
    const float step = std::ldexp(1.0f, emin_ - mantissa_bits_);
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = std::bit_cast<uint32_t>(data[i]);
      const uint32_t sign = u & kSignBit;
      const uint32_t mag = u ^ sign;
      uint32_t inc = 0;
      if constexpr (R == Rounding::kNearest) inc = half_minus_one_ + ((mag >> drop_) & lsb_enable_);
      const uint32_t normal = std::min((mag + inc) & keep_mask_, max_bits_);
      const float a = std::bit_cast<float>(mag);
      float sub = (a + magic) - magic;
      if constexpr (R == Rounding::kTruncate) sub = sub > a ? sub - step : sub;
      const uint32_t rounded = mag < min_normal_bits_ ? std::bit_cast<uint32_t>(sub) : normal;
      data[i] = std::bit_cast<float>(mag >= kInfBits ? u : (sign | rounded));
    }
    return;
  }
  if (min_normal_bits_ != 0) {
    // Narrow exponent, stochastic: FloatOne's and SubnormalOne's results, bitwise, for every
    // element, then a select. Errors and gradients put many values below 2^emin, where a
    // data-dependent branch to SubnormalOne mispredicts (and its ldexp calls cost ~7% of a
    // float:5,10 training step). The subnormal floor is a truncation to int64 of a magnitude
    // clamped to the subnormal range: exact there, and never out of range or NaN.
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t r = ElementRandom(key, i);
      const uint32_t u = std::bit_cast<uint32_t>(data[i]);
      const uint32_t sign = u & kSignBit;
      const uint32_t mag = u ^ sign;
      const uint32_t normal =
          std::min((mag + (static_cast<uint32_t>(r) & low_mask_)) & keep_mask_, max_bits_);
      const double y = static_cast<double>(std::bit_cast<float>(std::min(mag, min_normal_bits_))) *
                       subnormal_scale_;
      const double fl = static_cast<double>(static_cast<int64_t>(y));
      const double q = fl + (ToUnitDouble(Mix64(r)) < y - fl ? 1.0 : 0.0);
      const uint32_t sub = std::bit_cast<uint32_t>(static_cast<float>(q * subnormal_step_));
      const uint32_t rounded = mag < min_normal_bits_ ? sub : normal;
      data[i] = std::bit_cast<float>(mag >= kInfBits ? u : (sign | rounded));
    }
    return;
  }
  // Eight exponent bits (mask:B, bf16, tf32, ...): no subnormal path, so the loop is
  // branch-free (FloatOne's logic with selects), and in stochastic mode one 64-bit random
  // number serves two elements (ElementRandom's halves).
  auto round = [this](uint32_t u, uint32_t random32) {
    const uint32_t sign = u & kSignBit;
    const uint32_t mag = u ^ sign;
    uint32_t inc = 0;
    if constexpr (R == Rounding::kNearest) {
      inc = half_minus_one_ + ((mag >> drop_) & lsb_enable_);
    } else if constexpr (R == Rounding::kStochastic) {
      inc = random32 & low_mask_;
    }
    const uint32_t rounded = std::min((mag + inc) & keep_mask_, max_bits_);
    return mag >= kInfBits ? u : (sign | rounded);
  };
  int64_t i = 0;
  if constexpr (R == Rounding::kStochastic) {
    const Float8Bits bits{low_mask_, keep_mask_, max_bits_};
    const int64_t pairs = n / 2;
    if (UseAvx512()) {
      StochasticPairsAvx512(data, pairs, key, bits);
    } else {
      StochasticPairs(data, pairs, key, bits);
    }
    i = 2 * pairs;
  }
  for (; i < n; ++i) {
    const uint64_t r = R == Rounding::kStochastic ? ElementRandom(key, i) : 0;
    data[i] =
        std::bit_cast<float>(round(std::bit_cast<uint32_t>(data[i]), static_cast<uint32_t>(r)));
  }
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
  const float max = static_cast<float>(format_.MaxFinite());
  for (int64_t i = 0; i < n; ++i) {
    const float x = data[i];
    const uint64_t r = R == Rounding::kStochastic ? ElementRandom(key, i) : 0;
    if (fixed_) {
      const double y = static_cast<double>(x) * scale_;
      data[i] = FixedOne<R>(x, r);
      Count(x, data[i], y > hi_ || y<lo_, y> hi_ / 2 || y < lo_ / 2, bits, stats);
    } else {
      if (enabled_) data[i] = FloatOne<R>(x, r);
      Count(x, data[i], std::fabs(x) > max, false, bits, stats);
    }
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
            : ApplyFloat<Rounding::kTruncate>(data, n, key);
      break;
    case Rounding::kNearest:
      fixed ? ApplyFixed<Rounding::kNearest>(data, n, key)
            : ApplyFloat<Rounding::kNearest>(data, n, key);
      break;
    case Rounding::kStochastic:
      fixed ? ApplyFixed<Rounding::kStochastic>(data, n, key)
            : ApplyFloat<Rounding::kStochastic>(data, n, key);
      break;
  }
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
