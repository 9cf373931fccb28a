// SweepReadModel: the dashboard's read side (docs/api.md). It has its own read-only SQLite
// connection (WAL: its reads never block the store's writer nor wait for it) and answers with
// JSON shaped for the browser: columnar arrays for tables and curves, seed groups aggregated
// on the server.
//
// Speed with 10,000-trial sweeps: every finished trial's table row and curve are cached in
// memory, keyed by the trial's change_seq (bumped by every state change), so a request re-reads
// only the rows that changed and the curves of running trials; the first request of a sweep
// reads everything once.
//
// Seed groups (issue 8, item 1): trials of a sweep with equal swept parameters (all but the
// seed) form a group. Final accuracy statistics use DONE trials whose outcome is completed or
// diverged (a diverged run's accuracy is a result); pruned trials stopped early and are only
// counted. 95% intervals are mean ± t(0.975, n-1) · std / √n with the sample std; n = 1 gives
// no interval (null).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "common/clock.h"
#include "nlohmann/json.hpp"

namespace SQLite {
class Database;
}

namespace bitsweep::server {

// Where a live-update stream (GET /api/sweeps/{id}/events) has got to.
struct SweepEventCursor {
  // Trial rows with change_seq <= seq were sent.
  int64_t seq = 0;
  // Per running (or just finished) trial: the last iteration sent; absent: none sent.
  std::map<int64_t, int64_t> last_iteration;
  bool started = false;
};

struct DashboardSweepCache;  // defined in the .cc

class SweepReadModel {
 public:
  // Opens `db_path` read-only (the store must have created it). `clock` (null: system clock)
  // must outlive the model. Errors: Unavailable (cannot open).
  static absl::StatusOr<std::unique_ptr<SweepReadModel>> Open(const std::string& db_path,
                                                              const common::Clock* clock);
  ~SweepReadModel();
  SweepReadModel(const SweepReadModel&) = delete;
  SweepReadModel& operator=(const SweepReadModel&) = delete;

  // Per sweep id: started_unix_ms, elapsed_ms, eta_ms (-1: unknown), counts with pruned.
  // Errors: Internal.
  absl::StatusOr<std::map<int64_t, nlohmann::json>> SweepTimings();

  // The sweep's swept axes [{path, values}] (in spec order, values in first-seen order), the
  // target accuracy and the trial table (columnar, see docs/api.md), as JSON text.
  // Errors: NotFound, Internal.
  absl::StatusOr<std::string> TrialTable(int64_t sweep_id);

  // Seed groups with final/best accuracy and iterations-to-target statistics, outcome counts
  // and the per-iteration mean/std/ci95/n of `metric` (test_accuracy, test_loss,
  // train_accuracy, train_loss). Errors: NotFound, InvalidArgument (metric), Internal.
  absl::StatusOr<std::string> Groups(int64_t sweep_id, const std::string& metric);

  // `metric` of every trial of the sweep with a curve, columnar:
  // {trial_ids, offsets, iteration, value} as JSON text. Errors: NotFound, InvalidArgument,
  // Internal.
  absl::StatusOr<std::string> Curves(int64_t sweep_id, const std::string& metric);

  // The trial's events (requeues, failures) and attempts seen in its curve.
  // Errors: NotFound, Internal.
  absl::StatusOr<nlohmann::json> TrialHistory(int64_t trial_id);

  // Trials finished per worker over the last `window_ms`. Errors: Internal.
  absl::StatusOr<std::map<std::string, int64_t>> FinishedPerWorker(int64_t window_ms);

  // What changed in the sweep since `cursor` (updated): {"trials": [rows as in TrialTable],
  // "points": [{trial_id, after_iteration, iteration, test_accuracy, test_loss, train_accuracy,
  // train_loss}], "sweep": {counts...}}; empty arrays and no "sweep" when nothing changed.
  // The first call sends no rows but the points of every running trial.
  // Errors: NotFound, Internal.
  absl::StatusOr<nlohmann::json> ChangesSince(int64_t sweep_id, SweepEventCursor* cursor);

  int64_t NowUnixMs() const { return clock_->NowUnixMs(); }

 private:
  explicit SweepReadModel(std::unique_ptr<SQLite::Database> db, const common::Clock* clock);

  // Brings the sweep's cache up to date. Caller holds mu_. Errors: NotFound, Internal.
  absl::StatusOr<DashboardSweepCache*> Refresh(int64_t sweep_id);
  // The sweep's counts with pruned. Caller holds mu_.
  nlohmann::json CountsJson(int64_t sweep_id);

  std::unique_ptr<SQLite::Database> db_;
  const common::Clock* clock_;
  std::mutex mu_;  // guards db_ (one statement at a time) and cache_
  std::map<int64_t, std::unique_ptr<DashboardSweepCache>> cache_;
  // SweepTimings' raw figures per sweep, valid while PRAGMA data_version stays the same.
  struct SweepProgress {
    int64_t started_ms = 0;
    int64_t finished_ms = 0;
    int64_t finished_trials = 0;
    int64_t remaining = 0;
    nlohmann::json counts;
  };
  std::map<int64_t, SweepProgress> timings_;
  int64_t timings_data_version_ = -1;
};

// The per-site and per-layer statistics of a trial's curve (CurvePoint.sites / .layers),
// columnar (see docs/api.md): {"site_series": {"iteration": [...], "sites": [{"site",
// "effective_bits": [...], "quantization_error_percent": [...], "overflow_percent": [...]}]},
// "layer_series": {"iteration": [...], "layers": [{"layer", "gradient_norm": [...],
// "flushed_to_zero": [...]}]}}. Only the points that recorded statistics count; a site or layer
// missing from one of them is null there. A key is absent when no point recorded that kind.
nlohmann::json CurveStatsColumns(const std::vector<v1::CurvePoint>& curve);

// "test_accuracy" etc. -> column index in the cached curve.
// Errors: InvalidArgument (unknown metric; the message lists the known ones).
absl::StatusOr<int> CurveMetricIndex(const std::string& metric);

// t(0.975, df): the two-sided 95% quantile of Student's t with df degrees of freedom.
double StudentT975(int64_t df);

}  // namespace bitsweep::server
