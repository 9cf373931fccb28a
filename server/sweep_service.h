// SweepService: the client-side gRPC API (proto/bitsweep/v1/sweep.proto). Converts protos and
// calls the expander, store and scheduler; grpc::Status appears only here.
#pragma once

#include <grpcpp/grpcpp.h>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "common/clock.h"
#include "server/auth_policy.h"
#include "server/peer_stream_limiter.h"
#include "server/scheduler.h"
#include "server/sweep_expander.h"
#include "server/trial_store.h"

namespace bitsweep::server {

class SweepService final : public v1::SweepService::Service {
 public:
  // All pointers must outlive the service.
  SweepService(TrialStore* store, Scheduler* scheduler, const SweepExpander* expander,
               const common::Clock* clock, const AuthPolicy* auth = nullptr);
  SweepService(const SweepService&) = delete;
  SweepService& operator=(const SweepService&) = delete;

  grpc::Status SubmitSweep(grpc::ServerContext* context, const v1::SubmitSweepRequest* request,
                           v1::SubmitSweepResponse* response) override;
  grpc::Status GetSweep(grpc::ServerContext* context, const v1::GetSweepRequest* request,
                        v1::Sweep* response) override;
  grpc::Status ListSweeps(grpc::ServerContext* context, const v1::ListSweepsRequest* request,
                          v1::ListSweepsResponse* response) override;
  grpc::Status CancelSweep(grpc::ServerContext* context, const v1::CancelSweepRequest* request,
                           v1::Sweep* response) override;
  // First event: the sweep and all its trials; then one per change; ends after the event
  // showing DONE or CANCELLED. Trials come without their config (use ListTrials/GetTrial) so
  // that the first event of a 100,000-trial sweep stays a few MB. Returns CANCELLED if the client
  // goes away, UNAVAILABLE when the server shuts down.
  grpc::Status WatchSweep(grpc::ServerContext* context, const v1::WatchSweepRequest* request,
                          grpc::ServerWriter<v1::SweepEvent>* writer) override;
  grpc::Status ListTrials(grpc::ServerContext* context, const v1::ListTrialsRequest* request,
                          v1::ListTrialsResponse* response) override;
  grpc::Status GetTrial(grpc::ServerContext* context, const v1::GetTrialRequest* request,
                        v1::GetTrialResponse* response) override;
  grpc::Status ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override;
  grpc::Status PauseSweep(grpc::ServerContext* context, const v1::PauseSweepRequest* request,
                          v1::Sweep* response) override;
  grpc::Status ResumeSweep(grpc::ServerContext* context, const v1::ResumeSweepRequest* request,
                           v1::Sweep* response) override;
  grpc::Status RerunSweep(grpc::ServerContext* context, const v1::RerunSweepRequest* request,
                          v1::RerunSweepResponse* response) override;
  grpc::Status CancelTrial(grpc::ServerContext* context, const v1::CancelTrialRequest* request,
                           v1::Trial* response) override;
  grpc::Status GetTrialCheckpoint(grpc::ServerContext* context,
                                  const v1::GetTrialCheckpointRequest* request,
                                  v1::GetTrialCheckpointResponse* response) override;
  grpc::Status RecordPrediction(grpc::ServerContext* context,
                                const v1::RecordPredictionRequest* request,
                                v1::RecordPredictionResponse* response) override;

  // Open WatchSweep streams one peer host may hold (RESOURCE_EXHAUSTED beyond). Set before
  // serving.
  void set_max_watch_streams_per_peer(int limit) { watches_.set_max_per_peer(limit); }

 private:
  TrialStore* const store_;
  Scheduler* const scheduler_;
  const SweepExpander* const expander_;
  const common::Clock* const clock_;
  const AuthPolicy* const auth_;  // may be null
  PeerStreamLimiter watches_{"WatchSweep streams"};
};

}  // namespace bitsweep::server
