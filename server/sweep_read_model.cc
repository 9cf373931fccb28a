#include "server/sweep_read_model.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "bitsweep/v1/config.pb.h"
#include "bitsweep/v1/sweep.pb.h"
#include "common/status_macros.h"

namespace bitsweep::server {
namespace {

constexpr int kBusyTimeoutMs = 5000;
constexpr int kMetricCount = 4;
constexpr const char* kMetricNames[kMetricCount] = {"test_accuracy", "test_loss", "train_accuracy",
                                                    "train_loss"};

template <typename Fn>
auto Guarded(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": database error: ", e.what()));
  }
}

std::string BlobOf(const SQLite::Column& column) {
  if (column.isNull()) return {};
  return std::string(static_cast<const char*>(column.getBlob()), column.getBytes());
}

// Appends `x` with 6 significant digits; NaN and infinities become null (JSON has neither).
void AppendNumber(std::string& out, double x) {
  if (!std::isfinite(x)) {
    out += "null";
    return;
  }
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), x, std::chars_format::general, 6);
  out.append(buffer, ec == std::errc() ? end : buffer);
}

void AppendInt(std::string& out, int64_t x) {
  char buffer[24];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), x);
  out.append(buffer, ec == std::errc() ? end : buffer);
}

void AppendString(std::string& out, const std::string& text) {
  out += nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

template <typename T, typename Fn>
void AppendArray(std::string& out, const std::vector<T>& values, Fn&& append) {
  out += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    append(out, values[i]);
  }
  out += ']';
}

std::string StateName(int state) {
  std::string name = v1::TrialState_Name(static_cast<v1::TrialState>(state));
  return name.starts_with("TRIAL_STATE_") ? name.substr(12) : name;
}

std::string OutcomeName(int outcome) {
  if (outcome == 0) return "";
  std::string name = v1::TrialOutcome_Name(static_cast<v1::TrialOutcome>(outcome));
  return name.starts_with("TRIAL_OUTCOME_") ? name.substr(14) : name;
}

// Mean, sample std, 95% half-width and n of a list of values.
struct Stats {
  double mean = 0;
  double std = 0;
  double ci95 = NAN;
  int64_t n = 0;
};

Stats Summarise(double sum, double sum_squares, int64_t n) {
  Stats stats;
  stats.n = n;
  if (n == 0) {
    stats.mean = NAN;
    stats.std = NAN;
    return stats;
  }
  stats.mean = sum / static_cast<double>(n);
  if (n > 1) {
    double variance = (sum_squares - sum * stats.mean) / static_cast<double>(n - 1);
    stats.std = std::sqrt(std::max(0.0, variance));
    stats.ci95 = StudentT975(n - 1) * stats.std / std::sqrt(static_cast<double>(n));
  }
  return stats;
}

Stats SummariseValues(const std::vector<double>& values) {
  double sum = 0;
  double sum_squares = 0;
  for (double x : values) {
    sum += x;
    sum_squares += x * x;
  }
  return Summarise(sum, sum_squares, static_cast<int64_t>(values.size()));
}

void AppendStats(std::string& out, const Stats& stats) {
  out += "{\"mean\":";
  AppendNumber(out, stats.mean);
  out += ",\"std\":";
  AppendNumber(out, stats.std);
  out += ",\"ci95\":";
  AppendNumber(out, stats.ci95);
  out += ",\"n\":";
  AppendInt(out, stats.n);
  out += '}';
}

// Adds n trials of (state, outcome) to counts {total, queued, ..., diverged, pruned}.
void AddToCounts(nlohmann::json& counts, int state, int outcome, int64_t n) {
  counts["total"] = counts["total"].get<int64_t>() + n;
  std::string name = StateName(state);
  std::transform(name.begin(), name.end(), name.begin(), ::tolower);
  if (counts.contains(name)) counts[name] = counts[name].get<int64_t>() + n;
  if (state == v1::TRIAL_STATE_DONE && outcome == v1::TRIAL_OUTCOME_DIVERGED) {
    counts["diverged"] = counts["diverged"].get<int64_t>() + n;
  }
  if (state == v1::TRIAL_STATE_DONE && outcome == v1::TRIAL_OUTCOME_PRUNED) {
    counts["pruned"] = counts["pruned"].get<int64_t>() + n;
  }
}

constexpr char kRowColumns[] =
    "id, idx, seed, state, attempt, outcome, result, worker_id, started_ms, finished_ms, error, "
    "params, change_seq";

const char* const kTableColumns[] = {"id",
                                     "idx",
                                     "seed",
                                     "state",
                                     "attempt",
                                     "outcome",
                                     "final_test_accuracy",
                                     "best_test_accuracy",
                                     "final_test_loss",
                                     "iterations_to_target",
                                     "iterations",
                                     "worker_id",
                                     "started_unix_ms",
                                     "finished_unix_ms",
                                     "duration_ms",
                                     "error",
                                     "params"};

}  // namespace

