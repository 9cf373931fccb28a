// Fully connected layer. Letters: N examples, I inputs, O outputs.
// Layouts: in [N,I], out [N,O], weights [O,I] (one output unit per row), bias [O].
#pragma once

namespace bitsweep::trainer {

// out = in·Wᵀ + b.
void DenseForward(int n, int in_dim, int out_dim, const float* in, const float* weights,
                  const float* bias, float* out);

// dweights = doutᵀ·in, dbias = Σ_n dout (both overwritten); din = dout·W (overwritten) when
// not null.
void DenseBackward(int n, int in_dim, int out_dim, const float* dout, const float* in,
                   const float* weights, float* dweights, float* dbias, float* din);

}  // namespace bitsweep::trainer
