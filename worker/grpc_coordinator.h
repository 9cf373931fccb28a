// Coordinator over a gRPC channel to WorkerService: per-call deadlines, grpc::Status converted
// to absl::Status at this edge, and in-flight calls cancellable for a prompt shutdown.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "bitsweep/v1/worker.grpc.pb.h"
#include "common/channel_security.h"
#include "worker/coordinator.h"

namespace bitsweep::worker {

class GrpcCoordinator final : public Coordinator {
 public:
  // `call_timeout` bounds every call; LeaseTrial gets its wait_ms on top. `token`, if not
  // empty, is sent as a bearer token on every call.
  explicit GrpcCoordinator(std::shared_ptr<grpc::Channel> channel,
                           std::chrono::milliseconds call_timeout = std::chrono::seconds(10),
                           std::string token = "");
  // Over MakeChannel(address, credentials of `security`), sending its token.
  // Errors: as common::MakeChannelCredentials (unreadable TLS files).
  static absl::StatusOr<std::unique_ptr<GrpcCoordinator>> Connect(
      const std::string& address, const common::ChannelSecurity& security = {});
  // A channel to `address` (host:port) that reconnects within about a second of the server
  // coming back; plaintext unless `credentials` says otherwise.
  static std::shared_ptr<grpc::Channel> MakeChannel(
      const std::string& address,
      std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials());
  GrpcCoordinator(const GrpcCoordinator&) = delete;
  GrpcCoordinator& operator=(const GrpcCoordinator&) = delete;

  absl::StatusOr<v1::RegisterWorkerResponse> RegisterWorker(
      const v1::RegisterWorkerRequest& request) override;
  absl::StatusOr<v1::LeaseTrialResponse> LeaseTrial(const v1::LeaseTrialRequest& request) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) override;
  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const v1::ReportProgressRequest& request) override;
  absl::StatusOr<v1::CompleteTrialResponse> CompleteTrial(
      const v1::CompleteTrialRequest& request) override;
  absl::StatusOr<v1::UploadCheckpointResponse> UploadCheckpoint(
      const v1::UploadCheckpointRequest& request) override;
  absl::StatusOr<v1::ReleaseTrialResponse> ReleaseTrial(
      const v1::ReleaseTrialRequest& request) override;

  // Cancels through each call's ClientContext; reports keep their deadline.
  void CancelAll() override;

 private:
  enum class CallKind {
    kControl,   // Register, lease, heartbeat: wait for the server; cancelled on shutdown.
    kProgress,  // A curve point: fail fast, so training never waits for the server.
    kResult,    // A result, checkpoint or release: wait for the server within the deadline;
                // not cancelled (shutdown relies on them).
  };
  // Runs one unary call with a deadline `extra` beyond the call timeout.
  template <typename Response, typename Call>
  absl::StatusOr<Response> Invoke(std::chrono::milliseconds extra, CallKind kind, Call&& call);

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  const std::chrono::milliseconds call_timeout_;
  const std::string token_;  // bearer token; empty: none

  std::mutex mu_;
  std::set<grpc::ClientContext*> in_flight_;  // Guarded by mu_.
  bool cancelled_ = false;                    // Guarded by mu_.
};

}  // namespace bitsweep::worker
