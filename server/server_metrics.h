// ServerMetrics: the counters behind GET /metrics (DESIGN §10), in Prometheus' text exposition
// format 0.0.4. Counters (RPCs, curve points, expired leases) are bumped by the gRPC interceptor
// and the Scheduler as things happen; gauges (trials and sweeps by state, workers) are read
// from the store at scrape time, so they can never drift from the database.
//
// Thread-safe: counters are atomics; the per-method RPC table is guarded by `mu_`.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bitsweep::server {

class TrialStore;
class Scheduler;

// Values read from the store for one scrape.
struct MetricsSnapshot {
  // Trials by state name (queued, running, done, failed, cancelled), summed over all sweeps.
  std::map<std::string, int64_t> trials_by_state;
  // Sweeps by state name (queued, running, done, cancelled).
  std::map<std::string, int64_t> sweeps_by_state;
  int64_t workers_registered = 0;
  int64_t workers_alive = 0;
};

// Reads the snapshot. Errors: those of TrialStore::ListSweeps and Scheduler::ListWorkers.
absl::StatusOr<MetricsSnapshot> ReadMetricsSnapshot(TrialStore* store, Scheduler* scheduler);

class ServerMetrics {
 public:
  // Upper bounds of the RPC latency histogram, in seconds (+Inf is implicit). From 1 ms (a
  // heartbeat) to 10 s (a LeaseTrial long poll that found nothing).
  static constexpr std::array<double, 12> kLatencyBucketsSeconds = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

  ServerMetrics() = default;
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // One finished RPC: `method` as gRPC names it ("/bitsweep.v1.SweepService/GetSweep"),
  // `code` as a status code name ("OK", "NOT_FOUND").
  void RecordRpc(absl::string_view method, absl::string_view code, double seconds);
  void AddCurvePoints(int64_t count) { curve_points_ingested_ += count; }
  void AddExpiredLeases(int64_t count) { leases_expired_ += count; }

  int64_t curve_points_ingested() const { return curve_points_ingested_; }
  int64_t leases_expired() const { return leases_expired_; }
  // Finished RPCs of `method` with any status.
  int64_t rpc_count(absl::string_view method) const;

  // The whole exposition: HELP and TYPE lines, then samples, '\n'-terminated.
  std::string Render(const MetricsSnapshot& snapshot) const;

 private:
  struct RpcStats {
    std::map<std::string, int64_t, std::less<>> count_by_code;
    // Non-cumulative counts per bucket of kLatencyBucketsSeconds, plus one for +Inf.
    std::array<int64_t, kLatencyBucketsSeconds.size() + 1> bucket_counts{};
    double sum_seconds = 0;
    int64_t count = 0;
  };

  std::atomic<int64_t> curve_points_ingested_{0};
  std::atomic<int64_t> leases_expired_{0};
  mutable std::mutex mu_;  // guards rpcs_
  std::map<std::string, RpcStats, std::less<>> rpcs_;
};

// A gRPC server interceptor factory recording every RPC's method, status and latency into
// `metrics` (which must outlive the server). Measures from the call's start to its status.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeRpcMetricsInterceptorFactory(ServerMetrics* metrics);

}  // namespace bitsweep::server
