// Seed 001 (seeds/001_c711bc6ac272f5cb.txt; Sakr et al., ICML'17 Theorem 1, ICASSP'18): the
// quantisation noise gains of a trained float32 network, per parameter layer,
//
//   E = mean over inputs x of  Σ_{i≠ŷ} Σ_h |∂(Z_i − Z_ŷ)/∂h|² / (24 |Z_i − Z_ŷ|²)
//
// with Z the logits, ŷ the float32 prediction and h every weight and bias of the layer (E_W) or
// every value of the activation tensor the layer produces, the one the activations site rounds
// (E_A). One backward pass per (input, i ≠ ŷ), seeded with dlogits = e_i − e_ŷ, through the
// Network's public Forward/Backward: the weight derivatives are the parameter gradients; the
// activation derivatives follow from the next layer, ∂D/∂h = Wᵀ·δ with δ its bias gradient
// (one example per pass). That covers the logits (|e_i − e_ŷ|² = 2), every hidden dense output
// and the last conv block's output (max-pooling routes each pooled derivative to one position,
// so the squared norm is the same before and after pooling). A conv block followed by another
// conv block would need the per-position δ, which the Network does not expose: its E_A is
// reported as NaN (`activations_known` false).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "worker/trainer/network.h"

namespace bitsweep::trainer {

struct LayerNoiseGains {
  std::string layer;  // conv0, ..., dense0, ..., output
  double activations = 0;
  double weights = 0;
  bool activations_known = true;
};

struct NoiseGainReport {
  std::vector<LayerNoiseGains> layers;
  int64_t inputs = 0;        // inputs averaged over
  int64_t skipped_ties = 0;  // (input, i) pairs with Z_i == Z_ŷ (an unbounded term), left out
};

// `net` must be the network `model` describes; `images` holds n inputs of `image_size` floats
// (the network's C·H·W). Runs in float32 (no quantisation); overwrites the params' gradients.
// Errors: InvalidArgument when n < 1 or `net` does not have the params `model` describes.
absl::StatusOr<NoiseGainReport> ComputeNoiseGains(Network& net, const v1::ModelConfig& model,
                                                  const float* images, int64_t n,
                                                  int64_t image_size);

// The fraction of the n inputs whose predicted class under `quantized` (weights rounded by its
// weights site, activations by its activations site; stochastic streams from `key`) differs
// from the float32 prediction: the measured p_m of seed 001. Honours per-layer formats
// (precision.layers). Restores the weights after.
double MeasureMismatchRate(Network& net, const float* images, int64_t n, int64_t image_size,
                           SitePrecision& quantized, uint64_t key);

}  // namespace bitsweep::trainer
