#include "worker/trainer/ops/accumulator_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/partitioner.h"
#include "worker/trainer/ops/transpose.h"
#include "worker/trainer/quant/format.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

constexpr uint32_t kSignBit = 0x80000000u;
constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kInfBits = 0x7F800000u;

bool HasAvx2() {
  static const bool avx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return avx2;
}

// B [k×n] with contiguous rows: B itself when its columns are adjacent, else a copy in this
// thread's buffer. Returns the data and its row stride.
std::pair<const float*, int64_t> ContiguousRows(int64_t k, int64_t n, const MatrixView& b) {
  if (b.col_stride == 1) return {b.data, b.row_stride};
  thread_local std::vector<float> rows;
  if (static_cast<int64_t>(rows.size()) < k * n) rows.resize(k * n);
  int64_t p0 = 0;
  if (b.row_stride == 1 && HasAvx2()) {  // a transposed operand: 8×8 register transposes
    p0 = k / 8 * 8;
    TransposeBlocksAvx2(b.data, b.col_stride, p0, n / 8 * 8, rows.data(), n);
    for (int64_t p = 0; p < p0; ++p) {
      for (int64_t j = n / 8 * 8; j < n; ++j) rows[p * n + j] = b.data[p + j * b.col_stride];
    }
  }
  for (int64_t p = p0; p < k; ++p) {
    for (int64_t j = 0; j < n; ++j) rows[p * n + j] = b.data[p * b.row_stride + j * b.col_stride];
  }
  return {rows.data(), n};
}

// The row path: Quantizer::Apply on whole rows of products and partial sums. Every format and
// rounding; the definition the fused kernels below reproduce bit for bit.
void RowsAccumulatorGemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float* c,
                         int64_t ldc, bool accumulate, const AccumulatorRounding& rounding,
                         bool parallel) {
  const Quantizer& q = *rounding.quantizer;
  // B with contiguous rows: the inner loops run over j.
  const auto [bp, b_rs] = ContiguousRows(k, n, b);
  auto row = [&](int64_t i) {
    thread_local std::vector<float> buffers;
    if (static_cast<int64_t>(buffers.size()) < 3 * n) buffers.resize(3 * n);
    float* s = buffers.data();
    float* t = s + n;
    float* prod = t + n;
    const uint64_t row_key = DeriveKey(rounding.key, static_cast<uint64_t>(i));
    for (int64_t j = 0; j < n; ++j) s[j] = accumulate ? c[i * ldc + j] : 0.0f;
    std::fill(t, t + n, 0.0f);
    float* target = rounding.chunk > 0 ? t : s;
    for (int64_t p = 0; p < k; ++p) {
      const float av = a.data[i * a.row_stride + p * a.col_stride];
      const float* brow = bp + p * b_rs;
      for (int64_t j = 0; j < n; ++j) prod[j] = av * brow[j];
      q.Apply(prod, n, DeriveKey(row_key, 3 * static_cast<uint64_t>(p)));
      for (int64_t j = 0; j < n; ++j) target[j] += prod[j];
      q.Apply(target, n, DeriveKey(row_key, 3 * static_cast<uint64_t>(p) + 1));
      if (rounding.chunk > 0 && ((p + 1) % rounding.chunk == 0 || p + 1 == k)) {
        for (int64_t j = 0; j < n; ++j) s[j] += t[j];
        q.Apply(s, n, DeriveKey(row_key, 3 * static_cast<uint64_t>(p) + 2));
        std::fill(t, t + n, 0.0f);
      }
    }
    std::memcpy(c + i * ldc, s, sizeof(float) * n);
  };
  if (!parallel) {
    for (int64_t i = 0; i < m; ++i) row(i);
    return;
  }
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int64_t>(0, m, 1),
      [&](const oneapi::tbb::blocked_range<int64_t>& r) {
        for (int64_t i = r.begin(); i < r.end(); ++i) row(i);
      },
      oneapi::tbb::simple_partitioner());
}

// ---------------------------------------------------------------------------------------------
// The fused kernels: float:E,M and mask:B with truncate or nearest. The rounding is
// Quantizer::Apply's branch-free loop for these formats, inlined (its parameters derived from
// the format exactly as the Quantizer derives them):
//   * normal range, on the float32 word's magnitude bits: nearest adds 2^(drop-1) - 1 plus the
//     lowest kept bit (ties to even), both clear the dropped bits, then min with the largest
//     finite value's bits saturates (also a round-up into Inf);
//   * below 2^emin with a narrow exponent (E < 8): the grid is uniform with step 2^(emin-M), so
//     (|x| + 2^(emin-M+23)) - 2^(emin-M+23) is float32's own nearest-even rounding at that step;
//     truncate steps back down when that rounded up;
//   * NaN and ±Inf keep their bits; the sign is put back on the rounded magnitude.
// Stochastic rounding (random bits per element and step) and fixed point take the row path.
struct FloatGrid {
  uint32_t drop = 0;
  uint32_t keep_mask = ~0u;
  uint32_t half_minus_one = 0;
  uint32_t lsb_enable = 0;
  uint32_t max_bits = 0;
  uint32_t min_normal_bits = 0;
  float magic = 1;
  float step = 1;
  uint32_t drop_exponent = 0;  // drop << 23: 2^drop as a step of the exponent field
};

