// The accumulator site (quant/sites.h; seeds/000 "truncation by operation", seeds/003's
// accumulation width): an exact emulation of a dot-product unit whose multiplier and adder
// round to a quantizer's format.
#pragma once

#include <cstdint>

#include "worker/trainer/ops/gemm.h"

namespace bitsweep::trainer {

class Quantizer;

// Per element of C, with q the rounding:
//   chunk == 0:  s = c0; for p in 0..K-1: s = q(s + q(A[i][p]·B[p][j]))
//   chunk > 0:   the products are summed as above in partial sums of `chunk` products each
//                (starting from 0), and each partial sum is added to s as s = q(s + t).
// c0 as in Gemm (chunks restart at every call). Products are formed in float32 first, and
// every sum is a float32 add (never fused with the product). q is exactly
// Quantizer::Apply of the element: the stochastic stream of row i is DeriveKey(key, i); the
// rounding of step p uses DeriveKey(row key, 3p + {0: product, 1: sum, 2: chunk sum}) and
// element j of it (ElementRandom(stream, j)), so the rows may be split between threads freely.
struct AccumulatorRounding {
  const Quantizer* quantizer = nullptr;
  int chunk = 0;
  uint64_t key = 0;
};
void AccumulatorGemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float* c,
                     int64_t ldc, bool accumulate, const AccumulatorRounding& rounding,
                     bool parallel);

// Testing: which kernel AccumulatorGemm uses for `quantizer` on this machine: "avx512",
// "avx2", "portable" (the fused kernels, which inline the rounding of float:E,M and mask:B
// with truncate or nearest) or "rows" (Quantizer::Apply on rows of C: every other format and
// rounding).
const char* AccumulatorKernelName(const Quantizer& quantizer);

// Testing: AccumulatorGemm with a given fused kernel ("avx512", "avx2", "portable") or with
// the row path ("rows", which every format supports); returns false (and does nothing) when
// this machine cannot run that kernel or the kernel does not support the quantizer.
bool AccumulatorGemmWithKernel(const char* kernel, int64_t m, int64_t n, int64_t k, MatrixView a,
                               MatrixView b, float* c, int64_t ldc, bool accumulate,
                               const AccumulatorRounding& rounding, bool parallel);

}  // namespace bitsweep::trainer
