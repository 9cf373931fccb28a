#include "server/worker_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "common/grpc_status.h"

namespace bitsweep::server {
namespace {

using common::ToGrpcStatus;

// Bounded waits so a long poll notices client cancellation and shutdown.
constexpr std::chrono::milliseconds kPollSlice{1000};

}  // namespace

void WorkerService::FillLease(LeasedTrial trial, v1::LeaseTrialResponse* response) const {
  response->set_has_trial(true);
  response->mutable_ref()->set_trial_id(trial.trial_id);
  response->mutable_ref()->set_attempt(trial.attempt);
  *response->mutable_config() = std::move(trial.config);
  response->set_checkpoint(std::move(trial.checkpoint));
  response->set_checkpoint_iteration(trial.checkpoint_iteration);
  response->set_checkpoint_every(scheduler_->options().checkpoint_every);
  response->set_accepts_points_with_reports(true);
}

WorkerService::WorkerService(TrialStore* store, Scheduler* scheduler, const AuthPolicy* auth)
    : store_(store), scheduler_(scheduler), auth_(auth) {}

grpc::Status WorkerService::RegisterWorker(grpc::ServerContext* context,
                                           const v1::RegisterWorkerRequest* request,
                                           v1::RegisterWorkerResponse* response) {
  if (grpc::Status denied =
          AuthorizeCall(auth_, *context, "/bitsweep.v1.WorkerService/RegisterWorker");
      !denied.ok()) {
    return denied;
  }
  absl::StatusOr<std::vector<v1::TrialRef>> stop = scheduler_->RegisterWorker(
      {request->worker_id(), request->incarnation(), request->host(), request->slots(),
       std::vector<v1::TrialRef>(request->running().begin(), request->running().end())});
  if (!stop.ok()) return ToGrpcStatus(stop.status());
  spdlog::info("worker '{}' registered (incarnation {}, host {}, {} slots, {} re-attached)",
               request->worker_id(), request->incarnation(), request->host(), request->slots(),
               request->running_size() - static_cast<int>(stop->size()));
  for (v1::TrialRef& ref : *stop) *response->add_stop() = std::move(ref);
  response->set_lease_timeout_ms(scheduler_->options().lease_timeout_ms);
  response->set_heartbeat_interval_ms(scheduler_->heartbeat_interval_ms());
  return grpc::Status::OK;
}

grpc::Status WorkerService::LeaseTrial(grpc::ServerContext* context,
                                       const v1::LeaseTrialRequest* request,
                                       v1::LeaseTrialResponse* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.WorkerService/LeaseTrial");
      !denied.ok()) {
    return denied;
  }
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::clamp<int64_t>(
                                           request->wait_ms(), 0, kMaxLeaseWaitMs));
  ChangeNotifier& changes = store_->changes();
  bool first_try = true;  // the first try also checks registration and expires leases
  while (true) {
    // Hand out nothing while shutting down: the reply might never reach the worker.
    if (changes.is_shut_down()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down");
    }
    // Read the version before trying: a trial queued in between wakes the wait below.
    uint64_t version = changes.version();
    // After the first try, most wake-ups are unrelated (curve points): check with a cheap
    // read before taking the write lock. The reaper expires lost leases meanwhile.
    bool worth_trying = first_try;
    if (!first_try) {
      absl::StatusOr<bool> queued = store_->HasQueuedTrials();
      if (!queued.ok()) return ToGrpcStatus(queued.status());
      worth_trying = *queued;
    }
    first_try = false;
    absl::StatusOr<std::optional<LeasedTrial>> leased = std::optional<LeasedTrial>();
    if (worth_trying) leased = scheduler_->LeaseTrial(request->worker_id(), request->incarnation());
    if (!leased.ok()) return ToGrpcStatus(leased.status());
    if (leased->has_value()) {
      spdlog::debug("trial {} attempt {} leased to '{}'", (*leased)->trial_id, (*leased)->attempt,
                    request->worker_id());
      FillLease(**std::move(leased), response);
      return grpc::Status::OK;
    }
    auto now = Clock::now();
    if (now >= deadline || context->IsCancelled()) {
      response->set_has_trial(false);
      return grpc::Status::OK;
    }
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    // One waiter per change, not all of them: with every slot idle, a new trial would
    // otherwise cost one store read and one lease transaction per waiting slot.
    changes.WaitForTurn(version, std::min(remaining + std::chrono::milliseconds(1), kPollSlice));
  }
}

