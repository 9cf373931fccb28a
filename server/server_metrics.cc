#include "server/server_metrics.h"

#include <chrono>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "proto/state_names.h"
#include "server/scheduler.h"
#include "server/trial_store.h"

namespace bitsweep::server {
namespace {

// Label values escape backslash, double quote and newline (exposition format 0.0.4).
std::string EscapeLabelValue(absl::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        escaped += "\\\\";
        break;
      case '"':
        escaped += "\\\"";
        break;
      case '\n':
        escaped += "\\n";
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

// Prometheus' own spelling of floats: shortest round-trip text, "+Inf" for infinity.
std::string FormatDouble(double value) { return absl::StrCat(value); }

void AppendHeader(std::string* out, absl::string_view name, absl::string_view type,
                  absl::string_view help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(ServerMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
      metrics_->RecordRpc(
          method_, absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
          elapsed.count());
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* const metrics_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
};

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(ServerMetrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcMetricsInterceptor(metrics_, info->method() != nullptr ? info->method() : "");
  }

 private:
  ServerMetrics* const metrics_;
};

// The names the CLI shows too (proto/state_names.h).
std::string SweepStateLabel(v1::SweepState state) { return v1::SweepStateName(state); }

}  // namespace

absl::StatusOr<MetricsSnapshot> ReadMetricsSnapshot(TrialStore* store, Scheduler* scheduler) {
  MetricsSnapshot snapshot;
  // Every state appears, zero or not: a series that vanishes looks like a scrape gap.
  for (const char* state : {"queued", "running", "done", "failed", "cancelled"}) {
    snapshot.trials_by_state[state] = 0;
  }
  for (const char* state : {"queued", "running", "done", "cancelled"}) {
    snapshot.sweeps_by_state[state] = 0;
  }
  ASSIGN_OR_RETURN(std::vector<v1::Sweep> sweeps, store->ListSweeps());
  for (const v1::Sweep& sweep : sweeps) {
    ++snapshot.sweeps_by_state[SweepStateLabel(sweep.state())];
    const v1::TrialCounts& counts = sweep.counts();
    snapshot.trials_by_state["queued"] += counts.queued();
    snapshot.trials_by_state["running"] += counts.running();
    snapshot.trials_by_state["done"] += counts.done();
    snapshot.trials_by_state["failed"] += counts.failed();
    snapshot.trials_by_state["cancelled"] += counts.cancelled();
  }
  ASSIGN_OR_RETURN(std::vector<v1::WorkerInfo> workers, scheduler->ListWorkers());
  snapshot.workers_registered = static_cast<int64_t>(workers.size());
  for (const v1::WorkerInfo& worker : workers) snapshot.workers_alive += worker.alive() ? 1 : 0;
  return snapshot;
}

void ServerMetrics::RecordRpc(absl::string_view method, absl::string_view code, double seconds) {
  size_t bucket = 0;
  while (bucket < kLatencyBucketsSeconds.size() && seconds > kLatencyBucketsSeconds[bucket]) {
    ++bucket;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rpcs_.find(method);
  if (it == rpcs_.end()) it = rpcs_.emplace(std::string(method), RpcStats()).first;
  RpcStats& stats = it->second;
  auto code_it = stats.count_by_code.find(code);
  if (code_it == stats.count_by_code.end()) {
    code_it = stats.count_by_code.emplace(std::string(code), 0).first;
  }
  ++code_it->second;
  ++stats.bucket_counts[bucket];
  stats.sum_seconds += seconds;
  ++stats.count;
}

int64_t ServerMetrics::rpc_count(absl::string_view method) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rpcs_.find(method);
  return it == rpcs_.end() ? 0 : it->second.count;
}

std::string ServerMetrics::Render(const MetricsSnapshot& snapshot) const {
  std::string out;
  AppendHeader(&out, "bitsweep_trials", "gauge", "Trials by state, over all sweeps.");
  for (const auto& [state, count] : snapshot.trials_by_state) {
    absl::StrAppend(&out, "bitsweep_trials{state=\"", EscapeLabelValue(state), "\"} ", count, "\n");
  }
  AppendHeader(&out, "bitsweep_queue_depth", "gauge", "Trials queued and waiting for a worker.");
  auto queued = snapshot.trials_by_state.find("queued");
  absl::StrAppend(&out, "bitsweep_queue_depth ",
                  queued == snapshot.trials_by_state.end() ? 0 : queued->second, "\n");
  AppendHeader(&out, "bitsweep_sweeps", "gauge", "Sweeps by state.");
  for (const auto& [state, count] : snapshot.sweeps_by_state) {
    absl::StrAppend(&out, "bitsweep_sweeps{state=\"", EscapeLabelValue(state), "\"} ", count, "\n");
  }
  AppendHeader(&out, "bitsweep_workers_registered", "gauge", "Workers ever registered.");
  absl::StrAppend(&out, "bitsweep_workers_registered ", snapshot.workers_registered, "\n");
  AppendHeader(&out, "bitsweep_workers_alive", "gauge",
               "Workers with a heartbeat within the lease timeout.");
  absl::StrAppend(&out, "bitsweep_workers_alive ", snapshot.workers_alive, "\n");
  AppendHeader(&out, "bitsweep_leases_expired_total", "counter",
               "Trial leases lost by their worker (requeued or failed).");
  absl::StrAppend(&out, "bitsweep_leases_expired_total ", leases_expired(), "\n");
  AppendHeader(&out, "bitsweep_curve_points_ingested_total", "counter",
               "Training-curve points accepted from workers.");
  absl::StrAppend(&out, "bitsweep_curve_points_ingested_total ", curve_points_ingested(), "\n");

  std::lock_guard<std::mutex> lock(mu_);
  AppendHeader(&out, "bitsweep_grpc_requests_total", "counter",
               "Finished gRPC requests by method and status code.");
  for (const auto& [method, stats] : rpcs_) {
    for (const auto& [code, count] : stats.count_by_code) {
      absl::StrAppend(&out, "bitsweep_grpc_requests_total{method=\"", EscapeLabelValue(method),
                      "\",code=\"", EscapeLabelValue(code), "\"} ", count, "\n");
    }
  }
  AppendHeader(&out, "bitsweep_grpc_request_duration_seconds", "histogram",
               "gRPC request latency by method, from the call's start to its status.");
  for (const auto& [method, stats] : rpcs_) {
    const std::string label = EscapeLabelValue(method);
    int64_t cumulative = 0;
    for (size_t i = 0; i < stats.bucket_counts.size(); ++i) {
      cumulative += stats.bucket_counts[i];
      const std::string le =
          i < kLatencyBucketsSeconds.size() ? FormatDouble(kLatencyBucketsSeconds[i]) : "+Inf";
      absl::StrAppend(&out, "bitsweep_grpc_request_duration_seconds_bucket{method=\"", label,
                      "\",le=\"", le, "\"} ", cumulative, "\n");
    }
    absl::StrAppend(&out, "bitsweep_grpc_request_duration_seconds_sum{method=\"", label, "\"} ",
                    FormatDouble(stats.sum_seconds), "\n");
    absl::StrAppend(&out, "bitsweep_grpc_request_duration_seconds_count{method=\"", label, "\"} ",
                    stats.count, "\n");
  }
  return out;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeRpcMetricsInterceptorFactory(ServerMetrics* metrics) {
  return std::make_unique<RpcMetricsInterceptorFactory>(metrics);
}

}  // namespace bitsweep::server
