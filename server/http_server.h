// HttpServer: the read-only JSON API and the dashboard (DESIGN §1, §10).
//   GET /healthz                  {"status": "ok"}
//   GET /metrics                  Prometheus text exposition 0.0.4 (see ServerMetrics)
//   GET /api/sweeps               ListSweepsResponse
//   GET /api/sweeps/{id}          Sweep
//   GET /api/sweeps/{id}/trials   ListTrialsResponse (configs and confusion matrices left out)
//   GET /api/sweeps/{id}/analysis `bitsweep analyze --json` (?delta= points, ?axis=)
//   GET /api/sweeps/{id}/predictions  predictions recorded on the sweep (bitsweep predict --record)
//   GET /api/trials/{id}          GetTrialResponse with the curve
//   GET /api/trials/{id}/checkpoint  the trial's checkpoint (application/octet-stream)
//   GET /api/workers              ListWorkersResponse
//   GET /, /app.js, /style.css    the dashboard (web/, embedded at build time)
// and, once AttachDatabase() was called, the dashboard's read model (docs/api.md):
//   GET /api/sweeps/{id}/table    the trial table, columnar, with the swept axes
//   GET /api/sweeps/{id}/groups   seed groups: statistics and mean curves (?metric=)
//   GET /api/sweeps/{id}/curves   every trial's curve of one metric, columnar (?metric=)
//   GET /api/sweeps/{id}/export   the trial table as ?format=csv or json
//   GET /api/sweeps/{id}/events   Server-Sent Events: trial rows, new points, counts
// /api/sweeps and /api/sweeps/{id} then also carry started_unix_ms, elapsed_ms, eta_ms and
// counts.pruned; /api/trials/{id} carries "history"; /api/workers "finished_last_hour".
// Bodies are the protos' JSON mapping with proto field names (int64 values are strings, as
// the mapping says). Errors: {"error": "...", "code": "NOT_FOUND"} with 400 (bad id), 404
// (unknown id or path) or 500.
//
// cpp-httplib because it is Debian-packaged (libcpp-httplib-dev), maintained, and the Debian
// build is compiled with OpenSSL, so HTTPS is one option away.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>

#include "absl/status/status.h"
#include "server/scheduler.h"
#include "server/server_metrics.h"
#include "server/sweep_read_model.h"
#include "server/trial_store.h"

namespace httplib {
class Server;
}

namespace bitsweep::server {

class HttpServer {
 public:
  // The pointers must outlive the server. Without `metrics`, /metrics is 404.
  HttpServer(TrialStore* store, Scheduler* scheduler, const ServerMetrics* metrics = nullptr);
  // Serves HTTPS with the PEM certificate chain and key (the gRPC server's, see
  // ServerOptions::tls_cert_file); an unusable pair makes Start() fail with InvalidArgument.
  HttpServer(TrialStore* store, Scheduler* scheduler, const ServerMetrics* metrics,
             const std::string& tls_cert_file, const std::string& tls_key_file);
  // Stops serving.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Opens the dashboard's own read-only connection to the store's database file (the store
  // must have created it). Call before Start. Errors: Unavailable.
  absl::Status AttachDatabase(const std::string& db_path, const common::Clock* clock);

  // Binds host:port (port 0: any free port) and serves on a background thread.
  // Errors: Unavailable (cannot bind, e.g. the port is in use), FailedPrecondition (started
  // twice).
  absl::Status Start(const std::string& host, int port);

  // The bound port, after Start.
  int port() const { return port_; }

  // Stops accepting, finishes requests in flight and joins; idempotent.
  void Stop();

 private:
  void RegisterRoutes();
  void RegisterDashboardRoutes();
  // GET /api/sweeps/{id}/analysis, from the cache while no trial of the sweep changed.
  absl::StatusOr<std::string> SweepAnalysisJson(int64_t sweep_id, double delta_points,
                                                const std::string& axis);

  TrialStore* const store_;
  Scheduler* const scheduler_;
  const ServerMetrics* const metrics_;
  std::unique_ptr<SweepReadModel> read_model_;
  std::atomic<bool> stopping_{false};  // ends event streams
  std::atomic<int> event_streams_{0};
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};  // set by thread_ when the accept loop ends
  int port_ = 0;

  // The analysis of a 10,000-trial sweep takes ~0.3 s (grouping, bootstrap); the dashboard asks
  // again on every finished trial. Kept per (sweep, delta, axis) with the sweep's last trial
  // change_seq, and recomputed only when a trial of the sweep changed since.
  struct CachedAnalysis {
    int64_t change_seq = 0;
    std::string json;
  };
  std::mutex analysis_mu_;
  std::map<std::tuple<int64_t, double, std::string>, CachedAnalysis> analysis_cache_;
};

}  // namespace bitsweep::server