grpc::Status WorkerService::Heartbeat(grpc::ServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) {
  if (grpc::Status denied = AuthorizeCall(auth_, *context, "/bitsweep.v1.WorkerService/Heartbeat");
      !denied.ok()) {
    return denied;
  }
  std::vector<v1::TrialRef> running(request->running().begin(), request->running().end());
  absl::StatusOr<std::vector<v1::TrialRef>> stop =
      scheduler_->Heartbeat(request->worker_id(), request->incarnation(), running);
  if (!stop.ok()) return ToGrpcStatus(stop.status());
  for (v1::TrialRef& ref : *stop) *response->add_stop() = std::move(ref);
  return grpc::Status::OK;
}

grpc::Status WorkerService::ReportProgress(grpc::ServerContext* context,
                                           const v1::ReportProgressRequest* request,
                                           v1::ReportProgressResponse* response) {
  if (grpc::Status denied =
          AuthorizeCall(auth_, *context, "/bitsweep.v1.WorkerService/ReportProgress");
      !denied.ok()) {
    return denied;
  }
  std::vector<v1::CurvePoint> points(request->points().begin(), request->points().end());
  absl::StatusOr<ProgressVerdict> verdict =
      scheduler_->ReportProgress(request->worker_id(), request->ref(), points);
  if (!verdict.ok()) return ToGrpcStatus(verdict.status());
  response->set_stop(verdict->stop);
  response->set_prune(verdict->prune);
  return grpc::Status::OK;
}

grpc::Status WorkerService::CompleteTrial(grpc::ServerContext* context,
                                          const v1::CompleteTrialRequest* request,
                                          v1::CompleteTrialResponse* response) {
  if (grpc::Status denied =
          AuthorizeCall(auth_, *context, "/bitsweep.v1.WorkerService/CompleteTrial");
      !denied.ok()) {
    return denied;
  }
  const v1::TrialResult* result = nullptr;
  switch (request->outcome_case()) {
    case v1::CompleteTrialRequest::kResult:
      result = &request->result();
      break;
    case v1::CompleteTrialRequest::kError:
      break;
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "outcome: set result or error");
  }
  const std::string& error = result != nullptr ? std::string() : request->error();
  const std::vector<v1::CurvePoint> points(request->points().begin(), request->points().end());
  if (request->lease_next_incarnation().empty()) {
    absl::Status status =
        scheduler_->CompleteTrial(request->worker_id(), request->ref(), result, error, points);
    if (!status.ok()) return ToGrpcStatus(status);
  } else {
    // Never waits: the completion's answer must not be held back by an empty queue.
    absl::StatusOr<std::optional<LeasedTrial>> next =
        scheduler_->CompleteAndLeaseNext(request->worker_id(), request->ref(), result, error,
                                         points, request->lease_next_incarnation());
    if (!next.ok()) return ToGrpcStatus(next.status());
    v1::LeaseTrialResponse* next_lease = response->mutable_next();
    if (next->has_value()) {
      spdlog::debug("trial {} attempt {} leased to '{}' with a completion", (*next)->trial_id,
                    (*next)->attempt, request->worker_id());
      FillLease(**std::move(next), next_lease);
    } else {
      next_lease->set_has_trial(false);
    }
  }
  if (request->has_error()) {
    spdlog::warn("trial {} attempt {} failed on '{}': {}", request->ref().trial_id(),
                 request->ref().attempt(), request->worker_id(), request->error());
  }
  return grpc::Status::OK;
}

grpc::Status WorkerService::UploadCheckpoint(grpc::ServerContext* context,
                                             const v1::UploadCheckpointRequest* request,
                                             v1::UploadCheckpointResponse* response) {
  if (grpc::Status denied =
          AuthorizeCall(auth_, *context, "/bitsweep.v1.WorkerService/UploadCheckpoint");
      !denied.ok()) {
    return denied;
  }
  const std::vector<v1::CurvePoint> points(request->points().begin(), request->points().end());
  absl::StatusOr<ProgressVerdict> verdict = scheduler_->UploadCheckpoint(
      request->worker_id(), request->ref(), request->iteration(), request->state(), points);
  if (!verdict.ok()) return ToGrpcStatus(verdict.status());
  response->set_stop(verdict->stop);
  response->set_prune(verdict->prune);
  return grpc::Status::OK;
}

grpc::Status WorkerService::ReleaseTrial(grpc::ServerContext* context,
                                         const v1::ReleaseTrialRequest* request,
                                         v1::ReleaseTrialResponse*) {
  if (grpc::Status denied =
          AuthorizeCall(auth_, *context, "/bitsweep.v1.WorkerService/ReleaseTrial");
      !denied.ok()) {
    return denied;
  }
  absl::Status status =
      scheduler_->ReleaseTrial(request->worker_id(), request->ref(), request->reason());
  if (status.ok()) {
    spdlog::info("trial {} attempt {} released by '{}': {}", request->ref().trial_id(),
                 request->ref().attempt(), request->worker_id(), request->reason());
  }
  return ToGrpcStatus(status);
}

}  // namespace bitsweep::server
