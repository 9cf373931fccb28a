#include "worker/simulated_trial.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace bitsweep::worker {
namespace {

constexpr int kClasses = 10;
constexpr int kTestPerClass = 100;
// Polling period when no StopWait is given.
constexpr std::chrono::milliseconds kPollSlice{5};

// Parses a non-negative decimal integer that is the whole of `text`.
bool ParseInt(std::string_view text, int* value) {
  if (text.empty()) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size() && *value >= 0;
}

// "A,B" -> two integers.
bool ParsePair(std::string_view text, int* a, int* b) {
  const size_t comma = text.find(',');
  return comma != std::string_view::npos && ParseInt(text.substr(0, comma), a) &&
         ParseInt(text.substr(comma + 1), b);
}

absl::StatusOr<int> RoundingBonus(std::string_view rounding) {
  if (rounding.empty() || rounding == "nearest") return 1;
  if (rounding == "stochastic") return 2;
  if (rounding == "truncate") return 0;
  return absl::InvalidArgumentError(
      absl::StrCat("precision.default.rounding: unknown rounding \"", std::string(rounding),
                   "\" for a simulated trial (truncate | nearest | stochastic)"));
}

// splitmix64: a well-mixed 64-bit function of the seed.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct Model {
  int points = 0;
  int64_t eval_every = 1;
  double level = 0;
  double lr = 0;
  double epochs_per_point = 0;

  int64_t Iteration(int index) const { return index * eval_every; }
  double Accuracy(int index) const {
    return 0.1 + (level - 0.1) * (1.0 - std::exp(-3.0 * index / points));
  }
  v1::CurvePoint Point(int index) const {
    const double accuracy = Accuracy(index);
    const double loss = -std::log(std::max(accuracy, 1e-3));
    v1::CurvePoint point;
    point.set_iteration(Iteration(index));
    point.set_epoch(epochs_per_point * index);
    point.set_train_loss(0.95 * loss);
    point.set_train_accuracy(std::min(1.0, accuracy + 0.01));
    point.set_test_loss(loss);
    point.set_test_accuracy(accuracy);
    point.set_learning_rate(lr);
    return point;
  }
};

absl::StatusOr<Model> MakeModel(const v1::TrialConfig& config) {
  if (config.kind() != "simulated") {
    return absl::InvalidArgumentError(
        absl::StrCat("kind: \"", config.kind(), "\" is not a simulated trial"));
  }
  Model model;
  model.points = config.simulation().points();
  if (model.points < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("simulation.points: must be at least 1, got ", model.points));
  }
  if (config.simulation().millis_per_point() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "simulation.millis_per_point: must be >= 0, got ", config.simulation().millis_per_point()));
  }
  absl::StatusOr<int> bits = SimulatedFormatBits(config.precision().default_().format());
  if (!bits.ok()) return bits.status();
  absl::StatusOr<int> bonus = RoundingBonus(config.precision().default_().rounding());
  if (!bonus.ok()) return bonus.status();
  const double noise =
      (static_cast<double>(Mix(config.seed()) >> 11) / static_cast<double>(1ULL << 53) - 0.5) *
      0.01;
  const double effective_bits = *bits + *bonus;
  model.level = 0.1 + (0.88 + noise) / (1.0 + std::exp(-1.2 * (effective_bits - 10.0)));
  model.eval_every = std::max<int64_t>(1, config.train().eval_every());
  model.lr = config.train().lr();
  model.epochs_per_point = std::max(1, config.train().epochs()) / static_cast<double>(model.points);
  return model;
}

// The point index a checkpoint state names. Errors: InvalidArgument.
absl::StatusOr<int> ParseState(const Model& model, std::string_view state) {
  int index = 0;
  if (!ParseInt(state, &index) || index > model.points) {
    return absl::InvalidArgumentError(
        absl::StrCat("resume_from: \"", std::string(state.substr(0, 32)),
                     "\" is not a point index of this simulated trial (0..", model.points, ")"));
  }
  return index;
}