namespace {

// One columnar series per name (site or layer) over the points that recorded entries of `Entry`:
// `entries(point)` gives a point's entries, `name(entry)` the series it belongs to and `fields`
// the (key, getter) pairs copied into the series.
template <typename Entries, typename Name, typename Fields>
nlohmann::json EntrySeries(const std::vector<v1::CurvePoint>& curve, const char* list_key,
                           const char* name_key, Entries entries, Name name, const Fields& fields) {
  nlohmann::json iterations = nlohmann::json::array();
  nlohmann::json series = nlohmann::json::array();
  std::map<std::string, size_t> index;  // name -> position in series
  for (const v1::CurvePoint& point : curve) {
    const auto& list = entries(point);
    if (list.empty()) continue;
    const size_t column = iterations.size();
    iterations.push_back(point.iteration());
    for (const auto& entry : list) {
      auto [found, added] = index.emplace(name(entry), series.size());
      if (added) {
        nlohmann::json one = {{name_key, name(entry)}};
        for (const auto& [key, get] : fields) {
          one[key] = nlohmann::json(std::vector<std::nullptr_t>(column, nullptr));
        }
        series.push_back(std::move(one));
      }
      nlohmann::json& target = series[found->second];
      for (const auto& [key, get] : fields) {
        nlohmann::json& values = target[key];
        while (values.size() < column) values.push_back(nullptr);
        if (values.size() == column) values.push_back(get(entry));
      }
    }
  }
  // Pad the series that the last points did not mention.
  for (nlohmann::json& one : series) {
    for (const auto& [key, get] : fields) {
      while (one[key].size() < iterations.size()) one[key].push_back(nullptr);
    }
  }
  if (iterations.empty()) return nullptr;
  return {{"iteration", std::move(iterations)}, {list_key, std::move(series)}};
}

}  // namespace

nlohmann::json CurveStatsColumns(const std::vector<v1::CurvePoint>& curve) {
  using SiteGetter = double (*)(const v1::SiteStats&);
  using LayerGetter = double (*)(const v1::LayerStats&);
  const std::vector<std::pair<const char*, SiteGetter>> site_fields = {
      {"effective_bits", [](const v1::SiteStats& s) { return s.effective_bits(); }},
      {"quantization_error_percent",
       [](const v1::SiteStats& s) { return s.quantization_error_percent(); }},
      {"overflow_percent", [](const v1::SiteStats& s) { return s.overflow_percent(); }}};
  const std::vector<std::pair<const char*, LayerGetter>> layer_fields = {
      {"gradient_norm", [](const v1::LayerStats& l) { return l.gradient_norm(); }},
      {"flushed_to_zero", [](const v1::LayerStats& l) { return l.flushed_to_zero(); }}};
  nlohmann::json out = nlohmann::json::object();
  nlohmann::json sites = EntrySeries(
      curve, "sites", "site", [](const v1::CurvePoint& p) -> const auto& { return p.sites(); },
      [](const v1::SiteStats& s) { return s.site(); }, site_fields);
  if (!sites.is_null()) out["site_series"] = std::move(sites);
  nlohmann::json layers = EntrySeries(
      curve, "layers", "layer", [](const v1::CurvePoint& p) -> const auto& { return p.layers(); },
      [](const v1::LayerStats& l) { return l.layer(); }, layer_fields);
  if (!layers.is_null()) out["layer_series"] = std::move(layers);
  return out;
}

absl::StatusOr<int> CurveMetricIndex(const std::string& metric) {
  for (int i = 0; i < kMetricCount; ++i) {
    if (metric == kMetricNames[i]) return i;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown metric '", metric,
                   "' (known: test_accuracy, test_loss, train_accuracy, train_loss)"));
}

