// The training loop: builds the network a TrialConfig describes, trains it on a Dataset with
// the configured precision, evaluates every `train.eval_every` iterations and reports each
// evaluation through a callback. Knows nothing of gRPC, SQLite or HTTP.
#pragma once

#include <functional>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "worker/trainer/data/dataset.h"

namespace bitsweep::trainer {

// Called after every evaluation, in order. Return false to stop training (cancellation).
using ProgressCallback = std::function<bool(const v1::CurvePoint&)>;

// Trains one trial to the end (or until it diverges, which is a result with outcome
// DIVERGED). Deterministic: the same build, config and dataset give bitwise the same result.
// Errors: InvalidArgument (the config is invalid for this dataset; the message names the field
// path), Cancelled (the callback returned false).
absl::StatusOr<v1::TrialResult> Train(const v1::TrialConfig& config, const Dataset& data,
                                      const ProgressCallback& on_progress);

}  // namespace bitsweep::trainer
