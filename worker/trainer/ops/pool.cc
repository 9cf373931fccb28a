#include "worker/trainer/ops/pool.h"

#include <immintrin.h>

#include <algorithm>
#include <type_traits>

namespace bitsweep::trainer {
namespace {

bool HasAvx512() {
  static const bool avx512 = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
  return avx512;
}

// Lane j of the even / odd elements of two 16-float vectors (a, b) = 32 consecutive floats.
__attribute__((target("avx512f"), always_inline)) inline __m512i EvenIndex() {
  return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
__attribute__((target("avx512f"), always_inline)) inline __m512i OddIndex() {
  return _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// The 2x2 backward for float when the windows tile the input (even H and W): every input gets
// 0 + dout of its window if it was the winner, else 0 (PoolBackward's fill and add), written
// row by row without the fill pass. relu_out: the forward's window maxima when a ReLU's
// backward is fused in (MaxPoolReluBackward), else null.
__attribute__((target("avx512f"))) void MaxPool2BackwardAvx512(const PoolShape& s, const float* dy,
                                                               const int32_t* a,
                                                               const float* relu_out, float* dx) {
  const int oh = s.oh(), ow = s.ow();
  const __m512i lane2 =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i interleave_lo =
      _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i interleave_hi =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512 zero = _mm512_setzero_ps();
  for (int c = 0; c < s.c; ++c) {
    for (int oy = 0; oy < oh; ++oy) {
      const int32_t row0 = (c * s.h + 2 * oy) * s.w;
      const int32_t row1 = row0 + s.w;
      const int64_t o = (int64_t{c} * oh + oy) * ow;
      for (int ox = 0; ox < ow; ox += 16) {
        const int count = std::min(16, ow - ox);
        const __mmask16 in_mask = static_cast<__mmask16>((1u << count) - 1);
        const __mmask16 lo_mask = static_cast<__mmask16>((1u << std::min(16, 2 * count)) - 1);
        const __mmask16 hi_mask = static_cast<__mmask16>((1u << std::max(0, 2 * count - 16)) - 1);
        __m512 g = _mm512_add_ps(zero, _mm512_maskz_loadu_ps(in_mask, dy + o + ox));
        if (relu_out != nullptr) {
          const __m512 y = _mm512_maskz_loadu_ps(in_mask, relu_out + o + ox);
          g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, zero, _CMP_GT_OQ), g);
        }
        const __m512i arg = _mm512_maskz_loadu_epi32(in_mask, a + o + ox);
        const __m512i base0 = _mm512_add_epi32(_mm512_set1_epi32(row0 + 2 * ox), lane2);
        const __m512i base1 = _mm512_add_epi32(_mm512_set1_epi32(row1 + 2 * ox), lane2);
        const __m512 e0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(arg, base0), g);
        const __m512 o0 =
            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(arg, _mm512_add_epi32(base0, one)), g);
        const __m512 e1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(arg, base1), g);
        const __m512 o1 =
            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(arg, _mm512_add_epi32(base1, one)), g);
        float* d0 = dx + row0 + 2 * ox;
        float* d1 = dx + row1 + 2 * ox;
        _mm512_mask_storeu_ps(d0, lo_mask, _mm512_permutex2var_ps(e0, interleave_lo, o0));
        _mm512_mask_storeu_ps(d0 + 16, hi_mask, _mm512_permutex2var_ps(e0, interleave_hi, o0));
        _mm512_mask_storeu_ps(d1, lo_mask, _mm512_permutex2var_ps(e1, interleave_lo, o1));
        _mm512_mask_storeu_ps(d1 + 16, hi_mask, _mm512_permutex2var_ps(e1, interleave_hi, o1));
      }
    }
  }
}