double StudentT975(int64_t df) {
  static constexpr double kTable[] = {0,     12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365,
                                      2.306, 2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
                                      2.120, 2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069,
                                      2.064, 2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
  if (df <= 0) return NAN;
  if (df <= 30) return kTable[df];
  if (df <= 60) return 2.042 - (2.042 - 2.000) * static_cast<double>(df - 30) / 30.0;
  if (df <= 120) return 2.000 - (2.000 - 1.980) * static_cast<double>(df - 60) / 60.0;
  return 1.960;
}

// One trial as the dashboard shows it: its table row (JSON text) and its curve.
struct DashboardTrial {
  int64_t id = 0;
  int64_t change_seq = -1;
  int state = 0;
  int outcome = 0;
  double final_accuracy = NAN;
  double best_accuracy = NAN;
  int64_t iterations_to_target = -1;
  std::vector<std::string> params;
  std::string row;
  std::vector<int64_t> iteration;
  std::vector<float> metric[kMetricCount];
};

struct DashboardSweepCache {
  std::vector<DashboardTrial> trials;  // in expansion order
  std::unordered_map<int64_t, size_t> index_of;
  std::vector<std::string> axis_paths;
  std::vector<std::vector<std::string>> axis_values;
  // Trial positions per seed group, groups in order of first appearance.
  std::vector<std::vector<size_t>> groups;
  double target_accuracy = 0;
  int64_t seq = 0;
  // PRAGMA data_version when last refreshed: unchanged means no commit since (by the store's
  // writer, another connection), so the cache is current without looking at any trial.
  int64_t data_version = -1;
};

namespace {

// Reads a row selected with kRowColumns into `trial` (not its curve).
void ReadRow(SQLite::Statement& row, int64_t now_ms, DashboardTrial* trial) {
  trial->id = row.getColumn(0).getInt64();
  int64_t idx = row.getColumn(1).getInt64();
  int64_t seed = row.getColumn(2).getInt64();
  trial->state = row.getColumn(3).getInt();
  int attempt = row.getColumn(4).getInt();
  trial->outcome = row.getColumn(5).getInt();
  v1::TrialResult result;
  bool has_result = !row.getColumn(6).isNull();
  if (has_result) result.ParseFromString(BlobOf(row.getColumn(6)));
  std::string worker = row.getColumn(7).getString();
  int64_t started = row.getColumn(8).getInt64();
  int64_t finished = row.getColumn(9).getInt64();
  std::string error = row.getColumn(10).getString();
  trial->params.clear();
  for (const auto& pair : nlohmann::json::parse(row.getColumn(11).getString())) {
    trial->params.push_back(pair.at(1).get<std::string>());
  }
  trial->change_seq = row.getColumn(12).getInt64();
  trial->final_accuracy = has_result ? result.final_test_accuracy() : NAN;
  trial->best_accuracy = has_result ? result.best_test_accuracy() : NAN;
  trial->iterations_to_target = has_result ? result.iterations_to_target() : -1;

  std::string& out = trial->row;
  out.clear();
  out += '[';
  AppendInt(out, trial->id);
  out += ',';
  AppendInt(out, idx);
  out += ',';
  AppendInt(out, seed);
  out += ",\"";
  out += StateName(trial->state);
  out += "\",";
  AppendInt(out, attempt);
  out += ",\"";
  out += OutcomeName(trial->outcome);
  out += "\",";
  if (has_result) {
    AppendNumber(out, result.final_test_accuracy());
    out += ',';
    AppendNumber(out, result.best_test_accuracy());
    out += ',';
    AppendNumber(out, result.final_test_loss());
    out += ',';
    AppendInt(out, result.iterations_to_target());
    out += ',';
    AppendInt(out, result.iterations());
  } else {
    out += "null,null,null,null,null";
  }
  out += ',';
  AppendString(out, worker);
  out += ',';
  AppendInt(out, started);
  out += ',';
  AppendInt(out, finished);
  out += ',';
  if (started > 0 && finished >= started) {
    AppendInt(out, finished - started);
  } else if (started > 0 && trial->state == v1::TRIAL_STATE_RUNNING) {
    AppendInt(out, std::max<int64_t>(0, now_ms - started));
  } else {
    out += "null";
  }
  out += ',';
  AppendString(out, error);
  out += ',';
  AppendArray(out, trial->params, [](std::string& o, const std::string& v) { AppendString(o, v); });
  out += ']';
}

// Reads the points of `trial_id` after `after_iteration` into `trial`'s curve (appending).
void ReadCurve(SQLite::Database& db, int64_t trial_id, int64_t after_iteration,
               DashboardTrial* trial) {
  SQLite::Statement query(db,
                          "SELECT iteration, test_accuracy, test_loss, train_accuracy, train_loss "
                          "FROM curve_points WHERE trial_id = ? AND iteration > ? "
                          "ORDER BY iteration");
  query.bind(1, trial_id);
  query.bind(2, after_iteration);
  while (query.executeStep()) {
    trial->iteration.push_back(query.getColumn(0).getInt64());
    for (int m = 0; m < kMetricCount; ++m) {
      trial->metric[m].push_back(static_cast<float>(query.getColumn(m + 1).getDouble()));
    }
  }
}

void ClearCurve(DashboardTrial* trial) {
  trial->iteration.clear();
  for (auto& values : trial->metric) values.clear();
}

// Numeric values sort as numbers; anything else keeps its first-seen order.
void SortAxisValues(std::vector<std::string>* values) {
  std::vector<std::pair<double, std::string>> numeric;
  for (const std::string& value : *values) {
    double x = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), x);
    if (ec != std::errc() || end != value.data() + value.size()) return;
    numeric.emplace_back(x, value);
  }
  std::stable_sort(numeric.begin(), numeric.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < numeric.size(); ++i) (*values)[i] = numeric[i].second;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SweepReadModel>> SweepReadModel::Open(const std::string& db_path,
                                                                     const common::Clock* clock) {
  static const common::SystemClock system_clock;
  try {
    auto db = std::make_unique<SQLite::Database>(db_path, SQLite::OPEN_READONLY, kBusyTimeoutMs);
    db->exec("PRAGMA cache_size = -65536");  // 64 MiB: a 10,000-trial sweep's curves fit
    return std::unique_ptr<SweepReadModel>(
        new SweepReadModel(std::move(db), clock != nullptr ? clock : &system_clock));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("dashboard: cannot open ", db_path, ": ", e.what()));
  }
}

SweepReadModel::SweepReadModel(std::unique_ptr<SQLite::Database> db, const common::Clock* clock)
    : db_(std::move(db)), clock_(clock) {}

SweepReadModel::~SweepReadModel() = default;

