// Seed 003 (seeds/003_580037f3b1dd032e.txt; Sakr et al., "Accumulation Bit-Width Scaling"):
// an accumulator that keeps too few mantissa bits loses the small addends of a long sum
// (swamping), which shows as a loss of variance in the ensemble of sums. The variance retention
// ratio VRR = Var(ŝ_n) / Var(s_n) of an m-bit-mantissa accumulator ŝ summing n products,
// against the exact sum s, tends to 1 as m grows and falls as n grows.
//
// Estimated here by Monte Carlo only: the seed holds the paper's abstract, not its equations,
// and we could not confirm its closed form from it, so no closed form is claimed. Model: the n
// products are iid N(0, 1) (the paper's zero-mean iid assumption; the VRR does not depend on
// their scale), summed left to right, each partial sum truncated (toward zero) to m explicit
// mantissa bits (precision m + 1, unbounded exponent): the addend's bits below the sum's last
// place are shifted out and lost, which is the swamping the paper describes. We measured that
// round-to-nearest instead adds zero-mean noise that raises the variance above the exact sum's
// (VRR 1.009 at m = 6, n = 1024) and hides the loss, so it does not give a usable ratio. The
// estimator Σ ŝ² / Σ s² pairs each rounded sum with its exact sum
// (the mean is known to be 0), which keeps its Monte-Carlo noise far below the unpaired ratio's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"

namespace bitsweep::analysis {

// x truncated toward zero to `mantissa_bits` explicit fraction bits (1..52).
double TruncateToMantissa(double x, int mantissa_bits);

struct VrrOptions {
  int samples = 1000;  // sums in the ensemble
  uint64_t seed = 1;   // the same seed gives the same products for every m (common numbers)
};

// Errors: InvalidArgument when mantissa_bits is not in 1..52, n < 1 or samples < 2.
absl::StatusOr<double> MonteCarloVrr(int mantissa_bits, int64_t n, const VrrOptions& options);

// The fewest mantissa bits m in 1..52 whose VRR ≥ min_vrr (default 0.99: at most 1% of the
// variance lost; our choice, the seed names no cut-off), by bisection (VRR grows with m).
// Errors: as MonteCarloVrr; InvalidArgument when min_vrr is not in (0, 1).
absl::StatusOr<int> MinAccumulatorMantissa(int64_t n, double min_vrr, const VrrOptions& options);

// Accumulation lengths of one parameter layer's three GEMMs (seed 003).
struct LayerAccumulation {
  std::string layer;     // conv0, ..., dense0, ..., output
  int64_t forward = 0;   // fan-in: C·k·k (conv), inputs (dense)
  int64_t backward = 0;  // fan-out: F·k·k (conv), outputs (dense)
  int64_t gradient = 0;  // batch × output positions (conv), batch (dense)
};

// The layers of `model` on channels × height × width inputs with `num_classes` outputs and
// mini-batch `batch` (conv k×k stride 1 valid, max-pool p; model.kernels / pools per layer).
// Errors: InvalidArgument when a conv layer's output would be empty or batch < 1.
absl::StatusOr<std::vector<LayerAccumulation>> AccumulationLengths(const v1::ModelConfig& model,
                                                                   int channels, int height,
                                                                   int width, int num_classes,
                                                                   int batch);

}  // namespace bitsweep::analysis
