// The worker's view of the server: the calls of WorkerService as plain functions over the
// proto messages, so that the agent and the trial runner can be tested against a fake without
// gRPC. GrpcCoordinator is the real one.
#pragma once

#include "absl/status/statusor.h"
#include "bitsweep/v1/worker.pb.h"

namespace bitsweep::worker {

class Coordinator {
 public:
  virtual ~Coordinator() = default;

  // Errors: Unavailable / DeadlineExceeded (server unreachable or slow: retry), Cancelled
  // (the worker is shutting down), anything else the server answered.
  virtual absl::StatusOr<v1::RegisterWorkerResponse> RegisterWorker(
      const v1::RegisterWorkerRequest& request) = 0;
  // Long poll: may block up to request.wait_ms. Errors: as above, plus NotFound (worker not
  // registered: register again).
  virtual absl::StatusOr<v1::LeaseTrialResponse> LeaseTrial(
      const v1::LeaseTrialRequest& request) = 0;
  // Errors: as above, plus NotFound (worker not registered: register again).
  virtual absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) = 0;
  // Errors: as above, plus FailedPrecondition (stale attempt or trial not running), NotFound
  // (no such trial).
  virtual absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const v1::ReportProgressRequest& request) = 0;
  // Errors: as ReportProgress.
  virtual absl::StatusOr<v1::CompleteTrialResponse> CompleteTrial(
      const v1::CompleteTrialRequest& request) = 0;

  // Stores the latest checkpoint of a running trial. Errors: as ReportProgress.
  virtual absl::StatusOr<v1::UploadCheckpointResponse> UploadCheckpoint(
      const v1::UploadCheckpointRequest& request) = 0;
  // Gives a running trial back (shutdown): requeued at once from its last checkpoint.
  // Errors: as ReportProgress.
  virtual absl::StatusOr<v1::ReleaseTrialResponse> ReleaseTrial(
      const v1::ReleaseTrialRequest& request) = 0;

  // Shutdown: RegisterWorker, LeaseTrial and Heartbeat calls in flight return Cancelled at once,
  // and so do later ones. Reports still go through so that a finished result is not lost.
  virtual void CancelAll() = 0;
};

}  // namespace bitsweep::worker
