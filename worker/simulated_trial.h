// The simulated trial kind (TrialConfig.kind == "simulated"): for orchestration tests and
// benchmarks only, never a default. Its curve is a cheap analytic function of the config, so
// thousands of trials can go through the real server, workers, gRPC and SQLite in seconds
// while exercising everything a real trial does: curve points, checkpoints, resume, stop.
//
// The model (deterministic in the config; no wall clock in anything but train_seconds and
// images_per_second):
//   * bits = the width of precision.default.format (fp32: 32, mask:B: B, float:E,M: 1+E+M,
//     fixed:WL,FL / dynfixed:WL / int:B: WL or B, dps:IL,FL: IL+FL, aliases by their width);
//     rounding adds effective bits (nearest +1, stochastic +2, truncate +0).
//   * level = 0.1 + (0.88 + noise(seed)) / (1 + exp(-1.2 * (effective bits - 10))): the final
//     test accuracy, saturating near 0.98 with many bits and falling to chance with few;
//     noise(seed) is within +-0.005.
//   * point i of simulation.points (1-based) is at iteration i * max(1, train.eval_every) with
//     test accuracy 0.1 + (level - 0.1) * (1 - exp(-3 i / points)).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "worker/trainer/trainer.h"

namespace bitsweep::worker {

// Waits up to `duration` between two points; returns true (early) when the trial must stop.
using StopWait = std::function<bool(std::chrono::milliseconds duration)>;

// The number of bits of a format spec, as the model above uses it.
// Errors: InvalidArgument (an unknown or malformed format, named in the message).
absl::StatusOr<int> SimulatedFormatBits(std::string_view format);

// Runs the simulated trial of `config` (which must have kind "simulated"): reports each point
// through `on_progress`, waits simulation.millis_per_point between points (through `wait`, or
// polling options.should_stop when `wait` is null), calls options.on_checkpoint every
// options.checkpoint_every points with the point index as state, and resumes after the point
// index in options.resume_from (reporting only later points). The result is the same whether
// or not the run was resumed.
// Errors: InvalidArgument (kind is not "simulated", simulation.points < 1, bad format or
// rounding, a resume state that is not a point index of this trial), Cancelled (on_progress
// returned false or the trial was told to stop).
absl::StatusOr<v1::TrialResult> RunSimulatedTrial(const v1::TrialConfig& config,
                                                  const trainer::ProgressCallback& on_progress,
                                                  const trainer::TrainOptions& options,
                                                  const StopWait& wait = nullptr);

// The iteration a simulated checkpoint state was taken after.
// Errors: InvalidArgument (not a point index of this trial).
absl::StatusOr<int64_t> SimulatedCheckpointIteration(const v1::TrialConfig& config,
                                                     std::string_view state);

}  // namespace bitsweep::worker
