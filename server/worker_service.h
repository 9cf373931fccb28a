// WorkerService: the worker-side gRPC API (proto/bitsweep/v1/worker.proto). Converts protos
// and calls the Scheduler; LeaseTrial long-polls on the store's change notifier.
#pragma once

#include <grpcpp/grpcpp.h>

#include "bitsweep/v1/worker.grpc.pb.h"
#include "server/auth_policy.h"
#include "server/scheduler.h"
#include "server/trial_store.h"

namespace bitsweep::server {

class WorkerService final : public v1::WorkerService::Service {
 public:
  // Longest LeaseTrial wait, whatever the worker asks for.
  static constexpr int64_t kMaxLeaseWaitMs = 10'000;

  // Both pointers must outlive the service.
  // `auth` (may be null: everything allowed) must outlive the service.
  WorkerService(TrialStore* store, Scheduler* scheduler, const AuthPolicy* auth = nullptr);
  WorkerService(const WorkerService&) = delete;
  WorkerService& operator=(const WorkerService&) = delete;

  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override;
  // Waits up to min(wait_ms, 10 s) for a queued trial; has_trial=false when none came.
  grpc::Status LeaseTrial(grpc::ServerContext* context, const v1::LeaseTrialRequest* request,
                          v1::LeaseTrialResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status ReportProgress(grpc::ServerContext* context,
                              const v1::ReportProgressRequest* request,
                              v1::ReportProgressResponse* response) override;
  // With lease_next_incarnation, also leases the worker's next trial (never waiting) into
  // `next`, in the completion's transaction.
  grpc::Status CompleteTrial(grpc::ServerContext* context, const v1::CompleteTrialRequest* request,
                             v1::CompleteTrialResponse* response) override;
  grpc::Status UploadCheckpoint(grpc::ServerContext* context,
                                const v1::UploadCheckpointRequest* request,
                                v1::UploadCheckpointResponse* response) override;
  grpc::Status ReleaseTrial(grpc::ServerContext* context, const v1::ReleaseTrialRequest* request,
                            v1::ReleaseTrialResponse* response) override;

 private:
  // A leased trial as the worker gets it (LeaseTrial, or `next` of CompleteTrial).
  void FillLease(LeasedTrial trial, v1::LeaseTrialResponse* response) const;

  TrialStore* const store_;
  Scheduler* const scheduler_;
  const AuthPolicy* const auth_;  // may be null
};

}  // namespace bitsweep::server
