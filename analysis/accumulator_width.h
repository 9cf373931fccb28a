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

// A sum as the trainer's accumulator site computes it (worker/trainer/ops/accumulator_gemm.h,
// conv.h): `groups` running sums of `chain` products each, every step rounded, and then the groups'
// results added one after another, also rounded. groups == 1 is one running sum of n = chain.
struct Accumulation {
  int64_t chain = 0;
  int64_t groups = 1;
  int64_t products() const { return chain * groups; }
};

// The VRR of such a grouped sum (same model and estimator as above). Errors: as MonteCarloVrr,
// and InvalidArgument when groups < 1.
absl::StatusOr<double> MonteCarloVrr(int mantissa_bits, const Accumulation& sum,
                                     const VrrOptions& options);

// The fewest mantissa bits m in 1..52 whose VRR ≥ min_vrr (default 0.99: at most 1% of the
// variance lost; our choice, the seed names no cut-off), by bisection (VRR grows with m).
// Errors: as MonteCarloVrr; InvalidArgument when min_vrr is not in (0, 1).
absl::StatusOr<int> MinAccumulatorMantissa(int64_t n, double min_vrr, const VrrOptions& options);
absl::StatusOr<int> MinAccumulatorMantissa(const Accumulation& sum, double min_vrr,
                                           const VrrOptions& options);

// The accumulations of one parameter layer's three GEMMs (seed 003) as bitsweep's trainer
// performs them, which is what an `accumulator` sweep rounds:
//   forward   one chain over the fan-in: C·k·k (conv), inputs (dense);
//   backward  one chain over the outputs: F (conv: Wᵀ·dout per position; col2im then adds the
//             k·k overlapping columns in float32, outside the site), outputs (dense);
//   gradient  conv: per group of `conv_group` examples one chain over their output positions
//             (examples × OH·OW), then the ceil(batch / conv_group) group sums added in order;
//             dense: one chain over the batch.
// `dot_product` is each weight gradient's full length (batch × positions), the n of a
// hardware dot product without grouping.
struct LayerAccumulation {
  std::string layer;  // conv0, ..., dense0, ..., output
  Accumulation forward;
  Accumulation backward;
  Accumulation gradient;
  int64_t gradient_dot_product = 0;
};

// The layers of `model` on channels × height × width inputs with `num_classes` outputs and
// mini-batch `batch` (conv k×k stride 1 valid, max-pool p; model.kernels / pools per layer),
// the conv weight gradients grouped by `conv_group` examples (trainer::kConvGroup).
// Errors: InvalidArgument when a conv layer's output would be empty, batch < 1 or
// conv_group < 1.
absl::StatusOr<std::vector<LayerAccumulation>> AccumulationLengths(const v1::ModelConfig& model,
                                                                   int channels, int height,
                                                                   int width, int num_classes,
                                                                   int batch, int conv_group);

}  // namespace bitsweep::analysis