// The 2x2 forward for float, 16 windows at a time: the same candidates in the same order with
// the same strict "greater than" (ordered: false for NaN) as PoolForward's scalar loop.
__attribute__((target("avx512f"))) void MaxPool2Avx512(const PoolShape& s, const float* x, float* y,
                                                       int32_t* a) {
  const int oh = s.oh(), ow = s.ow();
  const __m512i lane2 =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int c = 0; c < s.c; ++c) {
    for (int oy = 0; oy < oh; ++oy) {
      const int32_t row0 = (c * s.h + 2 * oy) * s.w;
      const int32_t row1 = row0 + s.w;
      const int64_t o = (int64_t{c} * oh + oy) * ow;
      for (int ox = 0; ox < ow; ox += 16) {
        const int count = std::min(16, ow - ox);
        const __mmask16 out_mask = static_cast<__mmask16>((1u << count) - 1);
        const __mmask16 lo_mask = static_cast<__mmask16>((1u << std::min(16, 2 * count)) - 1);
        const __mmask16 hi_mask = static_cast<__mmask16>((1u << std::max(0, 2 * count - 16)) - 1);
        const float* r0 = x + row0 + 2 * ox;
        const float* r1 = x + row1 + 2 * ox;
        const __m512 a0 = _mm512_maskz_loadu_ps(lo_mask, r0);
        const __m512 b0 = _mm512_maskz_loadu_ps(hi_mask, r0 + 16);
        const __m512 a1 = _mm512_maskz_loadu_ps(lo_mask, r1);
        const __m512 b1 = _mm512_maskz_loadu_ps(hi_mask, r1 + 16);
        const __m512 v[4] = {_mm512_permutex2var_ps(a0, EvenIndex(), b0),
                             _mm512_permutex2var_ps(a0, OddIndex(), b0),
                             _mm512_permutex2var_ps(a1, EvenIndex(), b1),
                             _mm512_permutex2var_ps(a1, OddIndex(), b1)};
        const __m512i base0 = _mm512_add_epi32(_mm512_set1_epi32(row0 + 2 * ox), lane2);
        const __m512i base1 = _mm512_add_epi32(_mm512_set1_epi32(row1 + 2 * ox), lane2);
        const __m512i one = _mm512_set1_epi32(1);
        const __m512i idx[4] = {base0, _mm512_add_epi32(base0, one), base1,
                                _mm512_add_epi32(base1, one)};
        __m512 best = v[0];
        __m512i arg = idx[0];
        for (int k = 1; k < 4; ++k) {
          const __mmask16 better = _mm512_cmp_ps_mask(v[k], best, _CMP_GT_OQ);
          best = _mm512_mask_blend_ps(better, best, v[k]);
          arg = _mm512_mask_blend_epi32(better, arg, idx[k]);
        }
        _mm512_mask_storeu_ps(y + o + ox, out_mask, best);
        _mm512_mask_storeu_epi32(a + o + ox, out_mask, arg);
      }
    }
  }
}

