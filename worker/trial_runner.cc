#include "worker/trial_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include "worker/simulated_trial.h"

namespace bitsweep::worker {
namespace {

// The server answered and will never accept this report: the lease moved on or the trial is
// gone. Retrying is pointless.
bool IsLeaseLost(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition ||
         status.code() == absl::StatusCode::kNotFound;
}

std::string Describe(const v1::TrialRef& ref) {
  return "trial " + std::to_string(ref.trial_id()) + "/" + std::to_string(ref.attempt());
}

// What a pruned trial that did not finish has to show: the metrics of the points it reported
// in this attempt (the server holds the whole curve).
v1::TrialResult PrunedResult(const v1::TrialConfig& config,
                             const std::vector<v1::CurvePoint>& points) {
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_PRUNED);
  result.set_iterations_to_target(-1);
  double best = 0;
  for (const v1::CurvePoint& point : points) {
    best = std::max(best, point.test_accuracy());
    if (result.iterations_to_target() < 0 &&
        point.test_accuracy() >= config.train().target_accuracy()) {
      result.set_iterations_to_target(point.iteration());
    }
  }
  result.set_best_test_accuracy(best);
  if (!points.empty()) {
    result.set_final_test_accuracy(points.back().test_accuracy());
    result.set_final_test_loss(points.back().test_loss());
    result.set_iterations(points.back().iteration());
    result.set_detail("pruned by the sweep's pruning rule at iteration " +
                      std::to_string(points.back().iteration()));
  }
  return result;
}

}  // namespace

const char* DispositionName(TrialDisposition disposition) {
  switch (disposition) {
    case TrialDisposition::kCompleted:
      return "completed";
    case TrialDisposition::kFailed:
      return "failed";
    case TrialDisposition::kStopped:
      return "stopped";
    case TrialDisposition::kUnreported:
      return "unreported";
    case TrialDisposition::kReleased:
      return "released";
  }
  return "?";
}

// Per-run reporting state: the curve points not yet accepted by the server, the latest
// checkpoint, and whether the server wants the trial stopped or pruned. Points that fail to
// send for a transient reason stay pending and go with the next point, so a short outage
// never blocks training. Called on the training thread only, except ShouldStop.
class TrialRunner::Reporter {
 public:
  // `points_with_reports`: the server stores points sent with a checkpoint or the result.
  Reporter(const TrialRunner& runner, const v1::TrialRef& ref, const StopFlag& stop,
           int64_t resumed_after, bool points_with_reports)
      : runner_(runner),
        ref_(ref),
        stop_(stop),
        resumed_after_(resumed_after),
        points_with_reports_(points_with_reports) {}

  // The progress callback: false stops training.
  bool OnPoint(const v1::CurvePoint& point) {
    // A resumed run owes only the points after its checkpoint.
    if (point.iteration() <= resumed_after_) return !ShouldStop();
    pending_.push_back(point);
    seen_.push_back(point);
    if (ShouldStop()) return false;
    const auto now = std::chrono::steady_clock::now();
    if (runner_.min_report_interval_.count() > 0 &&
        now - last_send_ < runner_.min_report_interval_) {
      return true;  // Goes with the next point, checkpoint or the final flush.
    }
    last_send_ = now;
    absl::StatusOr<v1::ReportProgressResponse> response = Send();
    if (response.ok()) {
      if (response->prune()) {
        spdlog::info("{}: pruned by the server at iteration {}", Describe(ref_), point.iteration());
        prune_ = true;
        server_stop_ = true;
      } else if (response->stop()) {
        spdlog::info("{}: server asked to stop", Describe(ref_));
        server_stop_ = true;
      }
    } else if (IsLeaseLost(response.status())) {
      spdlog::warn("{}: progress refused, stopping: {}", Describe(ref_),
                   response.status().ToString());
      server_stop_ = true;
    } else if (!transient_logged_) {
      // Keep training; the points go with the next report.
      spdlog::warn("{}: progress not delivered, will resend: {}", Describe(ref_),
                   response.status().ToString());
      transient_logged_ = true;
    }
    return !ShouldStop();
  }

  // The checkpoint callback: uploads the state once every point up to `iteration` has been
  // delivered (or with those points); otherwise keeps it for the next chance (a later
  // checkpoint or the release). Like points, a checkpoint less than min_report_interval after
  // the last upload is held: a fast trial would otherwise spend a round trip and a transaction
  // per few evaluations, where resuming from a slightly older checkpoint costs next to nothing.
  void OnCheckpoint(int64_t iteration, std::string state) {
    latest_ = Checkpoint{iteration, std::move(state), false};
    if (ShouldStop()) return;
    const auto now = std::chrono::steady_clock::now();
    if (runner_.min_report_interval_.count() > 0 &&
        now - last_checkpoint_ < runner_.min_report_interval_) {
      return;
    }
    last_checkpoint_ = now;
    if (!points_with_reports_ && !pending_.empty() && !Send().ok()) return;
    // A failure is logged inside; a refusal raises server_stop_, anything else waits.
    (void)UploadLatest();
  }