nlohmann::json SweepReadModel::CountsJson(int64_t sweep_id) {
  SQLite::Statement query(*db_,
                          "SELECT state, outcome, COUNT(*) FROM trials WHERE sweep_id = ? "
                          "GROUP BY state, outcome");
  query.bind(1, sweep_id);
  nlohmann::json counts = {{"total", 0},  {"queued", 0},   {"running", 0}, {"done", 0},
                           {"failed", 0}, {"diverged", 0}, {"pruned", 0},  {"cancelled", 0}};
  while (query.executeStep()) {
    AddToCounts(counts, query.getColumn(0).getInt(), query.getColumn(1).getInt(),
                query.getColumn(2).getInt64());
  }
  return counts;
}

absl::StatusOr<std::map<int64_t, nlohmann::json>> SweepReadModel::SweepTimings() {
  std::lock_guard<std::mutex> lock(mu_);
  return Guarded("sweep timings", [&]() -> absl::StatusOr<std::map<int64_t, nlohmann::json>> {
    int64_t data_version = db_->execAndGet("PRAGMA data_version").getInt64();
    if (data_version != timings_data_version_) {
      // One pass over the trials of every sweep; reused until the next commit.
      SQLite::Transaction snapshot(*db_, SQLite::TransactionBehavior::DEFERRED);
      std::map<int64_t, SweepProgress> progress;
      SQLite::Statement sweeps(*db_, "SELECT id, finished_ms FROM sweeps");
      while (sweeps.executeStep()) {
        SweepProgress& p = progress[sweeps.getColumn(0).getInt64()];
        p.finished_ms = sweeps.getColumn(1).getInt64();
        p.counts = {{"total", 0},  {"queued", 0},   {"running", 0}, {"done", 0},
                    {"failed", 0}, {"diverged", 0}, {"pruned", 0},  {"cancelled", 0}};
      }
      SQLite::Statement trials(
          *db_,
          "SELECT sweep_id, state, outcome, COUNT(*), MIN(NULLIF(started_ms, 0)), "
          "SUM(finished_ms > 0) FROM trials GROUP BY sweep_id, state, outcome");
      while (trials.executeStep()) {
        auto found = progress.find(trials.getColumn(0).getInt64());
        if (found == progress.end()) continue;
        SweepProgress& p = found->second;
        int state = trials.getColumn(1).getInt();
        int outcome = trials.getColumn(2).getInt();
        int64_t n = trials.getColumn(3).getInt64();
        if (!trials.getColumn(4).isNull()) {
          int64_t started = trials.getColumn(4).getInt64();
          p.started_ms = p.started_ms == 0 ? started : std::min(p.started_ms, started);
        }
        if (state == v1::TRIAL_STATE_QUEUED || state == v1::TRIAL_STATE_RUNNING) {
          p.remaining += n;
        } else {
          p.finished_trials += trials.getColumn(5).getInt64();
        }
        AddToCounts(p.counts, state, outcome, n);
      }
      snapshot.commit();
      timings_ = std::move(progress);
      timings_data_version_ = data_version;
    }
    int64_t now = clock_->NowUnixMs();
    std::map<int64_t, nlohmann::json> timings;
    for (const auto& [id, p] : timings_) {
      int64_t elapsed =
          p.started_ms > 0
              ? std::max<int64_t>(0, (p.finished_ms > 0 ? p.finished_ms : now) - p.started_ms)
              : 0;
      int64_t eta = -1;
      if (p.remaining == 0) {
        eta = 0;
      } else if (p.finished_trials > 0 && elapsed > 0) {
        // Throughput so far (all workers together) times what is left.
        eta = static_cast<int64_t>(static_cast<double>(elapsed) /
                                   static_cast<double>(p.finished_trials) *
                                   static_cast<double>(p.remaining));
      }
      timings[id] = {{"started_unix_ms", p.started_ms},
                     {"elapsed_ms", elapsed},
                     {"eta_ms", eta},
                     {"counts", p.counts}};
    }
    return timings;
  });
}

