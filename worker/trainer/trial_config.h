// Defaults and validation of TrialConfig: what the trainer supports, in one place. The server
// uses these to validate sweeps before storing them.
#pragma once

#include "absl/status/status.h"
#include "bitsweep/v1/config.pb.h"

namespace bitsweep::trainer {

// The config a sweep's `base` is applied over: the reference CNN of DESIGN §3 on MNIST,
// fp32, SGD with momentum.
v1::TrialConfig DefaultTrialConfig();

// Checks every field against what the trainer supports, including that the model's conv
// layers fit the named dataset's images (mnist and fashion-mnist 28x28, cifar10 3x32x32,
// synthetic 16x16). Fields only some choices read (train.eps, lr_gamma, lr_power, lr_step_size,
// precision.dynamic's bounds) are checked when those choices are made; empty
// train.lr_schedule / precision.master_weights mean const / none.
// Errors: InvalidArgument whose message starts with the dotted field path, e.g.
// "precision.default.format: 'mask:40': B must be between 9 and 32".
absl::Status ValidateTrialConfig(const v1::TrialConfig& config);

}  // namespace bitsweep::trainer