// kTruncateMagic, kNearestMagic: the same roundings, for formats with E < 8 and M < 23, which
// the AVX-512 kernel (and AVX2's, for nearest) rounds on another path (RoundAvx512Magic); the
// others treat them as kTruncate and kNearest.
enum class Mode { kTruncate, kNearest, kTruncateMagic, kNearestMagic };
constexpr bool IsNearest(Mode m) { return m == Mode::kNearest || m == Mode::kNearestMagic; }
constexpr bool IsMagic(Mode m) { return m == Mode::kTruncateMagic || m == Mode::kNearestMagic; }

// Whether the fused kernels support q, and its grid.
bool FusedGrid(const Quantizer& q, FloatGrid* g, Mode* mode) {
  if (!q.enabled()) return false;
  const Format& f = q.format();
  if (f.kind != FormatKind::kFloat && f.kind != FormatKind::kMask) return false;
  switch (q.rounding()) {
    case Rounding::kTruncate:
      *mode = Mode::kTruncate;
      break;
    case Rounding::kNearest:
      *mode = Mode::kNearest;
      break;
    default:
      return false;
  }
  const bool mask = f.kind == FormatKind::kMask;
  const int mantissa = mask ? f.mask_bits - 9 : f.mantissa_bits;
  const int e = mask ? 8 : f.exponent_bits;
  const int emin = 2 - (1 << (e - 1));
  const int drop = 23 - mantissa;
  g->drop = static_cast<uint32_t>(drop);
  const uint32_t low_mask = drop == 0 ? 0u : (1u << drop) - 1u;
  g->keep_mask = ~low_mask;
  g->half_minus_one = drop == 0 ? 0u : (1u << (drop - 1)) - 1u;
  g->lsb_enable = drop == 0 ? 0u : 1u;
  g->max_bits = std::bit_cast<uint32_t>(static_cast<float>(f.MaxFinite()));
  g->min_normal_bits = e == 8 ? 0u : static_cast<uint32_t>(emin + 127) << 23;
  // Only read below min_normal_bits (E < 8), where both are normal float32 values.
  g->magic = e == 8 ? 1.0f : std::ldexp(1.0f, emin - mantissa + 23);
  g->step = e == 8 ? 1.0f : std::ldexp(1.0f, emin - mantissa);
  g->drop_exponent = static_cast<uint32_t>(drop) << 23;
  if (e < 8 && drop >= 1)
    *mode = *mode == Mode::kNearest ? Mode::kNearestMagic : Mode::kTruncateMagic;
  return true;
}

template <Mode kMode>
inline float RoundScalar(float x, const FloatGrid& g) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = u & kSignBit;
  const uint32_t mag = u ^ sign;
  uint32_t inc = 0;
  if constexpr (IsNearest(kMode)) inc = g.half_minus_one + ((mag >> g.drop) & g.lsb_enable);
  const uint32_t normal = std::min((mag + inc) & g.keep_mask, g.max_bits);
  const float a = std::bit_cast<float>(mag);
  float sub = (a + g.magic) - g.magic;
  if constexpr (!IsNearest(kMode)) sub = sub > a ? sub - g.step : sub;
  const uint32_t rounded = mag < g.min_normal_bits ? std::bit_cast<uint32_t>(sub) : normal;
  return std::bit_cast<float>(mag >= kInfBits ? u : (sign | rounded));
}

// The operands of one call, B with contiguous rows.
struct Operands {
  int64_t k;
  const float* a;
  int64_t a_rs, a_cs;
  const float* b;
  int64_t b_rs;
  float* c;
  int64_t ldc;
  bool accumulate;
  int64_t chunk;  // 0: one running sum
  // No ±Inf or NaN can arise (NoSpecialValues): the magic path may skip their check.
  bool finite = false;
};

// A tile kernel: rows [i, i + rows) (rows <= 4) and columns [j, j + cols) (cols <= the
// kernel's width) of C, over all of k, the partial sums in registers.
using TileFn = void (*)(const Operands& op, int64_t i, int rows, int64_t j, int cols,
                        const FloatGrid& g);

