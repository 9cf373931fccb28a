// Runs one leased trial: dataset from the cache -> trainer::Train (or the simulated trial kind),
// streaming every curve point to the server, uploading checkpoints every checkpoint_every
// evaluations, resuming from the lease's checkpoint -> CompleteTrial with the result (or with
// the error when the trial itself is bad). Every report carries the fencing token
// (trial_id, attempt).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "bitsweep/v1/worker.pb.h"
#include "worker/backoff.h"
#include "worker/coordinator.h"
#include "worker/dataset_cache.h"
#include "worker/running_trials.h"
#include "worker/shutdown.h"
#include "worker/trainer/trainer.h"

namespace bitsweep::worker {

// What became of one assignment.
enum class TrialDisposition {
  kCompleted,   // The result was reported (outcome COMPLETED or DIVERGED).
  kFailed,      // The trial was bad (config, dataset, trainer error); the error was reported.
  kStopped,     // Stopped by the server, a lost lease or shutdown; nothing was reported.
  kUnreported,  // Finished, but the server refused the report (stale lease) or shutdown came
                // while the server was unreachable.
  kReleased     // Stopped by shutdown: the latest checkpoint uploaded, the trial given back.
};
const char* DispositionName(TrialDisposition disposition);

// Leasing a slot's next trial with the completion of its current one (one round trip per
// trial instead of two).
struct NextLease {
  // The worker's registration; and, called just before the completion goes out, whether to ask
  // (false: shutting down, or no more trials wanted). Null `ask`: never ask.
  std::string incarnation;
  std::function<bool()> ask;
  // Set by Run: whether the completion asked (asked and no lease: the caller owes LeaseTrial
  // the ask it did not use), and the server's answer; nullopt when the completion did not go
  // through or an older server did not answer `next`.
  bool asked = false;
  std::optional<v1::LeaseTrialResponse> lease;
};

// Same contract as trainer::Train; injectable so tests can control training.
using TrainFunction = std::function<absl::StatusOr<v1::TrialResult>(
    const v1::TrialConfig&, const trainer::Dataset&, const trainer::ProgressCallback&,
    const trainer::TrainOptions&)>;

class TrialRunner {
 public:
  // `train` defaults to trainer::Train (trials of kind "" or "train"; simulated trials never
  // use it). Pointers are borrowed and must outlive the runner. Each trial trains with
  // `threads_per_slot` threads. Points that come less than `min_report_interval` after the
  // last report are held and go with the next point, checkpoint or the end of the trial
  // (fewer RPCs for fast trials; 0 = one report per point).
  TrialRunner(std::string worker_id, Coordinator* coordinator, DatasetCache* datasets,
              const ShutdownNotifier* shutdown, TrainFunction train = nullptr,
              BackoffOptions backoff = {}, int threads_per_slot = 1,
              std::chrono::milliseconds min_report_interval = {});
  TrialRunner(const TrialRunner&) = delete;
  TrialRunner& operator=(const TrialRunner&) = delete;

  // Runs the leased trial to its end and reports it; thread-safe (one call per slot at a
  // time). Never fails as a whole: a bad trial is reported as the trial's error, and a server
  // that is unreachable is retried with backoff until it answers or shutdown.
  //   * A lease with a checkpoint resumes from it and reports only the points after
  //     checkpoint_iteration.
  //   * Checkpoints are uploaded after the points up to their iteration were delivered (or
  //     with them, and the last points with the result, when the lease says
  //     accepts_points_with_reports); one that cannot be delivered now, or comes less than
  //     `min_report_interval` after the last upload, is kept and the latest uploaded later or
  //     at release.
  //   * Training stops within an iteration once `stop` is raised or the server answers `stop`
  //     or refuses the lease: nothing more is reported. Under shutdown the trial is released
  //     instead (latest checkpoint uploaded, then ReleaseTrial).
  //   * The server answering `prune` stops it too, and completes it with outcome PRUNED and
  //     the metrics of the points seen (a finished result is kept whole).
  //   * With `next`, the completion (of a result or an error) may also lease the slot's next
  //     trial: see NextLease.
  TrialDisposition Run(const v1::LeaseTrialResponse& lease, const StopFlag& stop,
                       NextLease* next = nullptr);
  // A lease without checkpoint or checkpointing.
  TrialDisposition Run(const v1::TrialRef& ref, const v1::TrialConfig& config,
                       const StopFlag& stop);

 private:
  class Reporter;

  const std::string worker_id_;
  Coordinator* const coordinator_;
  DatasetCache* const datasets_;
  const ShutdownNotifier* const shutdown_;
  // Delivers `request` with CompleteTrial, retrying transient failures until shutdown.
  // Errors: the last refusal or transient error.
  // With `next`, takes the next lease from the answer.
  absl::Status Complete(const v1::CompleteTrialRequest& request, NextLease* next) const;

  const TrainFunction train_;
  const BackoffOptions backoff_;
  const int threads_per_slot_;
  const std::chrono::milliseconds min_report_interval_;
};

}  // namespace bitsweep::worker
