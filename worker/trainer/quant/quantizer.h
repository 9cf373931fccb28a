// Rounds float32 buffers, in place, onto the value grid of a Format (DESIGN §4).
//
// Semantics, for every format:
//   * NaN stays NaN; +0 and -0 stay as they are.
//   * float:E,M and mask:B are sign-magnitude: truncate rounds toward zero, and the rounding is
//     applied to the magnitude. Finite values beyond the largest finite value (or a round-up
//     past it) saturate to +-max; +-Inf stays +-Inf (it is float32's overflow signal, and the
//     trainer's divergence check relies on seeing it).
//   * fixed:WL,FL is two's complement: truncate is floor; everything, +-Inf included,
//     saturates to the range. Values are stored in float32, so for WL > 24 a value with more
//     than 24 significant bits is additionally rounded to the nearest float32.
//   * stochastic rounds up with probability (x - lower) / step (unbiased: E[q(x)] = x; the
//     scheme of Gupta et al. 2015 used by seeds/002_a5ea6972c7539976.txt §2 and compared with
//     truncation in seeds/000_075f41563a3d4c76.txt), using
//     the random bits ElementRandom(key, i) for element i, so the result is a pure function of
//     (value, key, i), whatever the thread count or visiting order. For mask and for normal
//     float:E,M values the probability is exact (the dropped bits plus the low 32 random bits
//     carry into the kept bits exactly that often); in float:E,M's subnormal range and for
//     fixed it is exact to 2^-53 (a uniform double from Mix64 of the bits).
//   * mask:B is exactly float:8,(B-9) (same grid, same saturation), computed on the bit pattern.
//   * int:B is symmetric: q = round(x / s) clamped to ±(2^(B-1)-1), s = max|x| / (2^(B-1)-1)
//     over the finite values of the tensor (one Apply call); truncate is floor (as for fixed),
//     +-Inf saturates to ±max|x|, an all-zero tensor is unchanged, and a value already on the
//     grid (k·s as stored in float32) stays there, so quantising twice is quantising once.
//     QuantizeOne of int:B sees a one-element tensor (returns x).
//   * dynfixed:WL and dps:IL,FL are applied as fixed point with the format's current
//     word_bits/frac_bits (dynfixed: WL, frac_bits; dps: int_bits + frac_bits, frac_bits); FL
//     may be any integer here, negative or >= WL. quant/sites.h adapts them.
#pragma once

#include <cstdint>
#include <limits>

#include "worker/trainer/quant/format.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {

// The 64 random bits of element i of stream `key`: one splitmix64 value serves elements 2j and
// 2j+1 (the second gets it rotated by 32 bits), so the float paths, which need 32 bits, pay
// for half a mix per element.
inline uint64_t ElementRandom(uint64_t key, int64_t i) {
  const uint64_t r = CounterRandom(key, static_cast<uint64_t>(i) >> 1);
  return (i & 1) ? (r >> 32) | (r << 32) : r;
}

// What rounding did to a set of values (for the dynamic formats and the per-site measurements
// of CurvePoint.sites). NaN and +-Inf are not counted.
struct QuantStats {
  int64_t values = 0;              // finite values
  int64_t overflows = 0;           // finite values outside the format's range (saturated)
  int64_t overflows_one_less = 0;  // fixed point: values outside the range with one integer bit
                                   // fewer (and one fractional bit more)
  int64_t nonzero = 0;             // non-zero finite values
  double error_percent_sum = 0;    // Σ |q(x) - x| / |x| · 100 over them (seed 002, Equation 1)
  double bits_sum = 0;             // Σ the format's bits, per value (effective bits)

  void Add(const QuantStats& other);
  double overflow_rate() const { return values ? double(overflows) / double(values) : 0; }
  double overflow_rate_one_less() const {
    return values ? double(overflows_one_less) / double(values) : 0;
  }
  double error_percent() const { return nonzero ? error_percent_sum / double(nonzero) : 0; }
  double effective_bits() const { return values ? bits_sum / double(values) : 0; }
};

class Quantizer {
 public:
  // fp32: a no-op quantiser.
  Quantizer() = default;
  Quantizer(const Format& format, Rounding rounding);

  // Whether Apply changes anything (false for fp32 and for mask:32).
  bool enabled() const { return enabled_; }
  const Format& format() const { return format_; }
  Rounding rounding() const { return rounding_; }

