#include "worker/trial_runner.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <utility>
#include <vector>

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
  }
  return "?";
}

// Per-run reporting state: the curve points not yet accepted by the server, and whether the
// server wants the trial stopped. Points that fail to send for a transient reason stay pending
// and go with the next point, so a short outage never blocks training.
class TrialRunner::Reporter {
 public:
  Reporter(const TrialRunner& runner, const v1::TrialRef& ref, const StopFlag& stop)
      : runner_(runner), ref_(ref), stop_(stop) {}

  // The progress callback: false stops training.
  bool OnPoint(const v1::CurvePoint& point) {
    pending_.push_back(point);
    if (ShouldStop()) return false;
    absl::StatusOr<v1::ReportProgressResponse> response = Send();
    if (response.ok()) {
      if (response->stop()) {
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

  bool ShouldStop() const { return server_stop_ || stop_.stop.load(); }
  bool server_stopped() const { return server_stop_; }

 private:
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

  const TrialRunner& runner_;
  const v1::TrialRef ref_;
  const StopFlag& stop_;
  std::vector<v1::CurvePoint> pending_;
  bool server_stop_ = false;
  bool transient_logged_ = false;
};

TrialRunner::TrialRunner(std::string worker_id, Coordinator* coordinator, DatasetCache* datasets,
                         const ShutdownNotifier* shutdown, TrainFunction train,
                         BackoffOptions backoff)
    : worker_id_(std::move(worker_id)),
      coordinator_(coordinator),
      datasets_(datasets),
      shutdown_(shutdown),
      train_(train ? std::move(train) : TrainFunction(&trainer::Train)),
      backoff_(backoff) {}

TrialDisposition TrialRunner::Run(const v1::TrialRef& ref, const v1::TrialConfig& config,
                                  const StopFlag& stop) {
  const auto start = std::chrono::steady_clock::now();
  spdlog::info("{} started: dataset={} format={} rounding={} seed={}", Describe(ref),
               config.dataset().name(), config.precision().default_().format(),
               config.precision().default_().rounding(), config.seed());

  Reporter reporter(*this, ref, stop);
  absl::StatusOr<v1::TrialResult> result = [&]() -> absl::StatusOr<v1::TrialResult> {
    absl::StatusOr<DatasetPtr> dataset = datasets_->Get(config.dataset().name());
    if (!dataset.ok()) return dataset.status();
    return train_(config, **dataset,
                  [&reporter](const v1::CurvePoint& point) { return reporter.OnPoint(point); });
  }();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (result.status().code() == absl::StatusCode::kCancelled || reporter.server_stopped()) {
    // Stopped on purpose: the server has already moved on (cancelled or re-leased), or we are
    // shutting down and the lease will expire and requeue the trial. A trial that finished
    // anyway, with no word from the server against it, is still reported below.
    spdlog::info("{} stopped after {:.1f}s", Describe(ref), seconds);
    return TrialDisposition::kStopped;
  }

  v1::CompleteTrialRequest request;
  request.set_worker_id(worker_id_);
  *request.mutable_ref() = ref;
  TrialDisposition disposition;
  if (result.ok()) {
    absl::Status flushed = reporter.Flush();
    if (!flushed.ok()) {
      spdlog::warn("{} finished but its curve was not delivered: {}", Describe(ref),
                   flushed.ToString());
      return TrialDisposition::kUnreported;
    }
    *request.mutable_result() = *result;
    disposition = TrialDisposition::kCompleted;
  } else {
    // The trial is bad, not the worker: report it and keep serving.
    request.set_error(std::string(result.status().message()));
    disposition = TrialDisposition::kFailed;
  }

  Backoff backoff(backoff_);
  while (true) {
    absl::StatusOr<v1::CompleteTrialResponse> response = coordinator_->CompleteTrial(request);
    if (response.ok()) break;
    spdlog::debug("{}: retrying CompleteTrial: {}", Describe(ref), response.status().ToString());
    if (!IsTransient(response.status()) || !backoff.Wait(*shutdown_)) {
      spdlog::warn("{} finished but the server did not take the report: {}", Describe(ref),
                   response.status().ToString());
      return TrialDisposition::kUnreported;
    }
  }

  if (disposition == TrialDisposition::kCompleted) {
    spdlog::info("{} finished in {:.1f}s: test accuracy {:.4f} (best {:.4f}), {} iterations",
                 Describe(ref), seconds, result->final_test_accuracy(),
                 result->best_test_accuracy(), result->iterations());
  } else {
    spdlog::warn("{} failed after {:.1f}s: {}", Describe(ref), seconds, result.status().ToString());
  }
  return disposition;
}

}  // namespace bitsweep::worker
