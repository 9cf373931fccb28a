// A server and workers as real child processes on loopback, in a temp dir, for fault tests and
// benchmarks: start, kill -9, restart on the same port and database, and gRPC stubs to both
// services. Every child is reaped when the cluster goes away.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bitsweep/v1/sweep.grpc.pb.h"
#include "bitsweep/v1/worker.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "tests/e2e/child_process.h"

namespace bitsweep::e2e {

// Building SweepSpec.base in code.
google::protobuf::Value Str(const std::string& s);
google::protobuf::Value Num(double d);
google::protobuf::Value List(std::initializer_list<google::protobuf::Value> items);
google::protobuf::Value Map(
    std::initializer_list<std::pair<const std::string, google::protobuf::Value>> fields);

// A grid sweep of simulated trials: `trials` seeds of one mask:12 stochastic config (distinct
// trials), `points` points each, `millis_per_point` apart.
v1::SweepSpec SimulatedSweep(const std::string& name, int trials, int points, int millis_per_point,
                             int eval_every = 10);

class Cluster {
 public:
  // Makes a temp dir (kept when `keep_dir` or BITSWEEP_E2E_KEEP is set). Errors: Internal.
  static absl::StatusOr<std::unique_ptr<Cluster>> Create();
  // Stops the workers (SIGTERM, then SIGKILL), then the server; removes the temp dir unless
  // keep_dir() was called or BITSWEEP_E2E_KEEP is set.
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts bitsweep-server on `listen` ("127.0.0.1:0" = any port; a restart passes the old
  // address) with its database in the temp dir and waits for its port file. `wrap` prefixes
  // the command (e.g. `ip netns exec NS`). Errors: DeadlineExceeded, Internal (exited at
  // start-up).
  absl::Status StartServer(const std::vector<std::string>& extra_args = {},
                           const std::string& listen = "127.0.0.1:0",
                           const std::vector<std::string>& wrap = {});
  // kill -9 of the server; waits for it to be reaped.
  void KillServer();
  // SIGTERM; returns its exit code (after SIGKILL if it takes longer than `grace`).
  int StopServer(std::chrono::milliseconds grace = std::chrono::seconds(20));
  ChildProcess* server() { return server_; }

  // Starts bitsweep-worker with `slots` slots against the server. `wrap` prefixes the command
  // (e.g. `ip netns exec NS`) and `server_address` overrides the address it connects to.
  ChildProcess* StartWorker(const std::string& worker_id, int slots = 1,
                            const std::vector<std::string>& extra_args = {},
                            const std::vector<std::string>& wrap = {},
                            const std::string& server_address = "");

  // Fresh stubs over a fresh channel (after a restart).
  void Connect();
  v1::SweepService::Stub& sweeps() { return *sweep_stub_; }
  v1::WorkerService::Stub& workers() { return *worker_stub_; }
  // A context with a deadline that waits for the server to be reachable.
  static std::unique_ptr<grpc::ClientContext> Context(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Submit, get, list through SweepService. Errors: the gRPC status.
  absl::StatusOr<v1::SubmitSweepResponse> Submit(const v1::SweepSpec& spec);
  absl::StatusOr<v1::GetTrialResponse> GetTrial(int64_t trial_id, bool curve = false);
  absl::StatusOr<std::vector<v1::Trial>> ListTrials(int64_t sweep_id);
  absl::StatusOr<v1::Sweep> GetSweep(int64_t sweep_id);
  // Workers the server lists as alive (-1 on error).
  int AliveWorkers();
  // The pids of the worker processes started (running or not).
  std::vector<pid_t> worker_pids() const;

  // Polls `condition` every 20 ms until it holds; false after `timeout`. A condition that
  // fails with an error keeps being polled (the server may be restarting).
  static bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout);
  // Waits until every trial of the sweep is finished (done, failed or cancelled).
  bool WaitSweepFinished(int64_t sweep_id, std::chrono::milliseconds timeout);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path db_path() const { return dir_ / "bitsweep.db"; }
  const std::string& server_address() const { return server_address_; }
  int grpc_port() const { return grpc_port_; }
  // Keep the temp dir and print the stderr of every child (call on failure).
  void DumpLogs();
  // Keep the temp dir.
  void keep_dir() { keep_ = true; }
  // --log-level of the processes started from now on (default: server info, workers debug).
  void set_log_levels(std::string server, std::string worker) {
    server_log_level_ = std::move(server);
    worker_log_level_ = std::move(worker);
  }

 private:
  explicit Cluster(std::filesystem::path dir) : dir_(std::move(dir)) {}
  ChildProcess* Spawn(const std::vector<std::string>& argv, const std::string& label);

  std::filesystem::path dir_;
  bool keep_ = false;
  std::string server_log_level_ = "info";
  std::string worker_log_level_ = "debug";
  int server_starts_ = 0;
  std::list<ChildProcess> children_;  // a list: pointers stay valid
  ChildProcess* server_ = nullptr;
  std::vector<ChildProcess*> workers_;
  int grpc_port_ = 0;
  std::string server_address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SweepService::Stub> sweep_stub_;
  std::unique_ptr<v1::WorkerService::Stub> worker_stub_;
};

}  // namespace bitsweep::e2e