  // The points not yet delivered, for the CompleteTrial request (points_with_reports only):
  // Flush() is the other way.
  bool points_with_reports() const { return points_with_reports_; }
  std::vector<v1::CurvePoint> TakePending() { return std::exchange(pending_, {}); }

  // Delivers the pending points, retrying transient failures. Errors: Cancelled (shutdown),
  // FailedPrecondition / NotFound (lease lost).
  absl::Status Flush() {
    Backoff backoff(runner_.backoff_);
    while (!pending_.empty()) {
      absl::StatusOr<v1::ReportProgressResponse> response = Send();
      if (response.ok()) break;
      if (!IsTransient(response.status())) return response.status();
      spdlog::debug("{}: resending {} points: {}", Describe(ref_), pending_.size(),
                    response.status().ToString());
      if (!backoff.Wait(*runner_.shutdown_)) return absl::CancelledError("shutting down");
    }
    return absl::OkStatus();
  }

  // Uploads the latest checkpoint if the server does not have it yet, retrying transient
  // failures: the final weights of a trial that keeps them (train.keep_final_checkpoint).
  // Errors: Cancelled (shutdown), FailedPrecondition / NotFound (lease lost).
  absl::Status UploadPending() {
    Backoff backoff(runner_.backoff_);
    while (latest_ && !latest_->uploaded) {
      absl::Status uploaded = UploadLatest();
      if (uploaded.ok()) break;
      if (!IsTransient(uploaded)) return uploaded;
      if (!backoff.Wait(*runner_.shutdown_)) return absl::CancelledError("shutting down");
    }
    return absl::OkStatus();
  }

  // Shutdown: delivers what can be delivered (one try each: the process is about to exit),
  // uploads the latest checkpoint if the server does not have it, and gives the trial back.
  // Errors: the first call that failed (the lease then expires and requeues the trial).
  absl::Status Release() {
    if (points_with_reports_ && latest_ && !latest_->uploaded) {
      // The pending points go with the checkpoint.
      if (absl::Status uploaded = UploadLatest(); !uploaded.ok()) return uploaded;
    }
    if (!pending_.empty()) {
      if (absl::StatusOr<v1::ReportProgressResponse> sent = Send(); !sent.ok()) {
        return sent.status();
      }
    }
    if (latest_ && !latest_->uploaded) {
      if (absl::Status uploaded = UploadLatest(); !uploaded.ok()) return uploaded;
    }
    v1::ReleaseTrialRequest request;
    request.set_worker_id(runner_.worker_id_);
    *request.mutable_ref() = ref_;
    request.set_reason("worker shutting down");
    return runner_.coordinator_->ReleaseTrial(request).status();
  }

  bool ShouldStop() const { return server_stop_.load() || stop_.raised(); }
  bool server_stopped() const { return server_stop_.load(); }
  bool pruned() const { return prune_; }
  const std::vector<v1::CurvePoint>& seen() const { return seen_; }
  std::optional<int64_t> checkpoint_iteration() const {
    if (!latest_) return std::nullopt;
    return latest_->iteration;
  }

 private:
  struct Checkpoint {
    int64_t iteration = 0;
    std::string state;
    bool uploaded = false;
  };

  absl::StatusOr<v1::ReportProgressResponse> Send() {
    v1::ReportProgressRequest request;
    request.set_worker_id(runner_.worker_id_);
    *request.mutable_ref() = ref_;
    for (const v1::CurvePoint& p : pending_) *request.add_points() = p;
    absl::StatusOr<v1::ReportProgressResponse> response =
        runner_.coordinator_->ReportProgress(request);
    if (response.ok()) {
      pending_.clear();
      transient_logged_ = false;
    }
    return response;
  }