// Portable: the same steps per element, in scalar code.
template <Mode kMode>
void TilePortable(const Operands& op, int64_t i, int rows, int64_t j, int cols,
                  const FloatGrid& g) {
  for (int r = 0; r < rows; ++r) {
    const float* a = op.a + (i + r) * op.a_rs;
    float* c = op.c + (i + r) * op.ldc + j;
    for (int jj = 0; jj < cols; ++jj) {
      const float* b = op.b + j + jj;
      float s = op.accumulate ? c[jj] : 0.0f;
      if (op.chunk == 0) {
        for (int64_t p = 0; p < op.k; ++p) {
          const float prod = RoundScalar<kMode>(a[p * op.a_cs] * b[p * op.b_rs], g);
          s = RoundScalar<kMode>(s + prod, g);
        }
      } else {
        for (int64_t p0 = 0; p0 < op.k; p0 += op.chunk) {
          const int64_t p1 = std::min(op.k, p0 + op.chunk);
          float t = 0.0f;
          for (int64_t p = p0; p < p1; ++p) {
            const float prod = RoundScalar<kMode>(a[p * op.a_cs] * b[p * op.b_rs], g);
            t = RoundScalar<kMode>(t + prod, g);
          }
          s = RoundScalar<kMode>(s + t, g);
        }
      }
      c[jj] = s;
    }
  }
}

// AVX-512F: 16 columns per vector, up to 4 rows sharing each load of B.
struct GridAvx512 {
  __m512i abs_mask, half_minus_one, lsb_enable, keep_mask, max_bits, min_normal_bits, inf_bits;
  __m128i drop;
  __m512 magic, step;
  __m512i exponent_mask, drop_exponent, magic_bits;
  __m512 max_value;
};

// The narrow-exponent formats (E < 8, M < 23) in fewer instructions, with the same results:
// with e the float32 exponent of |x| and C = 2^max(e + drop, emin + drop) (the larger one is
// the subnormal path's magic number), |x| + C lies in C's binade, whose spacing 2^(e-M) (or
// 2^(emin-M) below 2^emin) is the format's at |x|; so (|x| + C) - C, the add rounded to nearest
// even (truncate: toward zero, AVX-512's embedded rounding), is |x| on the format's grid, and
// the subtraction is exact. That is the bit path's rounding above 2^emin (a carry at bit
// `drop`) and the magic-number path's below. C is built on the exponent field. Then min with
// the largest finite value saturates. Values whose e + drop leaves float32's exponent range
// (|x| >= 2^(128-24), far past every such format's largest value, ±Inf, NaN) give C = Inf
// (then NaN, which min_ps turns into the largest value) or, wrapped past the exponent field, a
// tiny negative C (then about |x|): finite ones saturate all the same, and ±Inf and NaN take
// their own bits back at the end.
template <Mode kMode, bool kFinite>
__attribute__((target("avx512f"), always_inline)) inline __m512 RoundAvx512Magic(
    __m512 x, const GridAvx512& g) {
  constexpr __mmask16 kAll = 0xFFFF;
  const __m512i u = _mm512_castps_si512(x);
  const __m512i mag = _mm512_and_si512(u, g.abs_mask);
  const __m512i c_bits = _mm512_maskz_max_epu32(
      kAll, _mm512_add_epi32(_mm512_and_si512(u, g.exponent_mask), g.drop_exponent), g.magic_bits);
  const __m512 c = _mm512_castsi512_ps(c_bits);
  __m512 r;
  if constexpr (IsNearest(kMode)) {
    r = _mm512_add_ps(_mm512_castsi512_ps(mag), c);
  } else {
    r = _mm512_maskz_add_round_ps(kAll, _mm512_castsi512_ps(mag), c,
                                  _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  }
  r = _mm512_maskz_min_ps(kAll, _mm512_sub_ps(r, c), g.max_value);
  // r | (u & ~abs_mask): the sign put back (r first: the instruction overwrites it).
  constexpr int kA = 0xF0, kB = 0xCC, kC = 0xAA;
  const __m512i rounded =
      _mm512_ternarylogic_epi32(_mm512_castps_si512(r), u, g.abs_mask, kA | (kB & ~kC));
  if constexpr (kFinite) return _mm512_castsi512_ps(rounded);
  const __mmask16 special = _mm512_cmpge_epu32_mask(mag, g.inf_bits);
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(special, rounded, u));
}

