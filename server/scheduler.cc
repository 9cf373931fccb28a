#include "server/scheduler.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace bitsweep::server {

Scheduler::Scheduler(TrialStore* store, const common::Clock* clock, SchedulerOptions options)
    : store_(store), clock_(clock), options_(options) {
  if (options_.expander != nullptr) {
    const SweepExpander* expander = options_.expander;
    store_->set_follow_up_planner(
        [expander](const v1::SweepSpec& spec, const std::vector<v1::Trial>& trials) {
          return expander->NextBisectTrials(spec, trials);
        });
  }
}

absl::StatusOr<std::vector<v1::TrialRef>> Scheduler::RegisterWorker(
    const WorkerRegistration& registration) {
  if (registration.worker_id.empty()) {
    return absl::InvalidArgumentError("worker_id: must not be empty");
  }
  if (registration.incarnation.empty()) {
    return absl::InvalidArgumentError("incarnation: must not be empty");
  }
  if (registration.slots < 0) return absl::InvalidArgumentError("slots: must not be negative");
  const int64_t now = clock_->NowUnixMs();
  ASSIGN_OR_RETURN(
      TrialStore::Registered registered,
      store_->RegisterWorker(registration.worker_id, registration.incarnation, registration.host,
                             registration.slots, now, options_.max_attempts, registration.running,
                             now + options_.lease_timeout_ms));
  return std::move(registered.stop);
}

absl::StatusOr<std::optional<LeasedTrial>> Scheduler::LeaseTrial(const std::string& worker_id,
                                                                 const std::string& incarnation) {
  // Expire first: a trial lost by a dead worker goes to the next worker asking. One
  // transaction for the expiry, the sign of life and the lease.
  ++lease_attempts_;
  const int64_t now = clock_->NowUnixMs();
  ASSIGN_OR_RETURN(
      TrialStore::LeaseOutcome outcome,
      store_->ExpireTouchAndLease(worker_id, incarnation, now, now + options_.lease_timeout_ms,
                                  options_.max_attempts));
  if (options_.metrics != nullptr) options_.metrics->AddExpiredLeases(outcome.expired);
  return std::move(outcome.trial);
}

absl::StatusOr<std::vector<v1::TrialRef>> Scheduler::Heartbeat(
    const std::string& worker_id, const std::string& incarnation,
    const std::vector<v1::TrialRef>& running) {
  int64_t now = clock_->NowUnixMs();
  return store_->Heartbeat(worker_id, incarnation, running, now, now + options_.lease_timeout_ms);
}

absl::StatusOr<ProgressVerdict> Scheduler::ReportProgress(
    const std::string& worker_id, const v1::TrialRef& ref,
    const std::vector<v1::CurvePoint>& points) {
  ASSIGN_OR_RETURN(ProgressVerdict verdict, store_->AppendPoints(worker_id, ref, points));
  // A cancelled trial's points are dropped, not stored (a pruned trial's are stored).
  if (options_.metrics != nullptr && (!verdict.stop || verdict.prune)) {
    options_.metrics->AddCurvePoints(static_cast<int64_t>(points.size()));
  }
  return verdict;
}

absl::StatusOr<ProgressVerdict> Scheduler::UploadCheckpoint(
    const std::string& worker_id, const v1::TrialRef& ref, int64_t iteration,
    const std::string& state, const std::vector<v1::CurvePoint>& points) {
  ASSIGN_OR_RETURN(
      ProgressVerdict verdict,
      store_->StoreCheckpoint(worker_id, ref, iteration, state, clock_->NowUnixMs(), points));
  if (options_.metrics != nullptr) {
    options_.metrics->AddCurvePoints(static_cast<int64_t>(points.size()));
  }
  return verdict;
}

absl::Status Scheduler::ReleaseTrial(const std::string& worker_id, const v1::TrialRef& ref,
                                     const std::string& reason) {
  return store_->ReleaseTrial(worker_id, ref, reason, clock_->NowUnixMs());
}

absl::Status Scheduler::CompleteTrial(const std::string& worker_id, const v1::TrialRef& ref,
                                      const v1::TrialResult* result, const std::string& error,
                                      const std::vector<v1::CurvePoint>& points) {
  RETURN_IF_ERROR(
      store_->CompleteTrial(worker_id, ref, result, error, clock_->NowUnixMs(), points));
  // Counted even when the trial was cancelled meanwhile (its points then dropped): rare.
  if (options_.metrics != nullptr) {
    options_.metrics->AddCurvePoints(static_cast<int64_t>(points.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<LeasedTrial>> Scheduler::CompleteAndLeaseNext(
    const std::string& worker_id, const v1::TrialRef& ref, const v1::TrialResult* result,
    const std::string& error, const std::vector<v1::CurvePoint>& points,
    const std::string& incarnation) {
  ++lease_attempts_;
  const int64_t now = clock_->NowUnixMs();
  ASSIGN_OR_RETURN(
      TrialStore::LeaseOutcome outcome,
      store_->CompleteAndLease(worker_id, ref, result, error, now, points, incarnation,
                               now + options_.lease_timeout_ms, options_.max_attempts));
  if (options_.metrics != nullptr) {
    options_.metrics->AddCurvePoints(static_cast<int64_t>(points.size()));
    options_.metrics->AddExpiredLeases(outcome.expired);
  }
  return std::move(outcome.trial);
}

absl::StatusOr<v1::Sweep> Scheduler::CancelSweep(int64_t sweep_id) {
  RETURN_IF_ERROR(store_->CancelSweep(sweep_id, clock_->NowUnixMs()));
  return store_->GetSweep(sweep_id);
}

absl::StatusOr<v1::Sweep> Scheduler::PauseSweep(int64_t sweep_id) {
  RETURN_IF_ERROR(store_->PauseSweep(sweep_id, clock_->NowUnixMs()));
  return store_->GetSweep(sweep_id);
}

absl::StatusOr<v1::Sweep> Scheduler::ResumeSweep(int64_t sweep_id) {
  RETURN_IF_ERROR(store_->ResumeSweep(sweep_id, clock_->NowUnixMs()));
  return store_->GetSweep(sweep_id);
}

absl::StatusOr<int> Scheduler::RerunSweep(int64_t sweep_id, bool failed, bool cancelled) {
  return store_->RerunSweep(sweep_id, failed, cancelled, clock_->NowUnixMs());
}

absl::StatusOr<v1::Trial> Scheduler::CancelTrial(int64_t trial_id) {
  RETURN_IF_ERROR(store_->CancelTrial(trial_id, clock_->NowUnixMs()));
  return store_->GetTrial(trial_id);
}

absl::StatusOr<int> Scheduler::GraceRunningLeases() {
  return store_->ExtendRunningLeases(clock_->NowUnixMs() + options_.lease_timeout_ms);
}

absl::StatusOr<int> Scheduler::ExpireLeases() {
  ASSIGN_OR_RETURN(int expired, store_->ExpireLeases(clock_->NowUnixMs(), options_.max_attempts));
  if (options_.metrics != nullptr) options_.metrics->AddExpiredLeases(expired);
  return expired;
}

absl::StatusOr<std::vector<v1::WorkerInfo>> Scheduler::ListWorkers() {
  ASSIGN_OR_RETURN(std::vector<v1::WorkerInfo> workers, store_->ListWorkers());
  int64_t now = clock_->NowUnixMs();
  for (v1::WorkerInfo& worker : workers) {
    worker.set_alive(now - worker.last_heartbeat_unix_ms() <= options_.lease_timeout_ms);
  }
  return workers;
}

}  // namespace bitsweep::server
