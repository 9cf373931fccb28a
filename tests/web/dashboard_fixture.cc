// dashboard_fixture: fills a bitsweep database with simulated-looking sweeps through the
// TrialStore API, for the dashboard's browser tests (tests/web) and benchmark (bench/dashboard).
//   dashboard_fixture small DB          a completed sweep (3 formats x 2 roundings x 3 seeds),
//                                        a verifying sweep of a recorded seed 001 prediction
//                                        (precision.layers x 2 seeds) and a running sweep;
//                                        prints their ids as JSON
//   dashboard_fixture large DB TRIALS POINTS
//                                        one finished sweep of TRIALS trials (multiple of 100:
//                                        10 formats x 2 roundings x 5 batch sizes x seeds),
//                                        POINTS curve points each
//   dashboard_fixture append DB TRIAL WORKER ATTEMPT FIRST COUNT
//                                        appends COUNT points from iteration FIRST to a running
//                                        trial (as its worker would)
//   dashboard_fixture complete DB TRIAL WORKER ATTEMPT
//                                        completes a running trial with the result of its
//                                        stored curve (target accuracy 0.9)
// The curves follow a saturating exponential whose ceiling falls with fewer bits and with
// truncation (seed 000's shape); noise is seeded, so every run writes the same numbers.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/sweep_expander.h"
#include "server/trial_store.h"

