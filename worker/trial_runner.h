// Runs one leased trial: dataset from the cache -> trainer::Train, streaming every curve point
// to the server -> CompleteTrial with the result (or with the error when the trial itself is
// bad). Every report carries the fencing token (trial_id, attempt).
#pragma once

#include <functional>
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
  kCompleted,  // The result was reported (outcome COMPLETED or DIVERGED).
  kFailed,     // The trial was bad (config, dataset, trainer error); the error was reported.
  kStopped,    // Stopped by the server, a lost lease or shutdown; nothing was reported.
  kUnreported  // Finished, but the server refused the report (stale lease) or shutdown came
               // while the server was unreachable.
};
const char* DispositionName(TrialDisposition disposition);

// Same contract as trainer::Train; injectable so tests can control training.
using TrainFunction = std::function<absl::StatusOr<v1::TrialResult>(
    const v1::TrialConfig&, const trainer::Dataset&, const trainer::ProgressCallback&)>;

class TrialRunner {
 public:
  // `train` defaults to trainer::Train. Pointers are borrowed and must outlive the runner.
  TrialRunner(std::string worker_id, Coordinator* coordinator, DatasetCache* datasets,
              const ShutdownNotifier* shutdown, TrainFunction train = nullptr,
              BackoffOptions backoff = {});
  TrialRunner(const TrialRunner&) = delete;
  TrialRunner& operator=(const TrialRunner&) = delete;

  // Runs the trial to its end and reports it; thread-safe (one call per slot at a time).
  // Never fails as a whole: a bad trial is reported as the trial's error, and a server that is
  // unreachable is retried with backoff until it answers or shutdown. Training stops at the
  // next curve point once `stop` is raised or the server answers `stop` / refuses the lease.
  TrialDisposition Run(const v1::TrialRef& ref, const v1::TrialConfig& config,
                       const StopFlag& stop);

 private:
  class Reporter;

  const std::string worker_id_;
  Coordinator* const coordinator_;
  DatasetCache* const datasets_;
  const ShutdownNotifier* const shutdown_;
  const TrainFunction train_;
  const BackoffOptions backoff_;
};

}  // namespace bitsweep::worker
