#include "server/sweep_service.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "common/grpc_status.h"

namespace bitsweep::server {
namespace {

using common::ToGrpcStatus;

// How often a watch re-checks client cancellation and shutdown while nothing changes.
constexpr std::chrono::milliseconds kWatchPollInterval{1000};

bool IsFinal(v1::SweepState state) {
  return state == v1::SWEEP_STATE_DONE || state == v1::SWEEP_STATE_CANCELLED;
}

// What a watcher sees change on the sweep itself (the spec never changes).
bool SameProgress(const v1::Sweep& a, const v1::Sweep& b) {
  return a.state() == b.state() && a.finished_unix_ms() == b.finished_unix_ms() &&
         a.counts().SerializeAsString() == b.counts().SerializeAsString();
}

}  // namespace

SweepService::SweepService(TrialStore* store, Scheduler* scheduler, const SweepExpander* expander,
                           const common::Clock* clock, const AuthPolicy* auth)
    : store_(store), scheduler_(scheduler), expander_(expander), clock_(clock), auth_(auth) {}

grpc::Status SweepService::SubmitSweep(grpc::ServerContext* context,
                                       const v1::SubmitSweepRequest* request,
                                       v1::SubmitSweepResponse* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/SubmitSweep");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<std::vector<PlannedTrial>> trials = expander_->Expand(request->spec());
  if (!trials.ok()) return ToGrpcStatus(trials.status());
  response->set_trial_count(static_cast<int32_t>(trials->size()));
  if (request->dry_run()) return grpc::Status::OK;
  absl::StatusOr<SubmitOutcome> outcome =
      store_->SubmitSweep(request->spec(), *trials, request->resume(), clock_->NowUnixMs());
  if (!outcome.ok()) {
    spdlog::error("storing sweep '{}' failed: {}", request->spec().name(),
                  outcome.status().ToString());
    return ToGrpcStatus(outcome.status());
  }
  response->set_sweep_id(outcome->sweep_id);
  response->set_trial_count(outcome->trial_count);
  response->set_existing(outcome->existing);
  response->set_requeued(outcome->requeued);
  response->set_reused(outcome->reused);
  if (outcome->existing) {
    spdlog::info("sweep {} '{}' resubmitted: {} requeued, {} results reused", outcome->sweep_id,
                 request->spec().name(), outcome->requeued, outcome->reused);
  } else {
    spdlog::info("sweep {} '{}' submitted: {} trials, {} results reused from other sweeps",
                 outcome->sweep_id, request->spec().name(), outcome->trial_count, outcome->reused);
  }
  return grpc::Status::OK;
}

grpc::Status SweepService::GetSweep(grpc::ServerContext* context,
                                    const v1::GetSweepRequest* request, v1::Sweep* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/GetSweep");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<v1::Sweep> sweep = store_->GetSweep(request->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  *response = *std::move(sweep);
  return grpc::Status::OK;
}

grpc::Status SweepService::ListSweeps(grpc::ServerContext* context, const v1::ListSweepsRequest*,
                                      v1::ListSweepsResponse* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/ListSweeps");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<std::vector<v1::Sweep>> sweeps = store_->ListSweeps();
  if (!sweeps.ok()) return ToGrpcStatus(sweeps.status());
  for (v1::Sweep& sweep : *sweeps) *response->add_sweeps() = std::move(sweep);
  return grpc::Status::OK;
}

grpc::Status SweepService::CancelSweep(grpc::ServerContext* context,
                                       const v1::CancelSweepRequest* request, v1::Sweep* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/CancelSweep");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<v1::Sweep> sweep = scheduler_->CancelSweep(request->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  spdlog::info("sweep {} cancelled", request->sweep_id());
  *response = *std::move(sweep);
  return grpc::Status::OK;
}

grpc::Status SweepService::WatchSweep(grpc::ServerContext* context,
                                      const v1::WatchSweepRequest* request,
                                      grpc::ServerWriter<v1::SweepEvent>* writer) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/WatchSweep");
      !denied.ok()) {
    return denied;
  }
  // Each stream holds a server thread until the sweep ends: one peer may not take them all.
  absl::StatusOr<PeerStreamLimiter::Slot> slot = watches_.Acquire(context->peer());
  if (!slot.ok()) return ToGrpcStatus(slot.status());
  ChangeNotifier& changes = store_->changes();
  // Read the version before the data: a change committed in between is noticed next round.
  uint64_t version = changes.version();
  absl::StatusOr<v1::Sweep> sweep = store_->GetSweep(request->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  absl::StatusOr<TrialChanges> trials =
      store_->ListTrialsChangedSince(request->sweep_id(), 0, /*with_config=*/false);
  if (!trials.ok()) return ToGrpcStatus(trials.status());
  int64_t last_seq = trials->last_seq;
  v1::SweepEvent event;
  *event.mutable_sweep() = *sweep;
  for (v1::Trial& trial : trials->trials) *event.add_trials() = std::move(trial);
  if (!writer->Write(event)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  v1::Sweep previous = *std::move(sweep);

  while (!IsFinal(previous.state())) {
    version = changes.WaitForChange(version, kWatchPollInterval);
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    if (changes.is_shut_down()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down");
    }
    sweep = store_->GetSweep(request->sweep_id());
    if (!sweep.ok()) return ToGrpcStatus(sweep.status());
    trials = store_->ListTrialsChangedSince(request->sweep_id(), last_seq, /*with_config=*/false);
    if (!trials.ok()) return ToGrpcStatus(trials.status());
    if (trials->trials.empty() && SameProgress(previous, *sweep)) continue;
    last_seq = trials->last_seq;
    event.Clear();
    *event.mutable_sweep() = *sweep;
    for (v1::Trial& trial : trials->trials) *event.add_trials() = std::move(trial);
    if (!writer->Write(event)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    previous = *std::move(sweep);
  }
  return grpc::Status::OK;
}

grpc::Status SweepService::ListTrials(grpc::ServerContext* context,
                                      const v1::ListTrialsRequest* request,
                                      v1::ListTrialsResponse* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/ListTrials");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<std::vector<v1::Trial>> trials =
      store_->ListTrials(request->sweep_id(), /*with_config=*/true);
  if (!trials.ok()) return ToGrpcStatus(trials.status());
  for (v1::Trial& trial : *trials) *response->add_trials() = std::move(trial);
  return grpc::Status::OK;
}

grpc::Status SweepService::GetTrial(grpc::ServerContext* context,
                                    const v1::GetTrialRequest* request,
                                    v1::GetTrialResponse* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/GetTrial");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<v1::Trial> trial = store_->GetTrial(request->trial_id());
  if (!trial.ok()) return ToGrpcStatus(trial.status());
  *response->mutable_trial() = *std::move(trial);
  if (request->include_curve()) {
    absl::StatusOr<std::vector<v1::CurvePoint>> curve = store_->GetCurve(request->trial_id());
    if (!curve.ok()) return ToGrpcStatus(curve.status());
    for (v1::CurvePoint& point : *curve) *response->add_curve() = std::move(point);
  }
  return grpc::Status::OK;
}

grpc::Status SweepService::ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest*,
                                       v1::ListWorkersResponse* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/ListWorkers");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<std::vector<v1::WorkerInfo>> workers = scheduler_->ListWorkers();
  if (!workers.ok()) return ToGrpcStatus(workers.status());
  for (v1::WorkerInfo& worker : *workers) *response->add_workers() = std::move(worker);
  return grpc::Status::OK;
}

grpc::Status SweepService::PauseSweep(grpc::ServerContext* context,
                                      const v1::PauseSweepRequest* request, v1::Sweep* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/PauseSweep");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<v1::Sweep> sweep = scheduler_->PauseSweep(request->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  spdlog::info("sweep {} paused", request->sweep_id());
  *response = *std::move(sweep);
  return grpc::Status::OK;
}

grpc::Status SweepService::ResumeSweep(grpc::ServerContext* context,
                                       const v1::ResumeSweepRequest* request, v1::Sweep* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/ResumeSweep");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<v1::Sweep> sweep = scheduler_->ResumeSweep(request->sweep_id());
  if (!sweep.ok()) return ToGrpcStatus(sweep.status());
  spdlog::info("sweep {} resumed", request->sweep_id());
  *response = *std::move(sweep);
  return grpc::Status::OK;
}

grpc::Status SweepService::RerunSweep(grpc::ServerContext* context,
                                      const v1::RerunSweepRequest* request,
                                      v1::RerunSweepResponse* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/RerunSweep");
      !denied.ok()) {
    return denied;
  }
  if (!request->failed() && !request->cancelled()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "rerun: choose failed and/or cancelled trials");
  }
  absl::StatusOr<int> requeued =
      scheduler_->RerunSweep(request->sweep_id(), request->failed(), request->cancelled());
  if (!requeued.ok()) return ToGrpcStatus(requeued.status());
  spdlog::info("sweep {}: {} trials requeued", request->sweep_id(), *requeued);
  response->set_requeued(*requeued);
  return grpc::Status::OK;
}