template <Mode kMode, bool kFinite>
__attribute__((target("avx512f"), always_inline)) inline __m512 RoundAvx512(__m512 x,
                                                                            const GridAvx512& g) {
  if constexpr (IsMagic(kMode)) return RoundAvx512Magic<kMode, kFinite>(x, g);
  // The all-lanes masked forms of srl and min (and of max, min and add in RoundAvx512Magic):
  // GCC 12's unmasked ones read an undefined register that -Wmaybe-uninitialized reports; these
  // are the same instructions.
  constexpr __mmask16 kAll = 0xFFFF;
  const __m512i u = _mm512_castps_si512(x);
  const __m512i mag = _mm512_and_si512(u, g.abs_mask);
  __m512i t = mag;
  if constexpr (IsNearest(kMode)) {
    const __m512i lsb = _mm512_and_si512(_mm512_maskz_srl_epi32(kAll, mag, g.drop), g.lsb_enable);
    t = _mm512_add_epi32(_mm512_add_epi32(mag, g.half_minus_one), lsb);
  }
  const __m512i normal = _mm512_maskz_min_epu32(kAll, _mm512_and_si512(t, g.keep_mask), g.max_bits);
  const __m512 a = _mm512_castsi512_ps(mag);
  __m512 sub = _mm512_sub_ps(_mm512_add_ps(a, g.magic), g.magic);
  if constexpr (!IsNearest(kMode)) {
    sub = _mm512_mask_sub_ps(sub, _mm512_cmp_ps_mask(sub, a, _CMP_GT_OQ), sub, g.step);
  }
  const __mmask16 is_sub = _mm512_cmplt_epu32_mask(mag, g.min_normal_bits);
  __m512i r = _mm512_mask_blend_epi32(is_sub, normal, _mm512_castps_si512(sub));
  // r | (u & ~abs_mask): the sign put back.
  constexpr int kA = 0xF0, kB = 0xCC, kC = 0xAA;
  r = _mm512_ternarylogic_epi32(r, u, g.abs_mask, kA | (kB & ~kC));
  const __mmask16 special = _mm512_cmpge_epu32_mask(mag, g.inf_bits);
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(special, r, u));
}

