#include "worker/trainer/ops/pool.h"

#include <algorithm>

namespace bitsweep::trainer {
namespace {

template <typename T>
void PoolForward(const PoolShape& s, int n, const T* in, T* out, int32_t* argmax) {
  const int oh = s.oh(), ow = s.ow();
  for (int e = 0; e < n; ++e) {
    const T* x = in + e * s.in_size();
    T* y = out + e * s.out_size();
    int32_t* a = argmax + e * s.out_size();
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

}  // namespace bitsweep::trainer
