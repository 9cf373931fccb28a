#include "worker/trainer/ops/pool.h"

#include <algorithm>

namespace bitsweep::trainer {

void MaxPoolForward(const PoolShape& s, int n, const float* in, float* out, int32_t* argmax) {
  const int oh = s.oh(), ow = s.ow();
  for (int e = 0; e < n; ++e) {
    const float* x = in + e * s.in_size();
    float* y = out + e * s.out_size();
    int32_t* a = argmax + e * s.out_size();
    for (int c = 0; c < s.c; ++c) {
      for (int oy = 0; oy < oh; ++oy) {
        for (int ox = 0; ox < ow; ++ox) {
          int32_t best = (c * s.h + oy * s.p) * s.w + ox * s.p;
          float best_value = x[best];
          for (int dy = 0; dy < s.p; ++dy) {
            for (int dx = 0; dx < s.p; ++dx) {
              const int32_t i = (c * s.h + oy * s.p + dy) * s.w + ox * s.p + dx;
              if (x[i] > best_value) {
                best_value = x[i];
                best = i;
              }
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

void MaxPoolBackward(const PoolShape& s, int n, const float* dout, const int32_t* argmax,
                     float* din) {
  std::fill(din, din + n * s.in_size(), 0.0f);
  for (int e = 0; e < n; ++e) {
    const float* dy = dout + e * s.out_size();
    const int32_t* a = argmax + e * s.out_size();
    float* dx = din + e * s.in_size();
    for (int64_t o = 0; o < s.out_size(); ++o) dx[a[o]] += dy[o];
  }
}

}  // namespace bitsweep::trainer
