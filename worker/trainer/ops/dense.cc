#include "worker/trainer/ops/dense.h"

#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/partitioner.h"
#include "worker/trainer/ops/accumulator_gemm.h"
#include "worker/trainer/ops/gemm.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

void AnyGemm(int64_t m, int64_t n, int64_t k, MatrixView a, MatrixView b, float* c, int64_t ldc,
             const AccumulatorRounding* accumulator, uint64_t pass) {
  if (accumulator == nullptr) {
    ParallelGemm(m, n, k, a, b, c, ldc, false);
    return;
  }
  AccumulatorRounding r = *accumulator;
  r.key = DeriveKey(accumulator->key, pass);
  AccumulatorGemm(m, n, k, a, b, c, ldc, false, r, true);
}

}  // namespace

void DenseForward(int n, int in_dim, int out_dim, const float* in, const float* weights,
                  const float* bias, float* out, const AccumulatorRounding* accumulator) {
  // out [N, O] = in [N, I] · Wᵀ [I, O]; each element its own chain (gemm.h), then + b.
  AnyGemm(n, out_dim, in_dim, MatrixView{in, in_dim, 1}, MatrixView{weights, 1, in_dim}, out,
          out_dim, accumulator, 0);
  for (int e = 0; e < n; ++e) {
    float* row = out + int64_t{e} * out_dim;
    for (int o = 0; o < out_dim; ++o) row[o] += bias[o];
  }
}

void DenseBackward(int n, int in_dim, int out_dim, const float* dout, const float* in,
                   const float* weights, float* dweights, float* dbias, float* din,
                   const AccumulatorRounding* accumulator) {
  // dW [O, I] = doutᵀ [O, N] · in [N, I]: one chain over the batch per element.
  AnyGemm(out_dim, in_dim, n, MatrixView{dout, 1, out_dim}, MatrixView{in, in_dim, 1}, dweights,
          in_dim, accumulator, 2);
  for (int o = 0; o < out_dim; ++o) dbias[o] = 0.0f;
  for (int e = 0; e < n; ++e) {
    const float* row = dout + int64_t{e} * out_dim;
    for (int o = 0; o < out_dim; ++o) dbias[o] += row[o];
  }
  if (din != nullptr) {
    // din [N, I] = dout [N, O] · W [O, I]: one of the layer's three GEMMs, so the accumulator
    // site rounds it too (pass 1, as the conv input gradient).
    AnyGemm(n, in_dim, out_dim, MatrixView{dout, out_dim, 1}, MatrixView{weights, in_dim, 1}, din,
            in_dim, accumulator, 1);
  }
}

void DenseForward(int n, int in_dim, int out_dim, const double* in, const double* weights,
                  const double* bias, double* out) {
  ParallelGemm(n, out_dim, in_dim, DoubleMatrixView{in, in_dim, 1},
               DoubleMatrixView{weights, 1, in_dim}, out, out_dim, false);
  for (int e = 0; e < n; ++e) {
    double* row = out + int64_t{e} * out_dim;
    for (int o = 0; o < out_dim; ++o) row[o] += bias[o];
  }
}

void DenseBackward(int n, int in_dim, int out_dim, const double* dout, const double* in,
                   const double* weights, double* dweights, double* dbias, double* din) {
  ParallelGemm(out_dim, in_dim, n, DoubleMatrixView{dout, 1, out_dim},
               DoubleMatrixView{in, in_dim, 1}, dweights, in_dim, false);
  for (int o = 0; o < out_dim; ++o) dbias[o] = 0.0;
  for (int e = 0; e < n; ++e) {
    const double* row = dout + int64_t{e} * out_dim;
    for (int o = 0; o < out_dim; ++o) dbias[o] += row[o];
  }
  if (din != nullptr) {
    ParallelGemm(n, in_dim, out_dim, DoubleMatrixView{dout, out_dim, 1},
                 DoubleMatrixView{weights, in_dim, 1}, din, in_dim, false);
  }
}

}  // namespace bitsweep::trainer
