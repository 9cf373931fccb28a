// Fully connected layer. Letters: N examples, I inputs, O outputs.
// Layouts: in [N,I], out [N,O], weights [O,I] (one output unit per row), bias [O].
// With an accumulator (ops/gemm.h), the GEMMs are AccumulatorGemms keyed DeriveKey(key, pass)
// (0 forward, 1 input gradient, 2 weight gradient).
#pragma once

#include "worker/trainer/ops/gemm.h"

namespace bitsweep::trainer {

// out = in·Wᵀ + b.
void DenseForward(int n, int in_dim, int out_dim, const float* in, const float* weights,
                  const float* bias, float* out, const AccumulatorRounding* accumulator = nullptr);

// dweights = doutᵀ·in, dbias = Σ_n dout (both overwritten); din = dout·W (overwritten) when
// not null.
void DenseBackward(int n, int in_dim, int out_dim, const float* dout, const float* in,
                   const float* weights, float* dweights, float* dbias, float* din,
                   const AccumulatorRounding* accumulator = nullptr);

}  // namespace bitsweep::trainer