absl::StatusOr<DashboardSweepCache*> SweepReadModel::Refresh(int64_t sweep_id) {
  int64_t now = clock_->NowUnixMs();
  int64_t data_version = db_->execAndGet("PRAGMA data_version").getInt64();
  auto it = cache_.find(sweep_id);
  if (it != cache_.end() && it->second->data_version == data_version) return it->second.get();
  // One read transaction: rows and curves come from the same snapshot.
  SQLite::Transaction snapshot(*db_, SQLite::TransactionBehavior::DEFERRED);
  if (it == cache_.end()) {
    SQLite::Statement sweep(*db_, "SELECT spec FROM sweeps WHERE id = ?");
    sweep.bind(1, sweep_id);
    if (!sweep.executeStep()) {
      return absl::NotFoundError(absl::StrCat("no sweep ", sweep_id));
    }
    v1::SweepSpec spec;
    spec.ParseFromString(BlobOf(sweep.getColumn(0)));
    auto cache = std::make_unique<DashboardSweepCache>();
    for (const v1::SweepParameter& parameter : spec.parameters()) {
      cache->axis_paths.push_back(parameter.path());
    }
    SQLite::Statement config(*db_, "SELECT config FROM trials WHERE sweep_id = ? LIMIT 1");
    config.bind(1, sweep_id);
    if (config.executeStep()) {
      v1::TrialConfig trial_config;
      trial_config.ParseFromString(BlobOf(config.getColumn(0)));
      cache->target_accuracy = trial_config.train().target_accuracy();
    }
    it = cache_.emplace(sweep_id, std::move(cache)).first;
  }
  DashboardSweepCache& cache = *it->second;

  // Which trials changed (or are running: their curves grow without a state change).
  SQLite::Statement list(
      *db_, "SELECT id, state, change_seq FROM trials WHERE sweep_id = ? ORDER BY idx");
  list.bind(1, sweep_id);
  std::vector<size_t> stale;
  bool layout_changed = false;
  size_t position = 0;
  while (list.executeStep()) {
    int64_t id = list.getColumn(0).getInt64();
    int state = list.getColumn(1).getInt();
    int64_t seq = list.getColumn(2).getInt64();
    cache.seq = std::max(cache.seq, seq);
    if (position >= cache.trials.size() || cache.trials[position].id != id) {
      layout_changed = true;
      if (position >= cache.trials.size()) cache.trials.resize(position + 1);
      cache.trials[position] = DashboardTrial();
      cache.trials[position].id = id;
    }
    DashboardTrial& trial = cache.trials[position];
    if (trial.change_seq != seq || state == v1::TRIAL_STATE_RUNNING ||
        trial.state == v1::TRIAL_STATE_RUNNING) {
      stale.push_back(position);
    }
    ++position;
  }
  if (position != cache.trials.size()) {
    cache.trials.resize(position);
    layout_changed = true;
  }
  if (layout_changed) {
    cache.index_of.clear();
    for (size_t i = 0; i < cache.trials.size(); ++i) cache.index_of[cache.trials[i].id] = i;
  }

  if (!stale.empty()) {
    // Many stale trials (the first request): one pass over the sweep beats one query each.
    bool bulk = stale.size() > 64;
    std::vector<bool> is_stale(cache.trials.size(), false);
    for (size_t i : stale) is_stale[i] = true;
    if (bulk) {
      SQLite::Statement rows(
          *db_, absl::StrCat("SELECT ", kRowColumns, " FROM trials WHERE sweep_id = ?"));
      rows.bind(1, sweep_id);
      while (rows.executeStep()) {
        auto found = cache.index_of.find(rows.getColumn(0).getInt64());
        if (found == cache.index_of.end() || !is_stale[found->second]) continue;
        ReadRow(rows, now, &cache.trials[found->second]);
        ClearCurve(&cache.trials[found->second]);
      }
      SQLite::Statement points(
          *db_,
          "SELECT c.trial_id, c.iteration, c.test_accuracy, c.test_loss, c.train_accuracy, "
          "c.train_loss FROM trials t JOIN curve_points c ON c.trial_id = t.id "
          "WHERE t.sweep_id = ? ORDER BY c.trial_id, c.iteration");
      points.bind(1, sweep_id);
      int64_t current_id = -1;
      DashboardTrial* current = nullptr;
      while (points.executeStep()) {
        int64_t id = points.getColumn(0).getInt64();
        if (id != current_id) {
          current_id = id;
          auto found = cache.index_of.find(id);
          current = found != cache.index_of.end() && is_stale[found->second]
                        ? &cache.trials[found->second]
                        : nullptr;
        }
        if (current == nullptr) continue;
        current->iteration.push_back(points.getColumn(1).getInt64());
        for (int m = 0; m < kMetricCount; ++m) {
          current->metric[m].push_back(static_cast<float>(points.getColumn(m + 2).getDouble()));
        }
      }
    } else {
      SQLite::Statement row(*db_,
                            absl::StrCat("SELECT ", kRowColumns, " FROM trials WHERE id = ?"));
      for (size_t i : stale) {
        DashboardTrial& trial = cache.trials[i];
        row.reset();
        row.bind(1, trial.id);
        if (!row.executeStep()) continue;
        ReadRow(row, now, &trial);
        ClearCurve(&trial);
        ReadCurve(*db_, trial.id, -1, &trial);
      }
    }
  }

  if (layout_changed) {
    // Axes and seed groups depend only on the set of trials, fixed at submission.
    cache.axis_values.assign(cache.axis_paths.size(), {});
    std::vector<std::map<std::string, bool>> seen(cache.axis_paths.size());
    std::map<std::vector<std::string>, size_t> group_of;
    cache.groups.clear();
    for (size_t i = 0; i < cache.trials.size(); ++i) {
      const DashboardTrial& trial = cache.trials[i];
      for (size_t a = 0; a < trial.params.size() && a < cache.axis_paths.size(); ++a) {
        if (seen[a].emplace(trial.params[a], true).second) {
          cache.axis_values[a].push_back(trial.params[a]);
        }
      }
      auto [group, inserted] = group_of.emplace(trial.params, cache.groups.size());
      if (inserted) cache.groups.emplace_back();
      cache.groups[group->second].push_back(i);
    }
    for (auto& values : cache.axis_values) SortAxisValues(&values);
  }
  snapshot.commit();
  cache.data_version = data_version;
  return &cache;
}