template <Mode kMode, int kRows, bool kFinite>
__attribute__((target("avx512f"))) void TileAvx512Rows(const Operands& op, int64_t i, int64_t j,
                                                       int cols, const GridAvx512& g) {
  const __mmask16 mask = static_cast<__mmask16>(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
  const float* a[kRows];
  float* c[kRows];
  __m512 s[kRows];
  for (int r = 0; r < kRows; ++r) {
    a[r] = op.a + (i + r) * op.a_rs;
    c[r] = op.c + (i + r) * op.ldc + j;
    s[r] = op.accumulate ? _mm512_maskz_loadu_ps(mask, c[r]) : _mm512_setzero_ps();
  }
  const float* b = op.b + j;
  if (op.chunk == 0) {
    // Offsets stepped rather than multiplied: the strides are run-time values.
    const float* bp = b;
    int64_t ap = 0;
    for (int64_t p = 0; p < op.k; ++p, bp += op.b_rs, ap += op.a_cs) {
      const __m512 bv = _mm512_maskz_loadu_ps(mask, bp);
      for (int r = 0; r < kRows; ++r) {
        const __m512 prod =
            RoundAvx512<kMode, kFinite>(_mm512_mul_ps(_mm512_set1_ps(a[r][ap]), bv), g);
        s[r] = RoundAvx512<kMode, kFinite>(_mm512_add_ps(s[r], prod), g);
      }
    }
  } else {
    for (int64_t p0 = 0; p0 < op.k; p0 += op.chunk) {
      const int64_t p1 = std::min(op.k, p0 + op.chunk);
      __m512 t[kRows];
      for (int r = 0; r < kRows; ++r) t[r] = _mm512_setzero_ps();
      const float* bp = b + p0 * op.b_rs;
      int64_t ap = p0 * op.a_cs;
      for (int64_t p = p0; p < p1; ++p, bp += op.b_rs, ap += op.a_cs) {
        const __m512 bv = _mm512_maskz_loadu_ps(mask, bp);
        for (int r = 0; r < kRows; ++r) {
          const __m512 prod =
              RoundAvx512<kMode, kFinite>(_mm512_mul_ps(_mm512_set1_ps(a[r][ap]), bv), g);
          t[r] = RoundAvx512<kMode, kFinite>(_mm512_add_ps(t[r], prod), g);
        }
      }
      for (int r = 0; r < kRows; ++r)
        s[r] = RoundAvx512<kMode, kFinite>(_mm512_add_ps(s[r], t[r]), g);
    }
  }
  for (int r = 0; r < kRows; ++r) _mm512_mask_storeu_ps(c[r], mask, s[r]);
}

template <Mode kMode>
__attribute__((target("avx512f"))) void TileAvx512(const Operands& op, int64_t i, int rows,
                                                   int64_t j, int cols, const FloatGrid& f) {
  GridAvx512 g;
  g.abs_mask = _mm512_set1_epi32(static_cast<int>(kAbsMask));
  g.half_minus_one = _mm512_set1_epi32(static_cast<int>(f.half_minus_one));
  g.lsb_enable = _mm512_set1_epi32(static_cast<int>(f.lsb_enable));
  g.keep_mask = _mm512_set1_epi32(static_cast<int>(f.keep_mask));
  g.max_bits = _mm512_set1_epi32(static_cast<int>(f.max_bits));
  g.min_normal_bits = _mm512_set1_epi32(static_cast<int>(f.min_normal_bits));
  g.inf_bits = _mm512_set1_epi32(static_cast<int>(kInfBits));
  g.drop = _mm_cvtsi32_si128(static_cast<int>(f.drop));
  g.magic = _mm512_set1_ps(f.magic);
  g.step = _mm512_set1_ps(f.step);
  g.exponent_mask = _mm512_set1_epi32(static_cast<int>(kInfBits));
  g.drop_exponent = _mm512_set1_epi32(static_cast<int>(f.drop_exponent));
  g.magic_bits = _mm512_set1_epi32(static_cast<int>(std::bit_cast<uint32_t>(f.magic)));
  g.max_value = _mm512_set1_ps(std::bit_cast<float>(f.max_bits));
  // Without ±Inf and NaN, the magic path drops their check; the bit path always keeps it.
  if (IsMagic(kMode) && op.finite) {
    switch (rows) {
      case 4:
        return TileAvx512Rows<kMode, 4, true>(op, i, j, cols, g);
      case 3:
        return TileAvx512Rows<kMode, 3, true>(op, i, j, cols, g);
      case 2:
        return TileAvx512Rows<kMode, 2, true>(op, i, j, cols, g);
      default:
        return TileAvx512Rows<kMode, 1, true>(op, i, j, cols, g);
    }
  }
  switch (rows) {
    case 4:
      return TileAvx512Rows<kMode, 4, false>(op, i, j, cols, g);
    case 3:
      return TileAvx512Rows<kMode, 3, false>(op, i, j, cols, g);
    case 2:
      return TileAvx512Rows<kMode, 2, false>(op, i, j, cols, g);
    default:
      return TileAvx512Rows<kMode, 1, false>(op, i, j, cols, g);
  }
}

// AVX2: 8 columns per vector; a short last block of columns goes through masked loads and
// stores.
struct GridAvx2 {
  __m256i abs_mask, half_minus_one, lsb_enable, keep_mask, max_bits, min_normal_bits, inf_minus_one;
  __m128i drop;
  __m256 magic, step;
  __m256i exponent_mask, drop_exponent, magic_bits;
  __m256 max_value;
};

// RoundAvx512Magic's nearest rounding (AVX2 has no embedded rounding for truncate).
__attribute__((target("avx2"), always_inline)) inline __m256 RoundAvx2MagicNearest(
    __m256 x, const GridAvx2& g) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i mag = _mm256_and_si256(u, g.abs_mask);
  const __m256 c = _mm256_castsi256_ps(_mm256_max_epu32(
      _mm256_add_epi32(_mm256_and_si256(u, g.exponent_mask), g.drop_exponent), g.magic_bits));
  const __m256 r =
      _mm256_min_ps(_mm256_sub_ps(_mm256_add_ps(_mm256_castsi256_ps(mag), c), c), g.max_value);
  const __m256i rounded =
      _mm256_or_si256(_mm256_castps_si256(r), _mm256_andnot_si256(g.abs_mask, u));
  const __m256i special = _mm256_cmpgt_epi32(mag, g.inf_minus_one);
  return _mm256_blendv_ps(_mm256_castsi256_ps(rounded), x, _mm256_castsi256_ps(special));
}

