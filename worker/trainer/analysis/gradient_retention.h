// Seed 003 (seeds/003_580037f3b1dd032e.txt) measured on the network's own GEMMs instead of the
// Monte-Carlo model's iid products (analysis/accumulator_width.h): how much of each parameter
// layer's weight gradient survives when every product and partial sum of the forward and
// backward passes is rounded by the accumulator site.
//
// One mini-batch, forward + loss + backward twice: in float32 and with `accumulator`. Per layer,
// with g the float32 weight gradient and ĝ the accumulator's,
//   retention = Σ ĝ² / Σ g²            (the paper's variance retention, paired as in the Monte
//                                       Carlo estimator: < 1 when swamping loses addends)
//   cosine    = Σ ĝ·g / √(Σ ĝ² Σ g²)   (whether the descent direction survives, which is what
//                                       SGD needs; a lost-variance criterion cannot tell)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/trainer/network.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/quant/sites.h"

namespace bitsweep::trainer {

struct LayerGradientRetention {
  std::string layer;  // conv0, ..., dense0, ..., output
  double retention = 0;
  double cosine = 0;
};

// `images` holds n inputs (the network's input size each) with their labels; n ≤ max_batch.
// Overwrites the params' gradients; leaves the weights as they were.
// Errors: InvalidArgument when n is not in 1..max_batch, or when `accumulator` rounds no
// layer's accumulations (nothing to measure).
absl::StatusOr<std::vector<LayerGradientRetention>> MeasureGradientRetention(
    Network& net, const float* images, const uint8_t* labels, int n, Loss loss,
    SitePrecision& accumulator, uint64_t key);

}  // namespace bitsweep::trainer
