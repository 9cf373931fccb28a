// Server: the coordinator process in one object, owning the store, scheduler, lease reaper,
// gRPC services and HTTP server. main() and the in-process tests both use it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "common/clock.h"
#include "server/auth_policy.h"
#include "server/http_server.h"
#include "server/lease_reaper.h"
#include "server/scheduler.h"
#include "server/server_metrics.h"
#include "server/sweep_expander.h"
#include "server/sweep_service.h"
#include "server/trial_store.h"
#include "server/worker_service.h"

namespace bitsweep::server {

struct ServerOptions {
  // host:port for gRPC; port 0 picks a free port (see Server::grpc_port()).
  std::string grpc_address = "127.0.0.1:50051";
  // host:port for the dashboard and JSON API; port 0 picks a free port. Empty: no HTTP.
  std::string http_address = "127.0.0.1:8080";
  // The SQLite database file (created if missing; its directory must exist).
  std::string db_path = "var/bitsweep.db";
  int64_t lease_timeout_ms = 15'000;
  int max_attempts = 3;
  // Workers upload a trainer checkpoint every this many evaluations (0: never).
  int32_t checkpoint_every = 5;
  int64_t max_trials = 100'000;
  // How often the background pass requeues trials of vanished workers.
  int64_t expiry_interval_ms = 1'000;
  // Largest gRPC message accepted (big sweeps' specs and ListTrials replies).
  int max_message_bytes = 64 << 20;
  // Time source for leases; null means the system clock. Must outlive the server.
  const common::Clock* clock = nullptr;
  // Largest curve one trial may store (TrialStore::AppendPoints).
  int64_t max_curve_points_per_trial = TrialStore::kDefaultMaxCurvePointsPerTrial;
  // Open WatchSweep streams per client host (each holds a server thread while open).
  int max_watch_streams_per_peer = PeerStreamLimiter::kDefaultMaxPerPeer;
  // Bearer tokens of the two roles (see AuthPolicy); empty: that role is not checked.
  std::string worker_token;
  std::string client_token;
  // Allows a non-loopback address without both tokens (see CheckExposure).
  bool insecure_no_auth = false;
  // PEM files: with a certificate and key, gRPC and HTTP serve TLS only; with a client CA
  // as well, gRPC requires and verifies client certificates (mutual TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
};

class Server {
 public:
  Server();
  // Shuts down if still running.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Opens the database, binds gRPC and HTTP and starts serving.
  // Errors: InvalidArgument (bad option or address), Unavailable (cannot open the database
  // or bind a port), Internal/FailedPrecondition (migrations), FailedPrecondition (started
  // twice). On error nothing is left running.
  absl::Status Start(const ServerOptions& options);

  // The bound ports, after a successful Start.
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }

  // Stops accepting, ends long polls and watch streams, finishes calls in flight, stops the
  // reaper and closes the database. Idempotent.
  void Shutdown();

  // For tests: the store and scheduler while running.
  TrialStore* store() { return store_.get(); }
  Scheduler* scheduler() { return scheduler_.get(); }
  // Counters behind GET /metrics; they live as long as the Server object.
  const ServerMetrics& metrics() const { return metrics_; }

 private:
  std::mutex mu_;  // guards start/shutdown transitions
  bool started_ = false;
  int grpc_port_ = 0;
  ServerMetrics metrics_;
  std::unique_ptr<TrialStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SweepExpander> expander_;
  std::unique_ptr<AuthPolicy> auth_policy_;
  std::unique_ptr<SweepService> sweep_service_;
  std::unique_ptr<WorkerService> worker_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<LeaseReaper> reaper_;
};

// Splits "host:port" ("[::1]:80" for IPv6). Errors: InvalidArgument.
absl::Status ParseHostPort(const std::string& address, std::string* host, int* port);

}  // namespace bitsweep::server