absl::StatusOr<std::string> SweepReadModel::TrialTable(int64_t sweep_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return Guarded("trial table", [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(DashboardSweepCache* const cache, Refresh(sweep_id));
    std::string out;
    out.reserve(cache->trials.size() * 200 + 1024);
    out += "{\"sweep_id\":";
    AppendInt(out, sweep_id);
    out += ",\"seq\":";
    AppendInt(out, cache->seq);
    out += ",\"target_accuracy\":";
    AppendNumber(out, cache->target_accuracy);
    out += ",\"axes\":[";
    for (size_t a = 0; a < cache->axis_paths.size(); ++a) {
      if (a > 0) out += ',';
      out += "{\"path\":";
      AppendString(out, cache->axis_paths[a]);
      out += ",\"values\":";
      AppendArray(out, cache->axis_values[a],
                  [](std::string& o, const std::string& v) { AppendString(o, v); });
      out += '}';
    }
    out += "],\"columns\":[";
    for (size_t c = 0; c < std::size(kTableColumns); ++c) {
      if (c > 0) out += ',';
      out += '"';
      out += kTableColumns[c];
      out += '"';
    }
    out += "],\"rows\":[";
    for (size_t i = 0; i < cache->trials.size(); ++i) {
      if (i > 0) out += ",\n";
      out += cache->trials[i].row;
    }
    out += "]}";
    return out;
  });
}

absl::StatusOr<std::string> SweepReadModel::Groups(int64_t sweep_id, const std::string& metric) {
  ASSIGN_OR_RETURN(const int m, CurveMetricIndex(metric));
  std::lock_guard<std::mutex> lock(mu_);
  return Guarded("seed groups", [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(DashboardSweepCache* const cache, Refresh(sweep_id));
    std::string out;
    out.reserve(cache->groups.size() * 4096 + 1024);
    out += "{\"sweep_id\":";
    AppendInt(out, sweep_id);
    out += ",\"seq\":";
    AppendInt(out, cache->seq);
    out += ",\"metric\":";
    AppendString(out, metric);
    out += ",\"target_accuracy\":";
    AppendNumber(out, cache->target_accuracy);
    out += ",\"axes\":";
    AppendArray(out, cache->axis_paths,
                [](std::string& o, const std::string& v) { AppendString(o, v); });
    out += ",\"groups\":[";
    std::vector<int64_t> iterations;
    std::vector<double> sum;
    std::vector<double> sum_squares;
    std::vector<int64_t> count;
    for (size_t g = 0; g < cache->groups.size(); ++g) {
      const std::vector<size_t>& members = cache->groups[g];
      const DashboardTrial& first = cache->trials[members.front()];
      std::vector<double> finals;
      std::vector<double> bests;
      std::vector<double> to_target;
      int64_t reached = 0;
      std::map<std::string, int64_t> outcomes;
      std::vector<int64_t> ids;
      std::vector<int64_t> longest_iterations;
      for (size_t i : members) {
        const DashboardTrial& trial = cache->trials[i];
        ids.push_back(trial.id);
        std::string state = StateName(trial.state);
        std::string outcome = OutcomeName(trial.outcome);
        std::string key = trial.state == v1::TRIAL_STATE_DONE && !outcome.empty() ? outcome : state;
        std::transform(key.begin(), key.end(), key.begin(), ::tolower);
        ++outcomes[key];
        if (trial.state == v1::TRIAL_STATE_DONE && trial.outcome != v1::TRIAL_OUTCOME_PRUNED) {
          finals.push_back(trial.final_accuracy);
          bests.push_back(trial.best_accuracy);
          if (trial.iterations_to_target >= 0) {
            ++reached;
            to_target.push_back(static_cast<double>(trial.iterations_to_target));
          }
        }
        if (trial.iteration.size() > longest_iterations.size()) {
          longest_iterations = trial.iteration;
        }
      }
      // Per-iteration statistics over the group's curves. Seeds share their evaluation
      // iterations, so index by position when a curve is a prefix of the longest one.
      iterations = longest_iterations;
      sum.assign(iterations.size(), 0);
      sum_squares.assign(iterations.size(), 0);
      count.assign(iterations.size(), 0);
      std::map<int64_t, size_t> extra;  // iterations missing from the longest curve
      for (size_t i : members) {
        const DashboardTrial& trial = cache->trials[i];
        for (size_t k = 0; k < trial.iteration.size(); ++k) {
          size_t slot;
          if (k < iterations.size() && iterations[k] == trial.iteration[k]) {
            slot = k;
          } else {
            auto pos = std::lower_bound(iterations.begin(), iterations.end(), trial.iteration[k]);
            if (pos != iterations.end() && *pos == trial.iteration[k]) {
              slot = static_cast<size_t>(pos - iterations.begin());
            } else {
              // Rare: insert the iteration and shift the accumulators.
              size_t at = static_cast<size_t>(pos - iterations.begin());
              iterations.insert(pos, trial.iteration[k]);
              sum.insert(sum.begin() + static_cast<std::ptrdiff_t>(at), 0.0);
              sum_squares.insert(sum_squares.begin() + static_cast<std::ptrdiff_t>(at), 0.0);
              count.insert(count.begin() + static_cast<std::ptrdiff_t>(at), 0);
              slot = at;
            }
          }
          double x = trial.metric[m][k];
          if (!std::isfinite(x)) continue;
          sum[slot] += x;
          sum_squares[slot] += x * x;
          ++count[slot];
        }
      }
      if (g > 0) out += ",\n";
      out += "{\"params\":";
      AppendArray(out, first.params,
                  [](std::string& o, const std::string& v) { AppendString(o, v); });
      out += ",\"trial_ids\":";
      AppendArray(out, ids, AppendInt);
      // Where each trial's points end: live updates add only later points.
      out += ",\"last_iteration\":[";
      for (size_t j = 0; j < members.size(); ++j) {
        if (j > 0) out += ',';
        const DashboardTrial& trial = cache->trials[members[j]];
        AppendInt(out, trial.iteration.empty() ? -1 : trial.iteration.back());
      }
      out += ']';
      out += ",\"outcomes\":";
      out += nlohmann::json(outcomes).dump();
      out += ",\"final_test_accuracy\":";
      AppendStats(out, SummariseValues(finals));
      out += ",\"best_test_accuracy\":";
      AppendStats(out, SummariseValues(bests));
      out += ",\"iterations_to_target\":";
      AppendStats(out, SummariseValues(to_target));
      out += ",\"reached_target\":";
      AppendInt(out, reached);
      out += ",\"curve\":{\"iteration\":";
      AppendArray(out, iterations, AppendInt);
      std::vector<Stats> stats(iterations.size());
      for (size_t k = 0; k < iterations.size(); ++k) {
        stats[k] = Summarise(sum[k], sum_squares[k], count[k]);
      }
      out += ",\"mean\":";
      AppendArray(out, stats, [](std::string& o, const Stats& s) { AppendNumber(o, s.mean); });
      out += ",\"std\":";
      AppendArray(out, stats, [](std::string& o, const Stats& s) { AppendNumber(o, s.std); });
      out += ",\"ci95\":";
      AppendArray(out, stats, [](std::string& o, const Stats& s) { AppendNumber(o, s.ci95); });
      out += ",\"n\":";
      AppendArray(out, stats, [](std::string& o, const Stats& s) { AppendInt(o, s.n); });
      out += "}}";
    }
    out += "]}";
    return out;
  });
}