v1::TrialResult MakeResult(const v1::TrialConfig& config, const Model& model, double seconds) {
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  const double final_accuracy = model.Accuracy(model.points);
  result.set_final_test_accuracy(final_accuracy);
  result.set_final_test_loss(model.Point(model.points).test_loss());
  double best = 0;
  int64_t to_target = -1;
  for (int i = 1; i <= model.points; ++i) {
    const double accuracy = model.Accuracy(i);
    best = std::max(best, accuracy);
    if (to_target < 0 && accuracy >= config.train().target_accuracy()) {
      to_target = model.Iteration(i);
    }
  }
  result.set_best_test_accuracy(best);
  result.set_iterations_to_target(to_target);
  result.set_iterations(model.Iteration(model.points));
  // A balanced test set of kTestPerClass per class; the misses of class c go to class c+1.
  result.set_num_classes(kClasses);
  const int64_t hits = std::llround(final_accuracy * kTestPerClass);
  std::vector<int64_t> confusion(kClasses * kClasses, 0);
  for (int c = 0; c < kClasses; ++c) {
    confusion[c * kClasses + c] = hits;
    confusion[c * kClasses + (c + 1) % kClasses] += kTestPerClass - hits;
    result.add_per_class_recall(static_cast<double>(hits) / kTestPerClass);
  }
  for (int64_t count : confusion) result.add_confusion(count);
  // Cohen's kappa with balanced classes: expected agreement 1 / kClasses.
  const double observed = static_cast<double>(hits) / kTestPerClass;
  result.set_kappa((observed - 1.0 / kClasses) / (1.0 - 1.0 / kClasses));
  result.set_train_seconds(seconds);
  const double images =
      static_cast<double>(result.iterations()) * std::max(1, config.train().batch_size());
  result.set_images_per_second(seconds > 0 ? images / seconds : 0);
  return result;
}

}  // namespace

absl::StatusOr<int> SimulatedFormatBits(std::string_view format) {
  if (format.empty() || format == "fp32") return 32;
  if (format == "fp16" || format == "bf16") return 16;
  if (format == "tf32") return 19;
  if (format == "fp8e5m2" || format == "fp8e4m3") return 8;
  const size_t colon = format.find(':');
  const std::string_view kind = format.substr(0, colon);
  const std::string_view args =
      colon == std::string_view::npos ? std::string_view() : format.substr(colon + 1);
  int a = 0;
  int b = 0;
  bool ok = false;
  int bits = 0;
  if (kind == "mask" || kind == "int" || kind == "dynfixed") {
    ok = ParseInt(args, &a);
    bits = a;
  } else if (kind == "float") {
    ok = ParsePair(args, &a, &b);
    bits = 1 + a + b;
  } else if (kind == "fixed") {
    ok = ParsePair(args, &a, &b);
    bits = a;
  } else if (kind == "dps") {
    ok = ParsePair(args, &a, &b);
    bits = a + b;
  }
  if (!ok || bits < 1 || bits > 64) {
    return absl::InvalidArgumentError(absl::StrCat("precision.default.format: \"",
                                                   std::string(format),
                                                   "\" is not a format a simulated trial knows"));
  }
  return bits;
}

absl::StatusOr<int64_t> SimulatedCheckpointIteration(const v1::TrialConfig& config,
                                                     std::string_view state) {
  absl::StatusOr<Model> model = MakeModel(config);
  if (!model.ok()) return model.status();
  absl::StatusOr<int> index = ParseState(*model, state);
  if (!index.ok()) return index.status();
  return model->Iteration(*index);
}

absl::StatusOr<v1::TrialResult> RunSimulatedTrial(const v1::TrialConfig& config,
                                                  const trainer::ProgressCallback& on_progress,
                                                  const trainer::TrainOptions& options,
                                                  const StopWait& wait) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Model> model = MakeModel(config);
  if (!model.ok()) return model.status();
  int first = 1;
  if (!options.resume_from.empty()) {
    absl::StatusOr<int> index = ParseState(*model, options.resume_from);
    if (!index.ok()) return index.status();
    first = *index + 1;
  }
  const std::chrono::milliseconds per_point(config.simulation().millis_per_point());
  const auto should_stop = [&options] { return options.should_stop && options.should_stop(); };
  // Waits `per_point` unless told to stop; true = stop.
  const auto wait_point = [&]() -> bool {
    if (should_stop()) return true;
    if (per_point.count() == 0) return false;
    if (wait) return wait(per_point) || should_stop();
    const auto until = std::chrono::steady_clock::now() + per_point;
    while (true) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return should_stop();
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(until - now, kPollSlice));
      if (should_stop()) return true;
    }
  };

  for (int i = first; i <= model->points; ++i) {
    if (wait_point()) return absl::CancelledError("simulated trial stopped");
    if (on_progress && !on_progress(model->Point(i))) {
      return absl::CancelledError("simulated trial stopped by its progress callback");
    }
    if (options.checkpoint_every > 0 && i % options.checkpoint_every == 0 && i < model->points &&
        options.on_checkpoint) {
      options.on_checkpoint(model->Iteration(i), std::to_string(i));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return MakeResult(config, *model, seconds);
}

}  // namespace bitsweep::worker
