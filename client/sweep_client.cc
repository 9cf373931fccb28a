#include "client/sweep_client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/channel_security.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace bitsweep::client {
namespace {

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration timeout) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
}

std::shared_ptr<grpc::Channel> MakeChannel(const SweepClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  return grpc::CreateCustomChannel(
      options.address,
      options.credentials != nullptr ? options.credentials : grpc::InsecureChannelCredentials(),
      args);
}

}  // namespace

SweepClient::SweepClient(SweepClientOptions options)
    : options_(std::move(options)),
      channel_(MakeChannel(options_)),
      stub_(v1::SweepService::NewStub(channel_)) {}

absl::Status SweepClient::AwaitConnection() {
  const auto deadline = DeadlineAfter(options_.connect_timeout);
  grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    // A refused connection shows up as TRANSIENT_FAILURE within milliseconds; waiting out the
    // reconnect backoff would only delay the error.
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      return absl::OkStatus();
    }
    if (!channel_->WaitForStateChange(state, deadline)) {
      return absl::UnavailableError(absl::StrCat("cannot reach bitsweep server at ",
                                                 options_.address, ": no connection within ",
                                                 absl::FormatDuration(options_.connect_timeout)));
    }
    state = channel_->GetState(/*try_to_connect=*/true);
  }
  return absl::OkStatus();
}

void SweepClient::SetDeadline(grpc::ClientContext& context) const {
  context.set_deadline(DeadlineAfter(options_.call_timeout));
  common::AddBearerToken(options_.token, context);
}

absl::Status SweepClient::ToStatus(const grpc::Status& status) const {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(absl::StrCat("cannot reach bitsweep server at ",
                                                 options_.address, ": ", status.error_message()));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::UnavailableError(absl::StrCat("bitsweep server at ", options_.address,
                                                 " did not answer within ",
                                                 absl::FormatDuration(options_.call_timeout)));
    default:
      return common::FromGrpcStatus(status);
  }
}