template <Mode kMode>
__attribute__((target("avx2"), always_inline)) inline __m256 RoundAvx2(__m256 x,
                                                                       const GridAvx2& g) {
  if constexpr (kMode == Mode::kNearestMagic) return RoundAvx2MagicNearest(x, g);
  const __m256i u = _mm256_castps_si256(x);
  const __m256i mag = _mm256_and_si256(u, g.abs_mask);
  __m256i t = mag;
  if constexpr (IsNearest(kMode)) {
    const __m256i lsb = _mm256_and_si256(_mm256_srl_epi32(mag, g.drop), g.lsb_enable);
    t = _mm256_add_epi32(_mm256_add_epi32(mag, g.half_minus_one), lsb);
  }
  const __m256i normal = _mm256_min_epu32(_mm256_and_si256(t, g.keep_mask), g.max_bits);
  const __m256 a = _mm256_castsi256_ps(mag);
  __m256 sub = _mm256_sub_ps(_mm256_add_ps(a, g.magic), g.magic);
  if constexpr (!IsNearest(kMode)) {
    sub = _mm256_blendv_ps(sub, _mm256_sub_ps(sub, g.step), _mm256_cmp_ps(sub, a, _CMP_GT_OQ));
  }
  // mag and the thresholds are below 2^31: signed compares are exact.
  const __m256i is_sub = _mm256_cmpgt_epi32(g.min_normal_bits, mag);
  __m256i r = _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(normal), sub, _mm256_castsi256_ps(is_sub)));
  r = _mm256_or_si256(r, _mm256_andnot_si256(g.abs_mask, u));
  const __m256i special = _mm256_cmpgt_epi32(mag, g.inf_minus_one);
  return _mm256_blendv_ps(_mm256_castsi256_ps(r), x, _mm256_castsi256_ps(special));
}

// All 8 columns, or the first ones that `mask` selects.
__attribute__((target("avx2"), always_inline)) inline __m256 LoadAvx2(const float* p, bool full,
                                                                      __m256i mask) {
  return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}

