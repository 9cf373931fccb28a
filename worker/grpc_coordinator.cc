#include "worker/grpc_coordinator.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "common/grpc_status.h"

namespace bitsweep::worker {

GrpcCoordinator::GrpcCoordinator(std::shared_ptr<grpc::Channel> channel,
                                 std::chrono::milliseconds call_timeout, std::string token)
    : stub_(v1::WorkerService::NewStub(std::move(channel))),
      call_timeout_(call_timeout),
      token_(std::move(token)) {}

absl::StatusOr<std::unique_ptr<GrpcCoordinator>> GrpcCoordinator::Connect(
    const std::string& address, const common::ChannelSecurity& security) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      common::MakeChannelCredentials(security);
  if (!credentials.ok()) return credentials.status();
  return std::make_unique<GrpcCoordinator>(MakeChannel(address, *credentials),
                                           std::chrono::seconds(10), security.token);
}

std::shared_ptr<grpc::Channel> GrpcCoordinator::MakeChannel(
    const std::string& address, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  // Reconnect quickly after a server restart; our own Backoff paces the retries.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Re-resolving "host:port" is what lets a channel in TRANSIENT_FAILURE try again; the
  // default 30 s minimum between resolutions would keep a restarted server unreachable.
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 100);
  return grpc::CreateCustomChannel(address, std::move(credentials), args);
}

template <typename Response, typename Call>
absl::StatusOr<Response> GrpcCoordinator::Invoke(std::chrono::milliseconds extra, CallKind kind,
                                                 Call&& call) {
  const bool cancellable = kind == CallKind::kControl;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + call_timeout_ + extra);
  // A fail-fast call on a channel in TRANSIENT_FAILURE gets the cached connection error until
  // gRPC happens to reconnect (seconds after the server is back). Waiting for the channel,
  // within the deadline, lets the call go through as soon as the server is reachable again.
  context.set_wait_for_ready(kind != CallKind::kProgress);
  common::AddBearerToken(token_, context);
  if (cancellable) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return absl::CancelledError("worker is shutting down");
    in_flight_.insert(&context);
  }
  Response response;
  grpc::Status status = call(&context, &response);
  if (cancellable) {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(&context);
  }
  if (!status.ok()) return common::FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::RegisterWorkerResponse> GrpcCoordinator::RegisterWorker(
    const v1::RegisterWorkerRequest& request) {
  return Invoke<v1::RegisterWorkerResponse>(std::chrono::milliseconds(0), CallKind::kControl,
                                            [&](grpc::ClientContext* context, auto* response) {
                                              return stub_->RegisterWorker(context, request,
                                                                           response);
                                            });
}

absl::StatusOr<v1::LeaseTrialResponse> GrpcCoordinator::LeaseTrial(
    const v1::LeaseTrialRequest& request) {
  return Invoke<v1::LeaseTrialResponse>(std::chrono::milliseconds(request.wait_ms()),
                                        CallKind::kControl,
                                        [&](grpc::ClientContext* context, auto* response) {
                                          return stub_->LeaseTrial(context, request, response);
                                        });
}

absl::StatusOr<v1::HeartbeatResponse> GrpcCoordinator::Heartbeat(
    const v1::HeartbeatRequest& request) {
  return Invoke<v1::HeartbeatResponse>(std::chrono::milliseconds(0), CallKind::kControl,
                                       [&](grpc::ClientContext* context, auto* response) {
                                         return stub_->Heartbeat(context, request, response);
                                       });
}

absl::StatusOr<v1::ReportProgressResponse> GrpcCoordinator::ReportProgress(
    const v1::ReportProgressRequest& request) {
  return Invoke<v1::ReportProgressResponse>(std::chrono::milliseconds(0), CallKind::kProgress,
                                            [&](grpc::ClientContext* context, auto* response) {
                                              return stub_->ReportProgress(context, request,
                                                                           response);
                                            });
}

absl::StatusOr<v1::CompleteTrialResponse> GrpcCoordinator::CompleteTrial(
    const v1::CompleteTrialRequest& request) {
  return Invoke<v1::CompleteTrialResponse>(std::chrono::milliseconds(0), CallKind::kResult,
                                           [&](grpc::ClientContext* context, auto* response) {
                                             return stub_->CompleteTrial(context, request,
                                                                         response);
                                           });
}

absl::StatusOr<v1::UploadCheckpointResponse> GrpcCoordinator::UploadCheckpoint(
    const v1::UploadCheckpointRequest& request) {
  return Invoke<v1::UploadCheckpointResponse>(std::chrono::milliseconds(0), CallKind::kResult,
                                              [&](grpc::ClientContext* context, auto* response) {
                                                return stub_->UploadCheckpoint(context, request,
                                                                               response);
                                              });
}

absl::StatusOr<v1::ReleaseTrialResponse> GrpcCoordinator::ReleaseTrial(
    const v1::ReleaseTrialRequest& request) {
  return Invoke<v1::ReleaseTrialResponse>(std::chrono::milliseconds(0), CallKind::kResult,
                                          [&](grpc::ClientContext* context, auto* response) {
                                            return stub_->ReleaseTrial(context, request, response);
                                          });
}

void GrpcCoordinator::CancelAll() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  for (grpc::ClientContext* context : in_flight_) context->TryCancel();
}

}  // namespace bitsweep::worker