template <typename T>
void PoolForward(const PoolShape& s, int n, const T* in, T* out, int32_t* argmax) {
  const int oh = s.oh(), ow = s.ow();
  for (int e = 0; e < n; ++e) {
    const T* x = in + e * s.in_size();
    T* y = out + e * s.out_size();
    int32_t* a = argmax + e * s.out_size();
    if constexpr (std::is_same_v<T, float>) {
      if (s.p == 2 && HasAvx512()) {
        MaxPool2Avx512(s, x, y, a);
        continue;
      }
    }
    if (s.p == 2) {
      // The common 2x2 window, unrolled; the same visiting order (row, then column) and the
      // same first-maximum-on-ties rule as the general loop below.
      for (int c = 0; c < s.c; ++c) {
        for (int oy = 0; oy < oh; ++oy) {
          const int32_t row0 = (c * s.h + 2 * oy) * s.w;
          const int32_t row1 = row0 + s.w;
          T* yo = y + (int64_t{c} * oh + oy) * ow;
          int32_t* ao = a + (int64_t{c} * oh + oy) * ow;
          for (int ox = 0; ox < ow; ++ox) {
            int32_t best = row0 + 2 * ox;
            T v = x[best];
            const int32_t candidates[3] = {row0 + 2 * ox + 1, row1 + 2 * ox, row1 + 2 * ox + 1};
            for (int32_t i : candidates) {
              const bool better = x[i] > v;
              v = better ? x[i] : v;
              best = better ? i : best;
            }
            yo[ox] = v;
            ao[ox] = best;
          }
        }
      }
      continue;
    }
    for (int c = 0; c < s.c; ++c) {
      for (int oy = 0; oy < oh; ++oy) {
        for (int ox = 0; ox < ow; ++ox) {
          int32_t best = (c * s.h + oy * s.p) * s.w + ox * s.p;
          T best_value = x[best];
          for (int dy = 0; dy < s.p; ++dy) {
            for (int dx = 0; dx < s.p; ++dx) {
              const int32_t i = (c * s.h + oy * s.p + dy) * s.w + ox * s.p + dx;
              // Branch-free: the winner is unpredictable.
              const bool better = x[i] > best_value;
              best_value = better ? x[i] : best_value;
              best = better ? i : best;
            }
          }
          const int64_t o = (int64_t{c} * oh + oy) * ow + ox;
          y[o] = best_value;
          a[o] = best;
        }
      }
    }
  }
}

template <typename T>
void PoolBackward(const PoolShape& s, int n, const T* dout, const int32_t* argmax, T* din) {
  if constexpr (std::is_same_v<T, float>) {
    if (s.p == 2 && s.h % 2 == 0 && s.w % 2 == 0 && HasAvx512()) {
      for (int e = 0; e < n; ++e) {
        MaxPool2BackwardAvx512(s, dout + e * s.out_size(), argmax + e * s.out_size(), nullptr,
                               din + e * s.in_size());
      }
      return;
    }
  }
  std::fill(din, din + n * s.in_size(), T(0));
  for (int e = 0; e < n; ++e) {
    const T* dy = dout + e * s.out_size();
    const int32_t* a = argmax + e * s.out_size();
    T* dx = din + e * s.in_size();
    for (int64_t o = 0; o < s.out_size(); ++o) dx[a[o]] += dy[o];
  }
}

}  // namespace

void MaxPoolForward(const PoolShape& s, int n, const float* in, float* out, int32_t* argmax) {
  PoolForward(s, n, in, out, argmax);
}
void MaxPoolForward(const PoolShape& s, int n, const double* in, double* out, int32_t* argmax) {
  PoolForward(s, n, in, out, argmax);
}
void MaxPoolBackward(const PoolShape& s, int n, const float* dout, const int32_t* argmax,
                     float* din) {
  PoolBackward(s, n, dout, argmax, din);
}
void MaxPoolBackward(const PoolShape& s, int n, const double* dout, const int32_t* argmax,
                     double* din) {
  PoolBackward(s, n, dout, argmax, din);
}

void MaxPoolReluBackward(const PoolShape& s, int n, const float* dout, const int32_t* argmax,
                         const float* out, float* din) {
  if (s.p == 2 && s.h % 2 == 0 && s.w % 2 == 0 && HasAvx512()) {
    for (int e = 0; e < n; ++e) {
      MaxPool2BackwardAvx512(s, dout + e * s.out_size(), argmax + e * s.out_size(),
                             out + e * s.out_size(), din + e * s.in_size());
    }
    return;
  }
  // Windows do not overlap: each input gets at most its window's 0 + dout, kept where the
  // winner was positive (ReLU's y > 0; the winner's value is the window's maximum).
  std::fill(din, din + n * s.in_size(), 0.0f);
  for (int e = 0; e < n; ++e) {
    for (int64_t o = 0; o < s.out_size(); ++o) {
      const int64_t i = e * s.out_size() + o;
      if (out[i] > 0.0f) din[e * s.in_size() + argmax[i]] += dout[i];
    }
  }
}

}  // namespace bitsweep::trainer
