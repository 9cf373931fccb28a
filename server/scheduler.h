// Scheduler: the lease policy over the TrialStore (DESIGN §2, §7). Workers register with an
// id and an incarnation, lease trials (fencing token: trial id + attempt), extend them by
// heartbeats and report progress and results. A lease not extended within lease_timeout is
// lost: the trial is requeued, or failed after max_attempts. No gRPC types here.
//
// Thread-safe: its only mutable state is an atomic counter; the store serialises every write.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "server/server_metrics.h"
#include "server/sweep_expander.h"
#include "server/trial_store.h"

namespace bitsweep::server {

struct SchedulerOptions {
  int64_t lease_timeout_ms = 15'000;
  // Leases a trial may lose (worker gone) before it fails.
  int max_attempts = 3;
  // Counts expired leases and ingested curve points; null: not counted. Must outlive the
  // scheduler.
  ServerMetrics* metrics = nullptr;
  // Workers upload a checkpoint every this many evaluations (0: never).
  int32_t checkpoint_every = 5;
  // Plans the probes of bisect sweeps as their groups finish; null: bisect sweeps stop after
  // their first probes. Must outlive the scheduler.
  const SweepExpander* expander = nullptr;
};

struct WorkerRegistration {
  std::string worker_id;
  std::string incarnation;
  std::string host;
  int32_t slots = 1;
  // Trials the worker still runs (reconnect after a server restart).
  std::vector<v1::TrialRef> running = {};
};

class Scheduler {
 public:
  // `store` and `clock` must outlive the scheduler.
  Scheduler(TrialStore* store, const common::Clock* clock, SchedulerOptions options);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const SchedulerOptions& options() const { return options_; }
  // At least three heartbeats per lease (one lost heartbeat does not lose the lease), and at
  // most kMaxHeartbeatIntervalMs apart: a cancel reaches a running worker within a second.
  static constexpr int64_t kMaxHeartbeatIntervalMs = 500;
  int64_t heartbeat_interval_ms() const {
    return std::min(options_.lease_timeout_ms / 3, kMaxHeartbeatIntervalMs);
  }

  // Registers the worker; a new incarnation of a known worker requeues the old one's running
  // trials at once. Of `registration.running`, returns those the worker must stop (not
  // re-attached: see TrialStore::RegisterWorker).
  // Errors: InvalidArgument (empty id or incarnation, slots < 0), Internal.
  absl::StatusOr<std::vector<v1::TrialRef>> RegisterWorker(const WorkerRegistration& registration);

  // Runs an expiry pass, then leases the next queued trial (nullopt when none is queued).
  // Errors: NotFound (worker or incarnation not registered: register again), Internal.
  absl::StatusOr<std::optional<LeasedTrial>> LeaseTrial(const std::string& worker_id,
                                                        const std::string& incarnation);
  // LeaseTrial calls so far (each one write transaction): how tests see wasted wake-ups.
  int64_t lease_attempts() const { return lease_attempts_.load(); }

  // Extends the leases of `running`; returns those the worker must stop.
  // Errors: NotFound (worker not registered), Internal.
  absl::StatusOr<std::vector<v1::TrialRef>> Heartbeat(const std::string& worker_id,
                                                      const std::string& incarnation,
                                                      const std::vector<v1::TrialRef>& running);

  // Stores curve points; says whether the trial must stop (cancelled or pruned).
  // Errors: NotFound (no such trial), FailedPrecondition (stale attempt, not this worker's
  // lease, trial not running), Internal.
  absl::StatusOr<ProgressVerdict> ReportProgress(const std::string& worker_id,
                                                 const v1::TrialRef& ref,
                                                 const std::vector<v1::CurvePoint>& points);

  // Stores the trial's latest checkpoint, with the points up to it not yet reported, in one
  // transaction; answers for those points as ReportProgress. Errors: as ReportProgress,
  // FailedPrecondition for a trial not running, ResourceExhausted (too large).
  absl::StatusOr<ProgressVerdict> UploadCheckpoint(const std::string& worker_id,
                                                   const v1::TrialRef& ref, int64_t iteration,
                                                   const std::string& state,
                                                   const std::vector<v1::CurvePoint>& points = {});

  // Requeues the trial at once without counting against max_attempts. Errors: as
  // ReportProgress.
  absl::Status ReleaseTrial(const std::string& worker_id, const v1::TrialRef& ref,
                            const std::string& reason);

  // Finishes the trial: DONE with `result`, or FAILED with `error` when result is null.
  // Errors: as ReportProgress.
  // `points`: the last curve points, stored with the result.
  absl::Status CompleteTrial(const std::string& worker_id, const v1::TrialRef& ref,
                             const v1::TrialResult* result, const std::string& error,
                             const std::vector<v1::CurvePoint>& points = {});

  // CompleteTrial, then LeaseTrial for the worker's registration `incarnation`, in one
  // transaction (see TrialStore::CompleteAndLease): the next trial, or nullopt when none is
  // queued or the incarnation is not registered (the worker's next LeaseTrial then says so).
  // Errors: as CompleteTrial (then nothing was stored or leased).
  absl::StatusOr<std::optional<LeasedTrial>> CompleteAndLeaseNext(
      const std::string& worker_id, const v1::TrialRef& ref, const v1::TrialResult* result,
      const std::string& error, const std::vector<v1::CurvePoint>& points,
      const std::string& incarnation);

  // Errors: NotFound (no such sweep), Internal.
  absl::StatusOr<v1::Sweep> CancelSweep(int64_t sweep_id);
  // Errors: NotFound, FailedPrecondition (pausing a done or cancelled sweep), Internal.
  absl::StatusOr<v1::Sweep> PauseSweep(int64_t sweep_id);
  absl::StatusOr<v1::Sweep> ResumeSweep(int64_t sweep_id);
  // Returns how many trials were requeued. Errors: NotFound, Internal.
  absl::StatusOr<int> RerunSweep(int64_t sweep_id, bool failed, bool cancelled);
  // Errors: NotFound, Internal.
  absl::StatusOr<v1::Trial> CancelTrial(int64_t trial_id);

  // After a server restart: gives every running trial one full lease period from now, so
  // workers can reconnect and heartbeat before their trials are requeued. Returns how many
  // leases were extended. Errors: Internal.
  absl::StatusOr<int> GraceRunningLeases();

  // Requeues (or fails) running trials whose lease passed. Returns how many.
  // Errors: Internal.
  absl::StatusOr<int> ExpireLeases();

  // Registered workers; alive = heartbeat within the lease timeout. Errors: Internal.
  absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers();

 private:
  TrialStore* const store_;
  const common::Clock* const clock_;
  const SchedulerOptions options_;
  std::atomic<int64_t> lease_attempts_{0};
};

}  // namespace bitsweep::server