  // Quantises data[0, n). `key` selects the random stream for stochastic rounding (derive it
  // with DeriveKey from seed, site, layer, iteration); ignored by the other roundings.
  void Apply(float* data, int64_t n, uint64_t key) const;

  // One value, with explicit random bits (only read by stochastic rounding); Apply gives
  // element i the bits ElementRandom(key, i).
  float QuantizeOne(float x, uint64_t random_bits) const;

  // Apply, bitwise the same result, adding what it did to *stats (slower: one pass per
  // element with the statistics). Counts values even when the quantiser is disabled.
  void ApplyMeasured(float* data, int64_t n, uint64_t key, QuantStats* stats) const;

  // Whether a finite x lies outside the range this quantiser represents, so that Apply
  // saturates it: fixed point (dynfixed / dps at their current IL, FL) outside
  // [-2^(IL-1), 2^(IL-1) - 2^-FL]; float:E,M and mask:B beyond ±max finite; never for fp32 and
  // int:B (its scale follows the tensor's max|x|). The QuantStats overflow count, per value.
  bool Saturates(float x) const { return x < lowest_ || x > highest_; }
  // saturated[i] = Saturates(data[i]) for i in [0, n); returns whether any is set. One
  // vectorisable pass (the per-element Saturates through a uint8_t store, which may alias the
  // floats, was not).
  bool MarkSaturated(const float* data, int64_t n, uint8_t* saturated) const;
  // MarkSaturated, then Apply: bitwise the same marks and values, in one pass over the data
  // where the format allows (narrow-exponent stochastic rounding). Returns whether any mark is
  // set.
  bool ApplyMarked(float* data, int64_t n, uint64_t key, uint8_t* saturated) const;

 private:
  template <Rounding R>
  void ApplyInt(float* data, int64_t n, uint64_t key, QuantStats* stats) const;
  template <Rounding R>
  void ApplyMeasuredImpl(float* data, int64_t n, uint64_t key, QuantStats* stats) const;
  // Elements [0, n) of data are elements [first, first + n) of the random stream (first even).
  // With `saturated`, also MarkSaturated's marks; returns whether any is set.
  template <Rounding R>
  bool ApplyFloat(float* data, int64_t n, uint64_t key, int64_t first, uint8_t* saturated) const;
  template <Rounding R>
  void ApplyFixed(float* data, int64_t n, uint64_t key) const;
  template <Rounding R>
  float FloatOne(float x, uint64_t random_bits) const;
  template <Rounding R>
  float FixedOne(float x, uint64_t random_bits) const;
  template <Rounding R>
  float SubnormalOne(float x, uint64_t random_bits) const;

  Format format_;
  Rounding rounding_ = Rounding::kNearest;
  bool enabled_ = false;

  // float:E,M and mask:B, on the float32 bit pattern.
  int drop_ = 0;                  // low bits of the float32 word that are dropped
  uint32_t keep_mask_ = ~0u;      // clears the dropped bits
  uint32_t low_mask_ = 0;         // the dropped bits
  uint32_t half_minus_one_ = 0;   // nearest: 2^(drop-1) - 1
  uint32_t lsb_enable_ = 0;       // nearest: 1 if drop > 0 (ties go to the even neighbour)
  uint32_t max_bits_ = 0;         // magnitude bits of the largest finite value
  uint32_t min_normal_bits_ = 0;  // magnitudes below this take the subnormal path
  int emin_ = -126;               // smallest normal exponent of the format
  int mantissa_bits_ = 23;
  double subnormal_scale_ = 1;  // 2^(M-emin): |x| in steps of the subnormal grid
  double subnormal_step_ = 1;   // 2^(emin-M)

  bool fixed_ = false;  // fixed, dynfixed, dps: the FixedOne path

  // fixed:WL,FL (and dynfixed / dps with their current IL, FL); int:B uses hi_ = 2^(B-1)-1.
  double scale_ = 1;      // 2^FL
  double inv_scale_ = 1;  // 2^-FL
  double lo_ = 0;         // -2^(WL-1), in steps
  double hi_ = 0;         // 2^(WL-1) - 1, in steps

  // Saturates(): the representable interval in real values (±infinity: never saturates).
  double lowest_ = -std::numeric_limits<double>::infinity();
  double highest_ = std::numeric_limits<double>::infinity();
};

// Testing: whether Apply may use its AVX-512 loops where the machine has them (default true;
// the portable loops give the same bits). Returns the previous setting.
bool SetQuantizerAvx512ForTesting(bool allowed);

}  // namespace bitsweep::trainer