template <Mode kMode, int kRows>
__attribute__((target("avx2"))) void TileAvx2Rows(const Operands& op, int64_t i, int64_t j,
                                                  int cols, const GridAvx2& g) {
  const __m256i mask =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const bool full = cols >= 8;
  const float* a[kRows];
  float* c[kRows];
  __m256 s[kRows];
  for (int r = 0; r < kRows; ++r) {
    a[r] = op.a + (i + r) * op.a_rs;
    c[r] = op.c + (i + r) * op.ldc + j;
    s[r] = op.accumulate ? LoadAvx2(c[r], full, mask) : _mm256_setzero_ps();
  }
  const float* b = op.b + j;
  if (op.chunk == 0) {
    for (int64_t p = 0; p < op.k; ++p) {
      const __m256 bv = LoadAvx2(b + p * op.b_rs, full, mask);
      for (int r = 0; r < kRows; ++r) {
        const __m256 prod =
            RoundAvx2<kMode>(_mm256_mul_ps(_mm256_set1_ps(a[r][p * op.a_cs]), bv), g);
        s[r] = RoundAvx2<kMode>(_mm256_add_ps(s[r], prod), g);
      }
    }
  } else {
    for (int64_t p0 = 0; p0 < op.k; p0 += op.chunk) {
      const int64_t p1 = std::min(op.k, p0 + op.chunk);
      __m256 t[kRows];
      for (int r = 0; r < kRows; ++r) t[r] = _mm256_setzero_ps();
      for (int64_t p = p0; p < p1; ++p) {
        const __m256 bv = LoadAvx2(b + p * op.b_rs, full, mask);
        for (int r = 0; r < kRows; ++r) {
          const __m256 prod =
              RoundAvx2<kMode>(_mm256_mul_ps(_mm256_set1_ps(a[r][p * op.a_cs]), bv), g);
          t[r] = RoundAvx2<kMode>(_mm256_add_ps(t[r], prod), g);
        }
      }
      for (int r = 0; r < kRows; ++r) s[r] = RoundAvx2<kMode>(_mm256_add_ps(s[r], t[r]), g);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    if (full) {
      _mm256_storeu_ps(c[r], s[r]);
    } else {
      _mm256_maskstore_ps(c[r], mask, s[r]);
    }
  }
}

template <Mode kMode>
__attribute__((target("avx2"))) void TileAvx2(const Operands& op, int64_t i, int rows, int64_t j,
                                              int cols, const FloatGrid& f) {
  GridAvx2 g;
  g.abs_mask = _mm256_set1_epi32(static_cast<int>(kAbsMask));
  g.half_minus_one = _mm256_set1_epi32(static_cast<int>(f.half_minus_one));
  g.lsb_enable = _mm256_set1_epi32(static_cast<int>(f.lsb_enable));
  g.keep_mask = _mm256_set1_epi32(static_cast<int>(f.keep_mask));
  g.max_bits = _mm256_set1_epi32(static_cast<int>(f.max_bits));
  g.min_normal_bits = _mm256_set1_epi32(static_cast<int>(f.min_normal_bits));
  g.inf_minus_one = _mm256_set1_epi32(static_cast<int>(kInfBits - 1));
  g.drop = _mm_cvtsi32_si128(static_cast<int>(f.drop));
  g.magic = _mm256_set1_ps(f.magic);
  g.step = _mm256_set1_ps(f.step);
  g.exponent_mask = _mm256_set1_epi32(static_cast<int>(kInfBits));
  g.drop_exponent = _mm256_set1_epi32(static_cast<int>(f.drop_exponent));
  g.magic_bits = _mm256_set1_epi32(static_cast<int>(std::bit_cast<uint32_t>(f.magic)));
  g.max_value = _mm256_set1_ps(std::bit_cast<float>(f.max_bits));
  switch (rows) {
    case 4:
      return TileAvx2Rows<kMode, 4>(op, i, j, cols, g);
    case 3:
      return TileAvx2Rows<kMode, 3>(op, i, j, cols, g);
    case 2:
      return TileAvx2Rows<kMode, 2>(op, i, j, cols, g);
    default:
      return TileAvx2Rows<kMode, 1>(op, i, j, cols, g);
  }
}

struct FusedKernel {
  const char* name;
  int width;        // columns per tile
  TileFn tiles[4];  // by Mode
};

constexpr FusedKernel kAvx512{"avx512",
                              16,
                              {TileAvx512<Mode::kTruncate>, TileAvx512<Mode::kNearest>,
                               TileAvx512<Mode::kTruncateMagic>, TileAvx512<Mode::kNearestMagic>}};
constexpr FusedKernel kAvx2{"avx2",
                            8,
                            {TileAvx2<Mode::kTruncate>, TileAvx2<Mode::kNearest>,
                             TileAvx2<Mode::kTruncate>, TileAvx2<Mode::kNearestMagic>}};
constexpr FusedKernel kPortable{"portable",
                                16,
                                {TilePortable<Mode::kTruncate>, TilePortable<Mode::kNearest>,
                                 TilePortable<Mode::kTruncate>, TilePortable<Mode::kNearest>}};

const FusedKernel& BestFusedKernel() {
  static const FusedKernel& best = []() -> const FusedKernel& {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return kAvx512;
    if (__builtin_cpu_supports("avx2")) return kAvx2;
    return kPortable;
  }();
  return best;
}

bool CanRun(const FusedKernel& kernel) {
  __builtin_cpu_init();
  if (&kernel == &kAvx512) return __builtin_cpu_supports("avx512f");
  if (&kernel == &kAvx2) return __builtin_cpu_supports("avx2");
  return true;
}

constexpr int kTileRows = 4;

// MaxMagnitudeBits of n contiguous floats, 16 at a time. The masked forms of max: GCC 12's
// unmasked one reads an undefined register (see RoundAvx512).
__attribute__((target("avx512f"))) uint32_t MaxMagnitudeBitsAvx512(const float* data, int64_t n) {
  constexpr __mmask16 kAll = 0xFFFF;
  const __m512i abs_mask = _mm512_set1_epi32(static_cast<int>(kAbsMask));
  __m512i max = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    max =
        _mm512_maskz_max_epu32(kAll, max, _mm512_and_si512(_mm512_loadu_si512(data + i), abs_mask));
  }
  if (i < n) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    max = _mm512_maskz_max_epu32(
        kAll, max, _mm512_and_si512(_mm512_maskz_loadu_epi32(tail, data + i), abs_mask));
  }
  alignas(64) uint32_t lanes[16];
  _mm512_store_si512(lanes, max);
  return *std::max_element(lanes, lanes + 16);
}

// The largest magnitude's bits over a strided block (for finite floats, the bit patterns of
// magnitudes order as the values do; ±Inf and NaN give at least kInfBits).
uint32_t MaxMagnitudeBits(const float* data, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  // The maximum does not depend on the order: read a transposed view along its contiguous
  // columns, and contiguous runs 16 at a time (the scan runs on every call, per example).
  if (cs != 1 && rs == 1) {
    std::swap(rows, cols);
    std::swap(rs, cs);
  }
  static const bool avx512 = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
  uint32_t max = 0;
  if (cs == 1 && avx512) {
    for (int64_t r = 0; r < rows; ++r)
      max = std::max(max, MaxMagnitudeBitsAvx512(data + r * rs, cols));
    return max;
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      max = std::max(max, std::bit_cast<uint32_t>(data[r * rs + c * cs]) & kAbsMask);
    }
  }
  return max;
}

