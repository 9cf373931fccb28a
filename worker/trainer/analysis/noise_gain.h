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
// (one example per pass). That covers the logits (|e_i − e_ŷ|² = 2) and every hidden dense
// output. For a conv block the derivative w.r.t. its output is what the next layer passes back:
// Wᵀ·δ for a dense next layer, and for a conv next layer col2im(Wᵀ·δ) with δ its per-position
// pre-activation gradient (Network::ConvPreActivationGradient). Max-pooling routes each pooled
// derivative to one position of the activation tensor it pools (non-overlapping windows), so
// the squared norm is the same before and after pooling.
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
};

struct NoiseGainReport {
  std::vector<LayerNoiseGains> layers;
  int64_t inputs = 0;        // inputs averaged over
  int64_t skipped_ties = 0;  // (input, i) pairs with Z_i == Z_ŷ (an unbounded term), left out
};

// `net` must be the network `model` describes for channels × height × width inputs; `images`
// holds n such inputs. Runs in float32 (no quantisation); overwrites the params' gradients.
// Errors: InvalidArgument when n < 1 or `net` does not have the params `model` describes.
absl::StatusOr<NoiseGainReport> ComputeNoiseGains(Network& net, const v1::ModelConfig& model,
                                                  const float* images, int64_t n, int channels,
                                                  int height, int width);

// Per parameter layer, the fewest integer bits I >= 0 such that every value of the activation
// tensor the layer's activations site rounds lies in [−2^I, 2^I) on the n inputs (float32
// forward passes; probes I = 0..30 with the activations site at fixed:32,31−I and counts
// overflows). 31 when even that overflows.
std::vector<int> ActivationIntegerBits(Network& net, const float* images, int64_t n,
                                       int64_t image_size);

// Per parameter layer, the fewest integer bits I >= 0 with every weight and bias in [−2^I, 2^I).
std::vector<int> WeightIntegerBits(const Network& net);

// The fraction of the n inputs whose predicted class under `quantized` (weights rounded by its
// weights site, activations by its activations site; stochastic streams from `key`) differs
// from the float32 prediction: the measured p_m of seed 001. Honours per-layer formats
// (precision.layers). Restores the weights after.
double MeasureMismatchRate(Network& net, const float* images, int64_t n, int64_t image_size,
                           SitePrecision& quantized, uint64_t key);

}  // namespace bitsweep::trainer
