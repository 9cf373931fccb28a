// Seed 001 (seeds/001_c711bc6ac272f5cb.txt; Sakr et al., ICML'17 Theorem 1 and ICASSP'18):
// the probability p_m that a fixed-point network's decision differs from the float network's,
// bounded from the noise gains E_A (activations) and E_W (weights) of one forward-backward pass:
//
//   p_m ≤ Σ_l ( E_A,l · Δ_A,l² + E_W,l · Δ_W,l² ),   Δ = 2^(1−B),  i.e.  E · 4^(1−B)
//
// Δ = 2^(1−B) is the step of a B-bit signed fixed-point number on [−1, 1) (one sign bit, B − 1
// fractional bits), the quantisation model the paper uses; the 1/24 in E is its Δ²/12 noise
// variance times the symmetry factor 1/2. So each added bit divides the bound by exactly 4.
// (The brief's alternative 4^(−B) would be a step of 2^(−B), an unsigned or sign-less format:
// it shifts every prediction down by one bit. We follow the paper and the issue: 4^(1−B).)
//
// Δ is relative to the quantity's range: a quantity held on [−2^I, 2^I) (fixed:B,B−1−I) has step
// 2^I·Δ, so its gain enters as E·4^I (client/predict_command.cc picks I per layer and passes
// the range-scaled gains; the paper normalises every quantity to [−1, 1)).
//
// Per-layer assignment (ICASSP'18, "equalisation of reflected quantisation noise variances"):
// with E_min the least noise gain over all 2L quantities, B_q = B_ref + round(log2 √(E_q/E_min)),
// and the search is the one axis of the reference precision B_ref.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bitsweep::analysis {

// Noise gains of one parameter layer: E_A of the activations it produces (its output, the
// tensor the activations site rounds) and E_W of its weights and biases.
struct LayerNoiseGain {
  std::string layer;  // conv0, ..., dense0, ..., output
  double activations = 0;
  double weights = 0;
};

// Bits per quantity: activations and weights of each layer.
struct PrecisionAssignment {
  std::vector<int> activation_bits, weight_bits;  // one per layer
  int reference_bits = 0;                         // B_ref (uniform: every entry)
  double bound = 0;                               // the p_m bound of this assignment
};

// Σ_l E_A,l · 4^(1−BA_l) + E_W,l · 4^(1−BW_l). Sizes must match `gains` (else InvalidArgument).
absl::StatusOr<double> MismatchBound(const std::vector<LayerNoiseGain>& gains,
                                     const std::vector<int>& activation_bits,
                                     const std::vector<int>& weight_bits);

// The bound with every quantity at `bits`: (Σ E_A + Σ E_W) · 4^(1−B).
double UniformMismatchBound(const std::vector<LayerNoiseGain>& gains, int bits);

// The fewest uniform bits B in [1, 64] with bound ≤ target_pm.
// Errors: InvalidArgument when target_pm is not in (0, 1] or a gain is negative / not finite;
// OutOfRange when even 64 bits do not meet the target.
absl::StatusOr<PrecisionAssignment> MinUniformPrecision(const std::vector<LayerNoiseGain>& gains,
                                                        double target_pm);

// The equalising assignment for reference precision `reference_bits` (quantities with E = 0
// get the reference). Errors: InvalidArgument when no gain is positive.
absl::StatusOr<PrecisionAssignment> PerLayerPrecision(const std::vector<LayerNoiseGain>& gains,
                                                      int reference_bits);

// The per-layer assignment with the smallest B_ref in [1, 64] whose bound ≤ target_pm.
// Errors: as MinUniformPrecision and PerLayerPrecision.
absl::StatusOr<PrecisionAssignment> MinPerLayerPrecision(const std::vector<LayerNoiseGain>& gains,
                                                         double target_pm);

}  // namespace bitsweep::analysis