absl::StatusOr<std::string> SweepReadModel::Curves(int64_t sweep_id, const std::string& metric) {
  ASSIGN_OR_RETURN(const int m, CurveMetricIndex(metric));
  std::lock_guard<std::mutex> lock(mu_);
  return Guarded("curves", [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(DashboardSweepCache* const cache, Refresh(sweep_id));
    std::vector<int64_t> ids;
    std::vector<int64_t> offsets = {0};
    std::string iteration = "[";
    std::string value = "[";
    bool any = false;
    for (const DashboardTrial& trial : cache->trials) {
      if (trial.iteration.empty()) continue;
      ids.push_back(trial.id);
      for (size_t k = 0; k < trial.iteration.size(); ++k) {
        if (any) {
          iteration += ',';
          value += ',';
        }
        any = true;
        AppendInt(iteration, trial.iteration[k]);
        AppendNumber(value, trial.metric[m][k]);
      }
      offsets.push_back(offsets.back() + static_cast<int64_t>(trial.iteration.size()));
    }
    std::string out = "{\"sweep_id\":";
    AppendInt(out, sweep_id);
    out += ",\"metric\":";
    AppendString(out, metric);
    out += ",\"trial_ids\":";
    AppendArray(out, ids, AppendInt);
    out += ",\"offsets\":";
    AppendArray(out, offsets, AppendInt);
    out += ",\"iteration\":";
    out += iteration;
    out += "],\"value\":";
    out += value;
    out += "]}";
    return out;
  });
}

absl::StatusOr<nlohmann::json> SweepReadModel::TrialHistory(int64_t trial_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return Guarded("trial history", [&]() -> absl::StatusOr<nlohmann::json> {
    SQLite::Statement exists(*db_, "SELECT 1 FROM trials WHERE id = ?");
    exists.bind(1, trial_id);
    if (!exists.executeStep()) return absl::NotFoundError(absl::StrCat("no trial ", trial_id));
    nlohmann::json events = nlohmann::json::array();
    SQLite::Statement query(*db_,
                            "SELECT at_ms, worker_id, kind, detail FROM events WHERE trial_id = ? "
                            "ORDER BY id");
    query.bind(1, trial_id);
    while (query.executeStep()) {
      events.push_back({{"at_unix_ms", query.getColumn(0).getInt64()},
                        {"worker_id", query.getColumn(1).getString()},
                        {"kind", query.getColumn(2).getString()},
                        {"detail", query.getColumn(3).getString()}});
    }
    nlohmann::json attempts = nlohmann::json::array();
    SQLite::Statement points(*db_,
                             "SELECT attempt, COUNT(*), MIN(iteration), MAX(iteration) "
                             "FROM curve_points WHERE trial_id = ? GROUP BY attempt");
    points.bind(1, trial_id);
    while (points.executeStep()) {
      attempts.push_back({{"attempt", points.getColumn(0).getInt()},
                          {"points", points.getColumn(1).getInt64()},
                          {"first_iteration", points.getColumn(2).getInt64()},
                          {"last_iteration", points.getColumn(3).getInt64()}});
    }
    return nlohmann::json{{"events", events}, {"curve_attempts", attempts}};
  });
}

