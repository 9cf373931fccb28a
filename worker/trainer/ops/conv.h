// Convolution, k x k kernels, stride 1, valid padding, as im2col + one GEMM per mini-batch.
//
// Letters: N examples, C input channels, H x W input size, F filters, K kernel size,
// OH = H-K+1, OW = W-K+1, P = OH*OW output positions, CKK = C*K*K.
// Layouts (all row-major, contiguous): input [N,C,H,W], output [N,F,OH,OW], weights [F,CKK]
// (one filter per row, channel-major then kernel row then kernel column), bias [F].
#pragma once

#include <algorithm>
#include <cstdint>

#include "worker/trainer/ops/accumulator_gemm.h"
#include "worker/trainer/ops/activation.h"
#include "worker/trainer/ops/gemm.h"
#include "worker/trainer/ops/pool.h"

namespace bitsweep::trainer {

struct ConvShape {
  int c = 1, h = 1, w = 1;  // input
  int f = 1, k = 1;         // filters, kernel size
  int oh() const { return h - k + 1; }
  int ow() const { return w - k + 1; }
  int64_t p() const { return int64_t{oh()} * ow(); }
  int64_t ckk() const { return int64_t{c} * k * k; }
  int64_t in_size() const { return int64_t{c} * h * w; }  // per example
  int64_t out_size() const { return f * p(); }            // per example
  int64_t weight_size() const { return f * ckk(); }
};

// Examples are independent in the forward pass and in the input gradient: both run one example
// per task on the current oneTBB arena. The weight and bias gradients sum over the batch:
// each group of kConvGroup consecutive examples sums its own (in example order, gemm.h's fma
// chain over the output positions), and the groups' sums are then added in group order. The
// grouping depends only on n, so the result does not depend on the thread count.
inline constexpr int kConvGroup = 8;

// CKK rounded up to whole 32-column panels: the weight gradient may keep its rows that wide.
inline int64_t ConvPaddedCkk(const ConvShape& s) { return (s.ckk() + 31) / 32 * 32; }
// Values of scratch ConvBackward keeps (per-group gradient sums), for memory estimates; and
// the per-thread im2col scratch of either pass.
int64_t ConvGroupScratchSize(const ConvShape& s, int n);
// (kIm2ColSlack: the transposed im2col may write that many floats past its end.)
inline constexpr int kIm2ColSlack = 8;
inline int64_t ConvThreadScratchSize(const ConvShape& s) {
  return (ConvPaddedCkk(s) + s.ckk()) * s.p() + s.out_size() + kIm2ColSlack;
}

// Where ConvForward also max-pools its output (MaxPoolForward's pooled values and argmax).
struct PoolOutput {
  PoolShape pool;
  float* pooled;
  int32_t* argmax;
  // false: the caller reads only `pooled` and `argmax`, so `out` is left unwritten and each
  // example's activations stay in a per-thread buffer that is still in cache (writing the
  // batch's whole activation tensor costs more than the pooling that reads it).
  bool keep_out = true;
};

// out [N,F,OH,OW] = act(conv(in, W) + b), per example: out_e [F, P] = W · im2col(in_e) + b,
// then the activation while the example is in cache (none when `act` is null), and with
// `pool`, MaxPoolForward of it (the same bits as pooling `out` afterwards).
void ConvForward(const ConvShape& s, int n, const float* in, const float* weights,
                 const float* bias, float* out, const Activation* act = nullptr,
                 const AccumulatorRounding* accumulator = nullptr,
                 const PoolOutput* pool = nullptr);

// Given dout [N,F,OH,OW] and the forward input `in`: dweights = Σ dout_e · im2col(in_e)ᵀ and
// dbias = Σ dout (both overwritten; summed as above), and, when din is not null,
// din [N,C,H,W] = col2im(Wᵀ dout_e) per example (overwritten).
// With an accumulator (ops/accumulator_gemm.h), every GEMM is an AccumulatorGemm (key:
// DeriveKey of the accumulator's key with the pass, 0 forward, 1 input gradient, 2 weight
// gradient, then with the example; the weight gradient's groups are added with the same
// rounding).
void ConvBackward(const ConvShape& s, int n, const float* dout, const float* in,
                  const float* weights, float* dweights, float* dbias, float* din,
                  const AccumulatorRounding* accumulator = nullptr);

// A conv layer followed by ReLU and max-pooling: the gradient w.r.t. the conv output is
// MaxPoolReluBackward(pool, dpooled, argmax, pooled) (ops/pool.h). ConvBackward given this
// instead of dout computes each example's dout while it works on the example (the same
// values, so the same bits), and never stores the whole batch's.
struct PooledReluGradient {
  PoolShape pool;
  const float* dpooled;
  const int32_t* argmax;
  const float* pooled;
};
void ConvBackward(const ConvShape& s, int n, const PooledReluGradient& dout, const float* in,
                  const float* weights, float* dweights, float* dbias, float* din);

// train.compute fp64: the same passes in double, with the same grouping and summation order
// (ops/gemm.h's double GEMM). No accumulator: that site is float32-only.
void ConvForward(const ConvShape& s, int n, const double* in, const double* weights,
                 const double* bias, double* out, const Activation* act = nullptr);
void ConvBackward(const ConvShape& s, int n, const double* dout, const double* in,
                  const double* weights, double* dweights, double* dbias, double* din);

}  // namespace bitsweep::trainer