  absl::Status UploadLatest() {
    v1::UploadCheckpointRequest request;
    request.set_worker_id(runner_.worker_id_);
    *request.mutable_ref() = ref_;
    request.set_iteration(latest_->iteration);
    request.set_state(latest_->state);
    if (points_with_reports_) {
      for (const v1::CurvePoint& p : pending_) *request.add_points() = p;
    }
    absl::StatusOr<v1::UploadCheckpointResponse> response =
        runner_.coordinator_->UploadCheckpoint(request);
    if (response.ok()) {
      latest_->uploaded = true;
      if (points_with_reports_) {
        pending_.clear();
        transient_logged_ = false;
        if (response->prune()) {
          spdlog::info("{}: pruned by the server at iteration {}", Describe(ref_),
                       latest_->iteration);
          prune_ = true;
          server_stop_ = true;
        } else if (response->stop()) {
          spdlog::info("{}: server asked to stop", Describe(ref_));
          server_stop_ = true;
        }
      }
      spdlog::debug("{}: checkpoint at iteration {} uploaded ({} bytes)", Describe(ref_),
                    latest_->iteration, latest_->state.size());
      return absl::OkStatus();
    }
    if (IsLeaseLost(response.status())) {
      spdlog::warn("{}: checkpoint refused, stopping: {}", Describe(ref_),
                   response.status().ToString());
      server_stop_ = true;
    } else {
      spdlog::debug("{}: checkpoint at iteration {} not delivered: {}", Describe(ref_),
                    latest_->iteration, response.status().ToString());
    }
    return response.status();
  }

  const TrialRunner& runner_;
  const v1::TrialRef ref_;
  const StopFlag& stop_;
  const int64_t resumed_after_;
  const bool points_with_reports_;
  std::vector<v1::CurvePoint> pending_;
  // This attempt's points, for the result of a pruned trial.
  std::vector<v1::CurvePoint> seen_;
  std::optional<Checkpoint> latest_;
  // The lease counts as the last contact: a trial that ends within min_report_interval of it
  // sends its points with the result, and its checkpoint not at all (resuming from scratch
  // repeats no more than that interval of work). One round trip per fast trial.
  std::chrono::steady_clock::time_point last_send_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_checkpoint_ = last_send_;
  std::atomic<bool> server_stop_{false};
  bool prune_ = false;
  bool transient_logged_ = false;
};

TrialRunner::TrialRunner(std::string worker_id, Coordinator* coordinator, DatasetCache* datasets,
                         const ShutdownNotifier* shutdown, TrainFunction train,
                         BackoffOptions backoff, int threads_per_slot,
                         std::chrono::milliseconds min_report_interval)
    : worker_id_(std::move(worker_id)),
      coordinator_(coordinator),
      datasets_(datasets),
      shutdown_(shutdown),
      train_(train ? std::move(train)
                   : TrainFunction([](const v1::TrialConfig& config, const trainer::Dataset& data,
                                      const trainer::ProgressCallback& on_progress,
                                      const trainer::TrainOptions& options) {
                       return trainer::Train(config, data, on_progress, options);
                     })),
      backoff_(backoff),
      threads_per_slot_(std::max(1, threads_per_slot)),
      min_report_interval_(min_report_interval) {}

TrialDisposition TrialRunner::Run(const v1::TrialRef& ref, const v1::TrialConfig& config,
                                  const StopFlag& stop) {
  v1::LeaseTrialResponse lease;
  lease.set_has_trial(true);
  *lease.mutable_ref() = ref;
  *lease.mutable_config() = config;
  return Run(lease, stop);
}