template <typename Request, typename Response>
absl::StatusOr<Response> SweepClient::Call(
    grpc::Status (v1::SweepService::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    const Request& request) {
  RETURN_IF_ERROR(AwaitConnection());
  grpc::ClientContext context;
  SetDeadline(context);
  Response response;
  RETURN_IF_ERROR(ToStatus((stub_.get()->*method)(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::SubmitSweepResponse> SweepClient::SubmitSweep(const v1::SweepSpec& spec,
                                                                 bool dry_run, bool resume) {
  v1::SubmitSweepRequest request;
  *request.mutable_spec() = spec;
  request.set_dry_run(dry_run);
  request.set_resume(resume);
  return Call(&v1::SweepService::Stub::SubmitSweep, request);
}

absl::StatusOr<v1::Sweep> SweepClient::GetSweep(int64_t sweep_id) {
  v1::GetSweepRequest request;
  request.set_sweep_id(sweep_id);
  return Call(&v1::SweepService::Stub::GetSweep, request);
}

absl::StatusOr<std::vector<v1::Sweep>> SweepClient::ListSweeps() {
  ASSIGN_OR_RETURN(v1::ListSweepsResponse response,
                   Call(&v1::SweepService::Stub::ListSweeps, v1::ListSweepsRequest()));
  return std::vector<v1::Sweep>(response.sweeps().begin(), response.sweeps().end());
}

absl::StatusOr<v1::Sweep> SweepClient::CancelSweep(int64_t sweep_id) {
  v1::CancelSweepRequest request;
  request.set_sweep_id(sweep_id);
  return Call(&v1::SweepService::Stub::CancelSweep, request);
}

absl::StatusOr<v1::Sweep> SweepClient::PauseSweep(int64_t sweep_id) {
  v1::PauseSweepRequest request;
  request.set_sweep_id(sweep_id);
  return Call(&v1::SweepService::Stub::PauseSweep, request);
}

absl::StatusOr<v1::Sweep> SweepClient::ResumeSweep(int64_t sweep_id) {
  v1::ResumeSweepRequest request;
  request.set_sweep_id(sweep_id);
  return Call(&v1::SweepService::Stub::ResumeSweep, request);
}

absl::StatusOr<v1::RerunSweepResponse> SweepClient::RerunSweep(int64_t sweep_id, bool failed,
                                                               bool cancelled) {
  v1::RerunSweepRequest request;
  request.set_sweep_id(sweep_id);
  request.set_failed(failed);
  request.set_cancelled(cancelled);
  return Call(&v1::SweepService::Stub::RerunSweep, request);
}

absl::StatusOr<v1::Trial> SweepClient::CancelTrial(int64_t trial_id) {
  v1::CancelTrialRequest request;
  request.set_trial_id(trial_id);
  return Call(&v1::SweepService::Stub::CancelTrial, request);
}

absl::StatusOr<std::vector<v1::Trial>> SweepClient::ListTrials(int64_t sweep_id) {
  v1::ListTrialsRequest request;
  request.set_sweep_id(sweep_id);
  ASSIGN_OR_RETURN(v1::ListTrialsResponse response,
                   Call(&v1::SweepService::Stub::ListTrials, request));
  return std::vector<v1::Trial>(response.trials().begin(), response.trials().end());
}

absl::StatusOr<v1::GetTrialResponse> SweepClient::GetTrial(int64_t trial_id, bool include_curve) {
  v1::GetTrialRequest request;
  request.set_trial_id(trial_id);
  request.set_include_curve(include_curve);
  return Call(&v1::SweepService::Stub::GetTrial, request);
}

absl::StatusOr<v1::GetTrialCheckpointResponse> SweepClient::GetTrialCheckpoint(int64_t trial_id) {
  v1::GetTrialCheckpointRequest request;
  request.set_trial_id(trial_id);
  return Call(&v1::SweepService::Stub::GetTrialCheckpoint, request);
}

absl::StatusOr<int64_t> SweepClient::RecordPrediction(int64_t sweep_id, int64_t source_trial_id,
                                                      const std::string& source,
                                                      const std::string& json) {
  v1::RecordPredictionRequest request;
  request.set_sweep_id(sweep_id);
  request.set_source_trial_id(source_trial_id);
  request.set_source(source);
  request.set_json(json);
  ASSIGN_OR_RETURN(v1::RecordPredictionResponse response,
                   Call(&v1::SweepService::Stub::RecordPrediction, request));
  return response.prediction_id();
}

absl::StatusOr<std::vector<v1::WorkerInfo>> SweepClient::ListWorkers() {
  ASSIGN_OR_RETURN(v1::ListWorkersResponse response,
                   Call(&v1::SweepService::Stub::ListWorkers, v1::ListWorkersRequest()));
  return std::vector<v1::WorkerInfo>(response.workers().begin(), response.workers().end());
}

absl::Status SweepClient::WatchSweep(
    int64_t sweep_id, const std::function<absl::Status(const v1::SweepEvent&)>& on_event) {
  RETURN_IF_ERROR(AwaitConnection());
  // No deadline: a sweep may run for days.
  grpc::ClientContext context;
  common::AddBearerToken(options_.token, context);
  v1::WatchSweepRequest request;
  request.set_sweep_id(sweep_id);
  std::unique_ptr<grpc::ClientReader<v1::SweepEvent>> reader = stub_->WatchSweep(&context, request);
  v1::SweepEvent event;
  absl::Status callback_status;
  while (reader->Read(&event)) {
    callback_status = on_event(event);
    if (!callback_status.ok()) {
      context.TryCancel();
      break;
    }
  }
  const grpc::Status finish_status = reader->Finish();
  if (!callback_status.ok()) return callback_status;
  return ToStatus(finish_status);
}

}  // namespace bitsweep::client
