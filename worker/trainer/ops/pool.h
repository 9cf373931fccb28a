// Max-pooling over non-overlapping p x p windows (stride p); a remainder row/column that does
// not fill a window is dropped (OH = H / p). Layout [N,C,H,W] -> [N,C,OH,OW].
#pragma once

#include <cstdint>

namespace bitsweep::trainer {

struct PoolShape {
  int c = 1, h = 1, w = 1, p = 1;
  int oh() const { return h / p; }
  int ow() const { return w / p; }
  int64_t in_size() const { return int64_t{c} * h * w; }
  int64_t out_size() const { return int64_t{c} * oh() * ow(); }
};

// out = window maxima; argmax [N*out_size] records, per output, the index of the winner
// within the example's input (the first maximum on ties).
void MaxPoolForward(const PoolShape& s, int n, const float* in, float* out, int32_t* argmax);
void MaxPoolForward(const PoolShape& s, int n, const double* in, double* out, int32_t* argmax);

// din = 0 except din[argmax] = dout (overwritten).
void MaxPoolBackward(const PoolShape& s, int n, const float* dout, const int32_t* argmax,
                     float* din);
void MaxPoolBackward(const PoolShape& s, int n, const double* dout, const int32_t* argmax,
                     double* din);

// MaxPoolBackward followed by ActivationBackward(kRelu) on the pooling's input, in one pass
// with the same bits: the ReLU's test y > 0 at a window's winner reads the window's maximum
// `out` (the winner's own value) instead of the whole input, and elsewhere the gradient is 0.
void MaxPoolReluBackward(const PoolShape& s, int n, const float* dout, const int32_t* argmax,
                         const float* out, float* din);

}  // namespace bitsweep::trainer