TrialDisposition TrialRunner::Run(const v1::LeaseTrialResponse& lease, const StopFlag& stop,
                                  NextLease* next) {
  const v1::TrialRef& ref = lease.ref();
  const v1::TrialConfig& config = lease.config();
  const auto start = std::chrono::steady_clock::now();
  const bool resumed = !lease.checkpoint().empty();
  spdlog::info("{} started: kind={} dataset={} format={} rounding={} seed={}{}", Describe(ref),
               config.kind().empty() ? "train" : config.kind(), config.dataset().name(),
               config.precision().default_().format(), config.precision().default_().rounding(),
               config.seed(),
               resumed ? " resuming after iteration " + std::to_string(lease.checkpoint_iteration())
                       : std::string());

  Reporter reporter(*this, ref, stop, resumed ? lease.checkpoint_iteration() : -1,
                    lease.accepts_points_with_reports());
  trainer::TrainOptions options;
  options.threads = threads_per_slot_;
  options.checkpoint_every = std::max(0, lease.checkpoint_every());
  options.on_checkpoint = [&reporter](int64_t iteration, std::string state) {
    reporter.OnCheckpoint(iteration, std::move(state));
  };
  options.resume_from = lease.checkpoint();
  options.final_checkpoint = config.train().keep_final_checkpoint();
  options.should_stop = [&reporter] { return reporter.ShouldStop(); };
  const trainer::ProgressCallback on_progress = [&reporter](const v1::CurvePoint& point) {
    return reporter.OnPoint(point);
  };

  absl::StatusOr<v1::TrialResult> result = [&]() -> absl::StatusOr<v1::TrialResult> {
    if (config.kind() == "simulated") {
      return RunSimulatedTrial(
          config, on_progress, options,
          [&stop](std::chrono::milliseconds duration) { return stop.WaitFor(duration); });
    }
    if (!config.kind().empty() && config.kind() != "train") {
      return absl::InvalidArgumentError("kind: unknown trial kind \"" + config.kind() +
                                        "\" (train | simulated)");
    }
    absl::StatusOr<DatasetPtr> dataset = datasets_->Get(config.dataset().name());
    if (!dataset.ok()) return dataset.status();
    return train_(config, **dataset, on_progress, options);
  }();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  v1::CompleteTrialRequest request;
  request.set_worker_id(worker_id_);
  *request.mutable_ref() = ref;
  TrialDisposition disposition = TrialDisposition::kCompleted;
  if (reporter.pruned()) {
    // Pruning is a result: keep what the trial has, finished or not.
    if (result.ok()) {
      result->set_outcome(v1::TRIAL_OUTCOME_PRUNED);
    } else {
      result = PrunedResult(config, reporter.seen());
    }
  } else if (result.status().code() == absl::StatusCode::kCancelled || reporter.server_stopped()) {
    // Stopped on purpose. The server has moved on (cancelled or re-leased): report nothing.
    // Shutting down: give the trial back, so that it resumes elsewhere from its checkpoint
    // without waiting for the lease. A trial that finished anyway, with no word from the
    // server against it, is still reported below.
    if (!reporter.server_stopped() && shutdown_->IsShutdown()) {
      const absl::Status released = reporter.Release();
      if (released.ok()) {
        spdlog::info("{} released after {:.1f}s (checkpoint {})", Describe(ref), seconds,
                     reporter.checkpoint_iteration()
                         ? "at iteration " + std::to_string(*reporter.checkpoint_iteration())
                         : std::string("none"));
        return TrialDisposition::kReleased;
      }
      spdlog::warn("{} could not be released (its lease will expire): {}", Describe(ref),
                   released.ToString());
    }
    spdlog::info("{} stopped after {:.1f}s", Describe(ref), seconds);
    return TrialDisposition::kStopped;
  }

  if (result.ok()) {
    if (!reporter.points_with_reports()) {
      absl::Status flushed = reporter.Flush();
      if (!flushed.ok()) {
        spdlog::warn("{} finished but its curve was not delivered: {}", Describe(ref),
                     flushed.ToString());
        return TrialDisposition::kUnreported;
      }
    }
    if (config.train().keep_final_checkpoint()) {
      // Before the completion: the server keeps a finished trial's checkpoint but accepts
      // uploads only while it runs. Never held back like periodic checkpoints (with points
      // riding on checkpoints, the points up to it go along).
      if (absl::Status uploaded = reporter.UploadPending(); !uploaded.ok()) {
        spdlog::warn("{} finished but its final checkpoint was not delivered: {}", Describe(ref),
                     uploaded.ToString());
        return TrialDisposition::kUnreported;
      }
    }
    // The last points go with the result: one round trip and one transaction.
    for (v1::CurvePoint& point : reporter.TakePending()) *request.add_points() = std::move(point);
    *request.mutable_result() = *result;
  } else {
    // The trial is bad, not the worker: report it and keep serving.
    request.set_error(std::string(result.status().message()));
    disposition = TrialDisposition::kFailed;
  }

  if (next != nullptr && next->ask && next->ask()) {
    next->asked = true;
    request.set_lease_next_incarnation(next->incarnation);
  }
  if (absl::Status completed = Complete(request, next); !completed.ok()) {
    spdlog::warn("{} finished but the server did not take the report: {}", Describe(ref),
                 completed.ToString());
    return TrialDisposition::kUnreported;
  }

  if (disposition == TrialDisposition::kCompleted) {
    spdlog::info("{} finished in {:.1f}s: test accuracy {:.4f} (best {:.4f}), {} iterations{}",
                 Describe(ref), seconds, result->final_test_accuracy(),
                 result->best_test_accuracy(), result->iterations(),
                 reporter.pruned() ? " (pruned)" : "");
  } else {
    spdlog::warn("{} failed after {:.1f}s: {}", Describe(ref), seconds, result.status().ToString());
  }
  return disposition;
}

absl::Status TrialRunner::Complete(const v1::CompleteTrialRequest& request, NextLease* next) const {
  Backoff backoff(backoff_);
  while (true) {
    absl::StatusOr<v1::CompleteTrialResponse> response = coordinator_->CompleteTrial(request);
    if (response.ok()) {
      // An older server answers no `next`: the slot leases with LeaseTrial.
      if (next != nullptr && !request.lease_next_incarnation().empty() && response->has_next()) {
        next->lease = std::move(*response->mutable_next());
      }
      return absl::OkStatus();
    }
    spdlog::debug("{}: retrying CompleteTrial: {}", Describe(request.ref()),
                  response.status().ToString());
    if (!IsTransient(response.status()) || !backoff.Wait(*shutdown_)) return response.status();
  }
}

}  // namespace bitsweep::worker