grpc::Status SweepService::CancelTrial(grpc::ServerContext* context,
                                       const v1::CancelTrialRequest* request, v1::Trial* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/CancelTrial");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<v1::Trial> trial = scheduler_->CancelTrial(request->trial_id());
  if (!trial.ok()) return ToGrpcStatus(trial.status());
  spdlog::info("trial {} cancelled", request->trial_id());
  *response = *std::move(trial);
  return grpc::Status::OK;
}

grpc::Status SweepService::GetTrialCheckpoint(grpc::ServerContext* context,
                                              const v1::GetTrialCheckpointRequest* request,
                                              v1::GetTrialCheckpointResponse* response) {
  if (grpc::Status denied =
          AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/GetTrialCheckpoint");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<TrialCheckpoint> checkpoint = store_->GetCheckpoint(request->trial_id());
  if (!checkpoint.ok()) return ToGrpcStatus(checkpoint.status());
  response->set_trial_id(request->trial_id());
  response->set_trial_state(checkpoint->trial_state);
  response->set_attempt(checkpoint->attempt);
  response->set_iteration(checkpoint->iteration);
  response->set_state(std::move(checkpoint->state));
  return grpc::Status::OK;
}

grpc::Status SweepService::RecordPrediction(grpc::ServerContext* context,
                                            const v1::RecordPredictionRequest* request,
                                            v1::RecordPredictionResponse* response) {
  if (grpc::Status denied =
          AuthorizeCall(auth_, *context, "/bitsweep.v1.SweepService/RecordPrediction");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<int64_t> id =
      store_->RecordPrediction(request->sweep_id(), request->source_trial_id(), request->source(),
                               request->json(), clock_->NowUnixMs());
  if (!id.ok()) return ToGrpcStatus(id.status());
  spdlog::info("sweep {}: prediction {} recorded{}", request->sweep_id(), *id,
               request->source().empty() ? "" : " from " + request->source());
  response->set_prediction_id(*id);
  return grpc::Status::OK;
}

}  // namespace bitsweep::server
