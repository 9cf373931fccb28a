// The training loop: builds the network a TrialConfig describes, trains it on a Dataset with
// the configured precision, evaluates every `train.eval_every` iterations and reports each
// evaluation through a callback. Knows nothing of gRPC, SQLite or HTTP.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "worker/trainer/data/dataset.h"

namespace bitsweep::trainer {

// Called after every evaluation, in order. Return false to stop training (cancellation).
using ProgressCallback = std::function<bool(const v1::CurvePoint&)>;

// Trains one trial to the end (or until it diverges, which is a result with outcome
// DIVERGED). Deterministic: the same build, config and dataset give bitwise the same result
// and curve (all but the wall-clock fields images_per_second and train_seconds).
//
// The loop, single-threaded:
//   * Uses the first dataset.train_limit / test_limit examples (0 = all). Each epoch visits the
//     training examples in a shuffled order that depends only on (seed, epoch); the last
//     partial batch of an epoch is kept, so an epoch is ceil(N / batch_size) iterations.
//     train.iterations > 0 replaces epochs (the shuffle continues epoch after epoch).
//   * Per iteration: forward, loss (mean over the batch), backward, gradient rounding,
//     optimiser step at the scheduled lr (state rounding inside), weight rounding (from the
//     fp32 master copy when precision.master_weights is fp32), then the dynamic formats update
//     (precision semantics: network.h, quant/quantizer.h, quant/sites.h, optim/).
//   * Evaluates on the test set every train.eval_every iterations and after the last one, and
//     reports a CurvePoint: train loss/accuracy are the mean over the batches since the
//     previous point, epoch is iterations / iterations-per-epoch (fractional), learning_rate is
//     the lr of the last update, sites[] measures the last iteration (quant/sites.h).
//   * A batch loss that is NaN/Inf or above 1e6 stops training: outcome DIVERGED, `detail`
//     says when and why, and the final metrics come from one evaluation of the diverged model
//     (not reported as a curve point; its final_test_loss may be NaN or Inf).
//   * train_seconds is the time spent in training iterations, evaluation excluded;
//     images_per_second = training images / train_seconds.
//   * train.compute fp64 runs this loop on a BasicNetwork<double> (network.h: what the
//     precision sites then mean); everything reported is computed the same way.
// Errors: InvalidArgument (the config is invalid for this dataset; the message names the field
// path), ResourceExhausted (the model and batch would need more than 4 GiB), Cancelled (the
// callback returned false).
absl::StatusOr<v1::TrialResult> Train(const v1::TrialConfig& config, const Dataset& data,
                                      const ProgressCallback& on_progress);

struct TrainOptions {
  int threads = 1;  // oneTBB threads inside this trial; results bitwise identical for any value
  int checkpoint_every = 0;  // evaluations between checkpoints (0 = none)
  // Called right after the on_progress call of the evaluation that triggers it, with the
  // iteration and the serialised trainer state (opaque bytes).
  std::function<void(int64_t iteration, std::string state)> on_checkpoint;
  std::string resume_from;  // a state from on_checkpoint; empty = start from scratch. Points up
                            // to its iteration are not reported again.
  std::function<bool()> should_stop;  // polled every iteration; true -> Cancelled (fast cancel)
  // Also call on_checkpoint once after the last iteration (diverged runs included) unless the
  // last evaluation just took one: the trained weights (train.keep_final_checkpoint).
  bool final_checkpoint = false;
};

// Train with options. Threads split the work of each iteration into pieces fixed by the shapes
// alone and sum them in a fixed order, so curve and result do not depend on `threads`.
// A checkpoint holds the weights (and master copy), optimiser state, precision state (DPS
// IL/FL, dynfixed FL per tensor), the data order position, the iteration, the best accuracy
// and iterations-to-target so far, the running train-loss sums and a hash of the config and
// dataset shape. A run resumed from it reports the points after its iteration and ends with
// bitwise the same result and curve as the uninterrupted run (all but images_per_second and
// train_seconds).
// Errors: as Train above; also InvalidArgument when resume_from is not a checkpoint, is
// corrupt, or was taken with another config or dataset, or options.threads < 1;
// Cancelled when should_stop returned true.
absl::StatusOr<v1::TrialResult> Train(const v1::TrialConfig& config, const Dataset& data,
                                      const ProgressCallback& on_progress,
                                      const TrainOptions& options);

// The iteration a checkpoint was taken after. Errors: InvalidArgument (not a checkpoint / corrupt).
absl::StatusOr<int64_t> CheckpointIteration(std::string_view state);

// The weights a checkpoint holds, one array per Network::params() entry (the float32 master
// copy when the trial kept one, else the values; fp64 checkpoints rounded to float), for
// analyses of a trained trial (seed 001, `bitsweep predict --checkpoint`).
// Errors: InvalidArgument (not a checkpoint / corrupt).
absl::StatusOr<std::vector<std::vector<float>>> CheckpointWeights(std::string_view state);

}  // namespace bitsweep::trainer
