// Convolution, k x k kernels, stride 1, valid padding, as im2col + one GEMM per mini-batch.
//
// Letters: N examples, C input channels, H x W input size, F filters, K kernel size,
// OH = H-K+1, OW = W-K+1, P = OH*OW output positions, CKK = C*K*K.
// Layouts (all row-major, contiguous): input [N,C,H,W], output [N,F,OH,OW], weights [F,CKK]
// (one filter per row, channel-major then kernel row then kernel column), bias [F].
#pragma once

#include <algorithm>
#include <cstdint>

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

// The batch is processed in chunks of examples whose im2col matrix stays cache-resident
// (about 512 KiB): one big GEMM over the whole batch is memory-bound on the col matrix.
int ConvChunk(const ConvShape& s);

// Scratch a conv layer needs for up to n examples (floats each).
inline int64_t ConvColSize(const ConvShape& s, int n) {
  return s.ckk() * std::min(n, ConvChunk(s)) * s.p();
}
inline int64_t ConvTmpSize(const ConvShape& s, int n) {
  return int64_t{s.f} * std::min(n, ConvChunk(s)) * s.p();
}

// Per chunk of M examples: col [CKK, M*P] = im2col(in); tmp [F, M*P] = W col;
// out = tmp + b, permuted to [M,F,P].
void ConvForward(const ConvShape& s, int n, const float* in, const float* weights,
                 const float* bias, float* col, float* tmp, float* out);

// Given dout [N,F,OH,OW] and the forward input `in`: dweights = Σ_chunks dout·colᵀ and
// dbias = Σ dout (both overwritten; chunks are summed in order, so the result does not depend
// on anything but the shapes), and, when din is not null, din [N,C,H,W] = col2im(Wᵀ dout)
// (overwritten). col is recomputed from `in`; `col`, `tmp` and `dcol` are scratch of
// ConvColSize / ConvTmpSize / ConvColSize floats (dcol unused when din is null).
void ConvBackward(const ConvShape& s, int n, const float* dout, const float* in,
                  const float* weights, float* col, float* tmp, float* dcol, float* dweights,
                  float* dbias, float* din);

}  // namespace bitsweep::trainer
