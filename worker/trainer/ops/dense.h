// Fully connected layer. Letters: N examples, I inputs, O outputs.
// Layouts: in [N,I], out [N,O], weights [O,I] (one output unit per row), bias [O].
// With an accumulator (ops/accumulator_gemm.h), the GEMMs are AccumulatorGemms keyed
// DeriveKey(key, pass) (0 forward, 1 input gradient, 2 weight gradient).
#pragma once

#include "worker/trainer/ops/accumulator_gemm.h"
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

// train.compute fp64: the same in double (ops/gemm.h's double GEMM, the same summation order).
// No accumulator: that site is float32-only (ValidateTrialConfig rejects it with fp64).
void DenseForward(int n, int in_dim, int out_dim, const double* in, const double* weights,
                  const double* bias, double* out);
void DenseBackward(int n, int in_dim, int out_dim, const double* dout, const double* in,
                   const double* weights, double* dweights, double* dbias, double* din);

}  // namespace bitsweep::trainer