namespace bitsweep::server {
namespace {

constexpr int64_t kHourMs = 3'600'000;
constexpr int kEvalEvery = 50;
constexpr char kWorker[] = "fixture-worker";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

google::protobuf::Value Text(const std::string& text) {
  google::protobuf::Value value;
  value.set_string_value(text);
  return value;
}
google::protobuf::Value Number(double x) {
  google::protobuf::Value value;
  value.set_number_value(x);
  return value;
}

void AddParameter(v1::SweepSpec* spec, const std::string& path,
                  const std::vector<google::protobuf::Value>& values) {
  v1::SweepParameter* parameter = spec->add_parameters();
  parameter->set_path(path);
  for (const auto& value : values) *parameter->mutable_values()->add_values() = value;
}

// The accuracy ceiling of a trial: fewer mantissa bits and truncation cost accuracy, and so do
// narrow per-layer fixed-point weights (fixed:W,FL) below 7 bits.
double Ceiling(const v1::TrialConfig& config) {
  const v1::SitePrecision& precision = config.precision().default_();
  double ceiling = 0.985;
  for (const v1::LayerPrecision& layer : config.precision().layers()) {
    const std::string& format = layer.weights().format();
    if (format.starts_with("fixed:")) {
      const int width = std::stoi(format.substr(6));
      ceiling -= 0.01 * std::max(0, 7 - width) * std::max(0, 7 - width);
    }
  }
  const std::string& format = precision.format();
  if (format.starts_with("mask:")) {
    int bits = std::stoi(format.substr(5));
    double lost = std::max(0, 16 - bits);
    bool truncate = precision.rounding() == "truncate";
    ceiling -= (truncate ? 0.035 : 0.012) * lost * lost / 4.0;
  }
  return std::max(0.1, ceiling);
}

std::vector<v1::CurvePoint> Curve(const v1::TrialConfig& config, int64_t first, int count,
                                  std::mt19937_64& rng) {
  std::normal_distribution<double> noise(0.0, 0.006);
  double ceiling = Ceiling(config);
  double tau = 200.0 * (config.precision().default_().rounding() == "truncate" ? 1.25 : 1.0);
  std::vector<v1::CurvePoint> points;
  for (int i = 0; i < count; ++i) {
    int64_t iteration = (first + i) * kEvalEvery;
    double acc = 0.1 + (ceiling - 0.1) * (1.0 - std::exp(-static_cast<double>(iteration) / tau));
    acc = std::clamp(acc + noise(rng), 0.0, 1.0);
    v1::CurvePoint& point = points.emplace_back();
    point.set_iteration(iteration);
    point.set_epoch(static_cast<double>(iteration) / 938.0);
    point.set_test_accuracy(acc);
    point.set_train_accuracy(std::clamp(acc + 0.01 + noise(rng), 0.0, 1.0));
    point.set_test_loss(-std::log(std::max(acc, 0.05)) * 1.2);
    point.set_train_loss(-std::log(std::max(acc, 0.05)) * 1.1);
    point.set_learning_rate(0.05);
  }
  return points;
}

// Per-site and per-layer statistics as a worker records them (no randomness: the curves stay
// those of the same seed): weights and activations sites, two layers.
void AddStats(std::vector<v1::CurvePoint>* curve) {
  for (v1::CurvePoint& point : *curve) {
    const double t = static_cast<double>(point.iteration()) / 1000.0;
    for (const auto& [site, bits] : {std::pair<const char*, double>{"weights", 12.0},
                                     std::pair<const char*, double>{"activations", 16.0}}) {
      v1::SiteStats* stats = point.add_sites();
      stats->set_site(site);
      stats->set_effective_bits(bits);
      stats->set_quantization_error_percent(0.5 + 0.5 * std::exp(-t));
      stats->set_overflow_percent(0.2 * t);
    }
    for (const char* layer : {"dense0", "output"}) {
      v1::LayerStats* stats = point.add_layers();
      stats->set_layer(layer);
      stats->set_gradient_norm(0.1 * std::exp(-t));
      stats->set_flushed_to_zero(0.01 * t);
    }
  }
}

v1::TrialResult Result(const std::vector<v1::CurvePoint>& curve, double target) {
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  result.set_final_test_accuracy(curve.back().test_accuracy());
  result.set_final_test_loss(curve.back().test_loss());
  result.set_iterations(curve.back().iteration());
  result.set_iterations_to_target(-1);
  double best = 0;
  for (const auto& point : curve) {
    best = std::max(best, point.test_accuracy());
    if (result.iterations_to_target() < 0 && point.test_accuracy() >= target) {
      result.set_iterations_to_target(point.iteration());
    }
  }
  result.set_best_test_accuracy(best);
  result.set_num_classes(10);
  double acc = result.final_test_accuracy();
  for (int i = 0; i < 10; ++i) {
    for (int j = 0; j < 10; ++j) {
      result.add_confusion(i == j ? static_cast<int64_t>(1000 * acc)
                                  : static_cast<int64_t>(1000 * (1 - acc) / 9));
    }
    result.add_per_class_recall(acc);
  }
  result.set_kappa((acc - 0.1) / 0.9);
  result.set_images_per_second(2500);
  result.set_train_seconds(30);
  return result;
}

absl::StatusOr<int64_t> Create(TrialStore& store, const v1::SweepSpec& spec) {
  SweepExpanderOptions options;
  options.max_trials = 1'000'000;
  SweepExpander expander(options);
  absl::StatusOr<std::vector<PlannedTrial>> trials = expander.Expand(spec);
  if (!trials.ok()) return trials.status();
  return store.CreateSweep(spec, *trials, NowMs());
}

// Leases, fills and completes `n` trials (in lease order); the last `running` are left
// RUNNING with half their points; `with_stats` adds site and layer statistics to every point.
// Returns the ids of the running ones.
absl::StatusOr<std::vector<int64_t>> Run(TrialStore& store, int n, int points, int running,
                                         std::mt19937_64& rng, bool with_stats = false) {
  std::vector<int64_t> running_ids;
  for (int i = 0; i < n; ++i) {
    int64_t now = NowMs();
    absl::StatusOr<std::optional<LeasedTrial>> lease = store.LeaseNext(kWorker, now, now + kHourMs);
    if (!lease.ok()) return lease.status();
    if (!lease->has_value()) break;
    const LeasedTrial& trial = **lease;
    v1::TrialRef ref;
    ref.set_trial_id(trial.trial_id);
    ref.set_attempt(trial.attempt);
    bool keep_running = i >= n - running;
    std::vector<v1::CurvePoint> curve =
        Curve(trial.config, 1, keep_running ? points / 2 : points, rng);
    if (with_stats) AddStats(&curve);
    auto appended = store.AppendPoints(kWorker, ref, curve);
    if (!appended.ok()) return appended.status();
    if (keep_running) {
      running_ids.push_back(trial.trial_id);
      continue;
    }
    v1::TrialResult result = Result(curve, trial.config.train().target_accuracy());
    absl::Status done = store.CompleteTrial(kWorker, ref, &result, "", NowMs());
    if (!done.ok()) return done;
  }
  return running_ids;
}

v1::SweepSpec Spec(const std::string& name, const std::vector<std::string>& formats,
                   const std::vector<int>& batch_sizes, int seeds) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.set_method("grid");
  spec.set_seeds(seeds);
  (*(*spec.mutable_base()->mutable_fields())["train"]
        .mutable_struct_value()
        ->mutable_fields())["target_accuracy"] = Number(0.9);
  std::vector<google::protobuf::Value> values;
  for (const auto& format : formats) values.push_back(Text(format));
  AddParameter(&spec, "precision.default.format", values);
  AddParameter(&spec, "precision.default.rounding", {Text("truncate"), Text("stochastic")});
  if (!batch_sizes.empty()) {
    values.clear();
    for (int b : batch_sizes) values.push_back(Number(b));
    AddParameter(&spec, "train.batch_size", values);
  }
  return spec;
}

google::protobuf::Value JsonValue(const nlohmann::json& j) {
  google::protobuf::Value value;
  if (j.is_array()) {
    google::protobuf::ListValue* list = value.mutable_list_value();
    for (const nlohmann::json& element : j) *list->add_values() = JsonValue(element);
  } else if (j.is_object()) {
    auto* fields = value.mutable_struct_value()->mutable_fields();
    for (const auto& [key, element] : j.items()) (*fields)[key] = JsonValue(element);
  } else if (j.is_number()) {
    value.set_number_value(j.get<double>());
  } else if (j.is_string()) {
    value.set_string_value(j.get<std::string>());
  } else if (j.is_boolean()) {
    value.set_bool_value(j.get<bool>());
  }
  return value;
}

// A seed 001/003 prediction as `bitsweep predict --json` prints it, for a model with two layers
// (dense0, output) whose activations need 2 integer bits and weights none: predicted uniform
// B = 6, per layer B_A / B_W = 7 / 5 and 6 / 6. Its assignments are the values of the
// verifying sweep (fp32 baseline, uniform 4..8, per-layer), in `bitsweep predict`'s formats.
nlohmann::json Prediction() {
  using nlohmann::json;
  const auto layer_list = [](std::vector<std::pair<int, int>> bits) {  // (B_A, B_W) per layer
    json list = json::array();
    for (const auto& [ba, bw] : bits) {
      const int wa = std::max(ba, 3), ww = std::max(bw, 1);  // I_A = 2, I_W = 0
      list.push_back(
          {{"weights",
            {{"format", absl::StrCat("fixed:", ww, ",", ww - 1)}, {"rounding", "nearest"}}},
           {"activations",
            {{"format", absl::StrCat("fixed:", wa, ",", wa - 3)}, {"rounding", "nearest"}}}});
    }
    return list;
  };
  json assignments = json::array();
  assignments.push_back(
      {{"label", "fp32 baseline"}, {"bits", nullptr}, {"precision_layers", json::array()}});
  for (int b = 4; b <= 8; ++b) {
    assignments.push_back({{"label", absl::StrCat("uniform B = ", b)},
                           {"bits", b},
                           {"precision_layers", layer_list({{b, b}, {b, b}})}});
  }
  assignments.push_back({{"label", "per-layer assignment, B_ref = 6"},
                         {"bits", nullptr},
                         {"precision_layers", layer_list({{7, 5}, {6, 6}})}});
  json bounds = json::array();
  for (int b = 3; b <= 12; ++b) {
    bounds.push_back({{"bits", b},
                      {"bound", 0.5 * std::pow(4.0, 3 - b)},
                      {"measured", b >= 9 ? 0.0 : 0.4 / (1 << (b - 3))}});
  }
  return {{"fp32_test_accuracy", 0.97},
          {"inputs", 500},
          {"mismatch_inputs", 10000},
          {"skipped_ties", 0},
          {"target_pm", 0.01},
          {"layers",
           {{{"layer", "dense0"},
             {"E_A", 0.012},
             {"E_W", 0.03},
             {"I_A", 2},
             {"I_W", 0},
             {"B_A", 7},
             {"B_W", 5}},
            {{"layer", "output"},
             {"E_A", 0.004},
             {"E_W", 0.02},
             {"I_A", 2},
             {"I_W", 0},
             {"B_A", 6},
             {"B_W", 6}}}},
          {"uniform", {{"min_bits", 6}, {"bound", 0.0078}, {"measured_min_bits", 7}}},
          {"per_layer", {{"reference_bits", 6}, {"bound", 0.0095}, {"measured", 0.004}}},
          {"bounds", bounds},
          {"accumulators",
           {{{"layer", "dense0"},
             {"forward", {{"length", 784}, {"min_mantissa", 9}}},
             {"backward", {{"length", 16}, {"min_mantissa", 5}}},
             {"gradient", {{"length", 64}, {"min_mantissa", 7}}}},
            {{"layer", "output"},
             {"forward", {{"length", 16}, {"min_mantissa", 5}}},
             {"backward", {{"length", 10}, {"min_mantissa", 4}}},
             {"gradient", {{"length", 64}, {"min_mantissa", 7}}}}}},
          {"min_vrr", 0.99},
          {"assignments", assignments}};
}

// The verifying sweep of Prediction(), as `bitsweep predict --verify-sweep` writes it.
v1::SweepSpec VerifySpec(const nlohmann::json& prediction, int seeds) {
  v1::SweepSpec spec;
  spec.set_name("verifying sweep");
  spec.set_method("grid");
  spec.set_seeds(seeds);
  *spec.mutable_base() = JsonValue({{"model", {{"conv", nlohmann::json::array()}, {"dense", {16}}}},
                                    {"train", {{"target_accuracy", 0.9}}},
                                    {"precision",
                                     {{"default", {{"format", "fp32"}, {"rounding", "nearest"}}},
                                      {"sites", {"weights", "activations"}},
                                      {"master_weights", "fp32"}}}})
                             .struct_value();
  std::vector<google::protobuf::Value> values;
  for (const nlohmann::json& a : prediction["assignments"]) {
    values.push_back(JsonValue(a["precision_layers"]));
  }
  AddParameter(&spec, "precision.layers", values);
  return spec;
}

int Fail(const absl::Status& status) {
  std::cerr << "dashboard_fixture: " << status << "\n";
  return 1;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) {
    std::cerr << "usage: dashboard_fixture small DB | large DB TRIALS POINTS | "
                 "append DB TRIAL WORKER ATTEMPT FIRST COUNT | complete DB TRIAL WORKER ATTEMPT\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<TrialStore>> store = TrialStore::Open(args[1]);
  if (!store.ok()) return Fail(store.status());
  std::mt19937_64 rng(42);
  auto registered = (*store)->RegisterWorker(kWorker, "fixture", "fixture-host", 4, NowMs(), 3);
  if (!registered.ok()) return Fail(registered.status());
  if (args[0] == "small") {
    absl::StatusOr<int64_t> completed =
        Create(**store, Spec("completed sweep", {"fp32", "mask:16", "mask:12"}, {}, 3));
    if (!completed.ok()) return Fail(completed.status());
    absl::StatusOr<std::vector<int64_t>> ran = Run(**store, 18, 20, 0, rng, /*with_stats=*/true);
    if (!ran.ok()) return Fail(ran.status());
    // The verifying sweep, all 14 trials done, and the prediction recorded on it.
    const nlohmann::json prediction = Prediction();
    absl::StatusOr<int64_t> verify = Create(**store, VerifySpec(prediction, 2));
    if (!verify.ok()) return Fail(verify.status());
    ran = Run(**store, 14, 20, 0, rng);
    if (!ran.ok()) return Fail(ran.status());
    absl::StatusOr<int64_t> recorded =
        (*store)->RecordPrediction(*verify, 0, "fixture model", prediction.dump(), NowMs());
    if (!recorded.ok()) return Fail(recorded.status());
    // Formats the completed sweep has not run: its finished trials would otherwise be reused
    // (same config and seed) and leave nothing to run.
    absl::StatusOr<int64_t> live =
        Create(**store, Spec("running sweep", {"mask:14", "mask:10"}, {}, 2));
    if (!live.ok()) return Fail(live.status());
    // Two done, one running with 10 of its 20 points, five queued.
    ran = Run(**store, 3, 20, 1, rng);
    if (!ran.ok()) return Fail(ran.status());
    if (ran->empty()) return Fail(absl::InternalError("the running sweep has no trial to run"));
    std::cout << "{\"completed_sweep\": " << *completed << ", \"verify_sweep\": " << *verify
              << ", \"running_sweep\": " << *live << ", \"running_trial\": " << ran->front()
              << ", \"worker\": \"" << kWorker << "\", \"attempt\": 1, \"next_point\": 11}\n";
    return 0;
  }
  if (args[0] == "large" && args.size() == 4) {
    int trials = std::stoi(args[2]);
    int points = std::stoi(args[3]);
    if (trials < 100 || trials % 100 != 0) {
      std::cerr << "dashboard_fixture: TRIALS must be a multiple of 100\n";
      return 2;
    }
    absl::StatusOr<int64_t> id =
        Create(**store, Spec("bench sweep",
                             {"fp32", "mask:24", "mask:20", "mask:18", "mask:16", "mask:14",
                              "mask:13", "mask:12", "mask:11", "mask:10"},
                             {32, 64, 128, 256, 512}, trials / 100));
    if (!id.ok()) return Fail(id.status());
    absl::StatusOr<std::vector<int64_t>> ran = Run(**store, trials, points, 0, rng);
    if (!ran.ok()) return Fail(ran.status());
    std::cout << "{\"sweep\": " << *id << ", \"trials\": " << trials << "}\n";
    return 0;
  }
  if (args[0] == "append" && args.size() == 7) {
    v1::TrialRef ref;
    ref.set_trial_id(std::stoll(args[2]));
    ref.set_attempt(std::stoi(args[4]));
    std::vector<v1::CurvePoint> curve =
        Curve(v1::TrialConfig(), std::stoll(args[5]), std::stoi(args[6]), rng);
    auto appended = (*store)->AppendPoints(args[3], ref, curve);
    if (!appended.ok()) return Fail(appended.status());
    std::cout << "{\"appended\": " << curve.size() << "}\n";
    return 0;
  }
  if (args[0] == "complete" && args.size() == 5) {
    v1::TrialRef ref;
    ref.set_trial_id(std::stoll(args[2]));
    ref.set_attempt(std::stoi(args[4]));
    absl::StatusOr<std::vector<v1::CurvePoint>> curve = (*store)->GetCurve(ref.trial_id());
    if (!curve.ok()) return Fail(curve.status());
    if (curve->empty()) return Fail(absl::FailedPreconditionError("the trial has no points"));
    v1::TrialResult result = Result(*curve, 0.9);
    absl::Status done = (*store)->CompleteTrial(args[3], ref, &result, "", NowMs());
    if (!done.ok()) return Fail(done);
    std::cout << "{\"completed\": " << ref.trial_id() << "}\n";
    return 0;
  }
  std::cerr << "dashboard_fixture: unknown command or wrong arguments\n";
  return 2;
}

}  // namespace
}  // namespace bitsweep::server

int main(int argc, char** argv) { return bitsweep::server::Main(argc, argv); }