absl::StatusOr<std::map<std::string, int64_t>> SweepReadModel::FinishedPerWorker(
    int64_t window_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  return Guarded("worker throughput", [&]() -> absl::StatusOr<std::map<std::string, int64_t>> {
    SQLite::Statement query(*db_,
                            "SELECT worker_id, COUNT(*) FROM trials WHERE state = ? AND "
                            "finished_ms >= ? AND worker_id != '' GROUP BY worker_id");
    query.bind(1, static_cast<int>(v1::TRIAL_STATE_DONE));
    query.bind(2, clock_->NowUnixMs() - window_ms);
    std::map<std::string, int64_t> finished;
    while (query.executeStep()) {
      finished[query.getColumn(0).getString()] = query.getColumn(1).getInt64();
    }
    return finished;
  });
}

absl::StatusOr<nlohmann::json> SweepReadModel::ChangesSince(int64_t sweep_id,
                                                            SweepEventCursor* cursor) {
  std::lock_guard<std::mutex> lock(mu_);
  return Guarded("sweep changes", [&]() -> absl::StatusOr<nlohmann::json> {
    int64_t now = clock_->NowUnixMs();
    SQLite::Transaction snapshot(*db_, SQLite::TransactionBehavior::DEFERRED);
    SQLite::Statement exists(*db_, "SELECT 1 FROM sweeps WHERE id = ?");
    exists.bind(1, sweep_id);
    if (!exists.executeStep()) return absl::NotFoundError(absl::StrCat("no sweep ", sweep_id));

    nlohmann::json changes = {{"trials", nlohmann::json::array()},
                              {"points", nlohmann::json::array()}};
    std::set<int64_t> tracked;
    for (const auto& [id, last] : cursor->last_iteration) tracked.insert(id);
    if (!cursor->started) {
      SQLite::Statement seq(*db_,
                            "SELECT COALESCE(MAX(change_seq), 0) FROM trials WHERE sweep_id = ?");
      seq.bind(1, sweep_id);
      seq.executeStep();
      cursor->seq = seq.getColumn(0).getInt64();
    } else {
      SQLite::Statement rows(*db_, absl::StrCat("SELECT ", kRowColumns,
                                                " FROM trials WHERE sweep_id = ? AND "
                                                "change_seq > ? ORDER BY idx"));
      rows.bind(1, sweep_id);
      rows.bind(2, cursor->seq);
      DashboardTrial trial;
      while (rows.executeStep()) {
        ReadRow(rows, now, &trial);
        changes["trials"].push_back(nlohmann::json::parse(trial.row));
        cursor->seq = std::max(cursor->seq, trial.change_seq);
        // Flush the last points of trials that just stopped running.
        if (cursor->last_iteration.count(trial.id)) tracked.insert(trial.id);
      }
    }
    std::set<int64_t> running;
    SQLite::Statement query(*db_, "SELECT id FROM trials WHERE sweep_id = ? AND state = ?");
    query.bind(1, sweep_id);
    query.bind(2, static_cast<int>(v1::TRIAL_STATE_RUNNING));
    while (query.executeStep()) running.insert(query.getColumn(0).getInt64());
    tracked.insert(running.begin(), running.end());

    for (int64_t id : tracked) {
      auto found = cursor->last_iteration.find(id);
      int64_t after = found != cursor->last_iteration.end() ? found->second : -1;
      DashboardTrial trial;
      ReadCurve(*db_, id, after, &trial);
      if (!trial.iteration.empty()) {
        nlohmann::json points = {
            {"trial_id", id}, {"after_iteration", after}, {"iteration", trial.iteration}};
        for (int m = 0; m < kMetricCount; ++m) {
          nlohmann::json values = nlohmann::json::array();
          for (float x : trial.metric[m]) {
            if (std::isfinite(x)) {
              values.push_back(std::round(static_cast<double>(x) * 1e6) / 1e6);
            } else {
              values.push_back(nullptr);
            }
          }
          points[kMetricNames[m]] = std::move(values);
        }
        changes["points"].push_back(std::move(points));
        after = trial.iteration.back();
      }
      if (running.count(id)) {
        cursor->last_iteration[id] = after;
      } else {
        cursor->last_iteration.erase(id);
      }
    }
    if (!cursor->started || !changes["trials"].empty() || !changes["points"].empty()) {
      changes["sweep"] = {{"id", sweep_id}, {"counts", CountsJson(sweep_id)}};
    }
    cursor->started = true;
    snapshot.commit();
    return changes;
  });
}

}  // namespace bitsweep::server
