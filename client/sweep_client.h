// SweepClient: the CLI's connection to bitsweep-server's SweepService.
//
// Every call first makes sure the channel is connected, failing fast when the server cannot be
// reached, then runs with a deadline (except WatchSweep, which lasts as long as the sweep).
// Errors common to every call: Unavailable("cannot reach bitsweep server at ADDR: ...") when
// the server is down or unreachable, or does not answer within the call timeout; otherwise the
// server's own status (InvalidArgument, NotFound, ...), converted from gRPC.
#pragma once

#include <grpcpp/security/credentials.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bitsweep/v1/sweep.grpc.pb.h"

namespace bitsweep::client {

struct SweepClientOptions {
  // host:port of bitsweep-server.
  std::string address = "127.0.0.1:50051";
  // How long to wait for a connection before giving up on an unreachable server.
  absl::Duration connect_timeout = absl::Seconds(3);
  // Deadline of every unary call.
  absl::Duration call_timeout = absl::Seconds(10);
  // Channel credentials (common::MakeChannelCredentials); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr;
  // Bearer token sent on every call; empty: none.
  std::string token = "";
  // Largest reply accepted (a big sweep's ListTrials); matches the server's limit.
  int max_receive_message_bytes = 64 << 20;
};

class SweepClient {
 public:
  // Creates the channel (plaintext unless options.credentials); nothing is connected until the
  // first call.
  explicit SweepClient(SweepClientOptions options);
  SweepClient(const SweepClient&) = delete;
  SweepClient& operator=(const SweepClient&) = delete;

  const std::string& address() const { return options_.address; }

  // With `resume`, a sweep with the same spec is reused: its failed and cancelled trials are
  // requeued and its finished ones kept (response.existing, requeued, reused).
  // Errors: InvalidArgument (the server rejected the spec; the message names the field path).
  absl::StatusOr<v1::SubmitSweepResponse> SubmitSweep(const v1::SweepSpec& spec, bool dry_run,
                                                      bool resume = false);
  // Errors: NotFound (no such sweep).
  absl::StatusOr<v1::Sweep> GetSweep(int64_t sweep_id);
  absl::StatusOr<std::vector<v1::Sweep>> ListSweeps();
  // Errors: NotFound (no such sweep).
  absl::StatusOr<v1::Sweep> CancelSweep(int64_t sweep_id);
  // No new trials of the sweep start until ResumeSweep. Errors: NotFound; FailedPrecondition
  // (the sweep has ended).
  absl::StatusOr<v1::Sweep> PauseSweep(int64_t sweep_id);
  // Errors: NotFound; FailedPrecondition (the sweep is not paused, when the server says so).
  absl::StatusOr<v1::Sweep> ResumeSweep(int64_t sweep_id);
  // Requeues the sweep's failed and/or cancelled trials. Errors: NotFound.
  absl::StatusOr<v1::RerunSweepResponse> RerunSweep(int64_t sweep_id, bool failed, bool cancelled);
  // Cancels one trial (a running one is told to stop). Errors: NotFound (no such trial).
  absl::StatusOr<v1::Trial> CancelTrial(int64_t trial_id);
  // Errors: NotFound (no such sweep).
  absl::StatusOr<std::vector<v1::Trial>> ListTrials(int64_t sweep_id);
  // The trial, with its curve when `include_curve`. Errors: NotFound (no such trial).
  absl::StatusOr<v1::GetTrialResponse> GetTrial(int64_t trial_id, bool include_curve);
  // The trial's stored checkpoint (a DONE trial's final weights when its config set
  // train.keep_final_checkpoint). Errors: NotFound (no such trial, or no checkpoint).
  absl::StatusOr<v1::GetTrialCheckpointResponse> GetTrialCheckpoint(int64_t trial_id);
  // Records `json` (`bitsweep predict --json`'s object) on the sweep; returns its id.
  // Errors: NotFound (no such sweep or source trial), InvalidArgument (not a prediction).
  absl::StatusOr<int64_t> RecordPrediction(int64_t sweep_id, int64_t source_trial_id,
                                           const std::string& source, const std::string& json);
  absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers();

  // Calls `on_event` for every event of the sweep until the server ends the stream (the sweep
  // is done or cancelled). A non-OK status from `on_event` cancels the stream and is returned.
  // Errors: NotFound (no such sweep); Unavailable (server unreachable or gone mid-stream).
  absl::Status WatchSweep(int64_t sweep_id,
                          const std::function<absl::Status(const v1::SweepEvent&)>& on_event);

 private:
  // Waits up to connect_timeout for the channel to be ready. Returns early (OK) when the channel
  // has failed to connect, so that the call which follows reports gRPC's reason at once.
  // Errors: Unavailable (still no connection at the timeout).
  absl::Status AwaitConnection();
  // Sets the call deadline and the bearer token.
  void SetDeadline(grpc::ClientContext& context) const;
  // Converts a call's gRPC status, turning transport failures into "cannot reach ..." errors.
  absl::Status ToStatus(const grpc::Status& status) const;
  // One unary call: connect, deadline and token, then the stub's `method`.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (v1::SweepService::Stub::*method)(grpc::ClientContext*,
                                                                               const Request&,
                                                                               Response*),
                                const Request& request);

  SweepClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SweepService::Stub> stub_;
};

}  // namespace bitsweep::client