// Whether no step of the product can meet ±Inf or NaN, for a format with E < 8 (largest value
// below 2^64): the operands are finite and every float32 product a·b is (|a|·|b| <= float32's
// largest value, exactly, in double), so every rounded product, and every rounded sum, is at
// most the format's largest value; a sum of two such values, or of one and a finite c0, is
// finite.
bool NoSpecialValues(int64_t m, int64_t n, int64_t k, MatrixView a, const float* b, int64_t b_rs,
                     const float* c, int64_t ldc, bool accumulate) {
  if (accumulate && MaxMagnitudeBits(c, m, n, ldc, 1) >= kInfBits) return false;
  const uint32_t max_a = MaxMagnitudeBits(a.data, m, k, a.row_stride, a.col_stride);
  const uint32_t max_b = MaxMagnitudeBits(b, k, n, b_rs, 1);
  if (max_a >= kInfBits || max_b >= kInfBits) return false;
  return static_cast<double>(std::bit_cast<float>(max_a)) *
             static_cast<double>(std::bit_cast<float>(max_b)) <=
         static_cast<double>(std::numeric_limits<float>::max());
}

void FusedAccumulatorGemm(const FusedKernel& kernel, int64_t m, int64_t n, int64_t k, MatrixView a,
                          MatrixView b, float* c, int64_t ldc, bool accumulate,
                          const AccumulatorRounding& rounding, const FloatGrid& g, Mode mode,
                          bool parallel) {
  const auto [bp, b_rs] = ContiguousRows(k, n, b);
  Operands op{k,    a.data, a.row_stride, a.col_stride, bp,
              b_rs, c,      ldc,          accumulate,   rounding.chunk > 0 ? rounding.chunk : 0};
  const TileFn tile = kernel.tiles[static_cast<int>(mode)];
  if (IsMagic(mode) && &kernel == &kAvx512) {
    op.finite = NoSpecialValues(m, n, k, a, bp, b_rs, c, ldc, accumulate);
  }
  // Rows [i0, i1) of C: column blocks outermost, so a block of B's columns (k × width) is read
  // from cache by every group of rows.
  auto rows = [&](int64_t i0, int64_t i1) {
    for (int64_t j = 0; j < n; j += kernel.width) {
      const int cols = static_cast<int>(std::min<int64_t>(kernel.width, n - j));
      for (int64_t i = i0; i < i1; i += kTileRows) {
        tile(op, i, static_cast<int>(std::min<int64_t>(kTileRows, i1 - i)), j, cols, g);
      }
    }
  };
  if (!parallel) {
    rows(0, m);
    return;
  }
  // Every element of C is computed alone, so any split of the rows gives the same bits.
  const int64_t blocks = (m + kTileRows - 1) / kTileRows;
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<int64_t>(0, blocks, 1),
      [&](const oneapi::tbb::blocked_range<int64_t>& r) {
        rows(r.begin() * kTileRows, std::min(m, r.end() * kTileRows));
      },
      oneapi::tbb::simple_partitioner());
}

}  // namespace

void AccumulatorGemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float* c,
                     int64_t ldc, bool accumulate, const AccumulatorRounding& rounding,
                     bool parallel) {
  if (m <= 0 || n <= 0) return;
  FloatGrid g;
  Mode mode;
  if (FusedGrid(*rounding.quantizer, &g, &mode)) {
    FusedAccumulatorGemm(BestFusedKernel(), m, n, k, a, b, c, ldc, accumulate, rounding, g, mode,
                         parallel);
    return;
  }
  RowsAccumulatorGemm(m, n, k, a, b, c, ldc, accumulate, rounding, parallel);
}

const char* AccumulatorKernelName(const Quantizer& quantizer) {
  FloatGrid g;
  Mode mode;
  return FusedGrid(quantizer, &g, &mode) ? BestFusedKernel().name : "rows";
}

bool AccumulatorGemmWithKernel(const char* kernel, int64_t m, int64_t n, int64_t k, MatrixView a,
                               MatrixView b, float* c, int64_t ldc, bool accumulate,
                               const AccumulatorRounding& rounding, bool parallel) {
  const std::string_view name = kernel;
  if (name == "rows") {
    if (m > 0 && n > 0) {
      RowsAccumulatorGemm(m, n, k, a, b, c, ldc, accumulate, rounding, parallel);
    }
    return true;
  }
  FloatGrid g;
  Mode mode;
  if (!FusedGrid(*rounding.quantizer, &g, &mode)) return false;
  for (const FusedKernel* fused : {&kAvx512, &kAvx2, &kPortable}) {
    if (name != fused->name) continue;
    if (!CanRun(*fused)) return false;
    if (m > 0 && n > 0) {
      FusedAccumulatorGemm(*fused, m, n, k, a, b, c, ldc, accumulate, rounding, g, mode, parallel);
    }
    return true;
  }
  return false;
}

}  // namespace bitsweep::trainer
