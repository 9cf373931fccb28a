// The training loop, top to bottom: build the network, then per iteration gather a shuffled
// mini-batch, forward, loss, backward, optimiser step, weight rounding; evaluate every
// eval_every iterations and at the end; finally the result and its metrics.
#include "worker/trainer/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/trainer/network.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/optim/optimizer.h"
#include "worker/trainer/optim/schedule.h"
#include "worker/trainer/quant/rng.h"
#include "worker/trainer/quant/sites.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {
namespace {

// Stream tags under the trial seed: every random decision has its own independent stream.
constexpr uint64_t kShuffleTag = 1;
constexpr uint64_t kTrainTag = 2;   // forward/backward rounding, per iteration
constexpr uint64_t kEvalTag = 3;    // evaluation rounding, per evaluation and chunk
constexpr uint64_t kWeightTag = 4;  // weight rounding, per update (0 = at init)

// A loss above this (or non-finite) ends the trial as diverged.
constexpr double kDivergenceLoss = 1e6;
// Evaluation runs in chunks of at least this many examples (at most batch_size otherwise).
constexpr int kMinEvalBatch = 128;

using Clock = std::chrono::steady_clock;

struct Evaluation {
  double loss = 0;
  double accuracy = 0;
  std::vector<int64_t> confusion;  // [true, predicted]
};

// Evaluates the first `count` test examples in chunks of `chunk`.
Evaluation Evaluate(Network& net, const Dataset& data, int64_t count, int chunk, Loss loss,
                    const SitePrecision& training_precision, uint64_t eval_key) {
  // A copy: evaluation uses the dynamic formats' current state without changing it.
  SitePrecision precision = training_precision;
  precision.set_measure(false);
  const int k = net.num_classes();
  Evaluation ev;
  ev.confusion.assign(int64_t{k} * k, 0);
  std::vector<int> predictions(chunk);
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0, c = 0; start < count; start += chunk, ++c) {
    const int n = static_cast<int>(std::min<int64_t>(chunk, count - start));
    const float* logits = net.Forward(data.test_images.data() + start * data.image_size(), n,
                                      precision, DeriveKey(eval_key, c));
    const uint8_t* labels = data.test_labels.data() + start;
    const LossStats s =
        LossForwardBackward(loss, n, k, logits, labels, 0.0f, nullptr, predictions.data());
    loss_sum += s.loss_sum;
    correct += s.correct;
    for (int e = 0; e < n; ++e) ++ev.confusion[int64_t{labels[e]} * k + predictions[e]];
  }
  ev.loss = loss_sum / static_cast<double>(count);
  ev.accuracy = static_cast<double>(correct) / static_cast<double>(count);
  return ev;
}

// Per-class recall and Cohen's kappa, κ = (p_o - p_e) / (1 - p_e) with p_e = Σ_k r_k c_k / N²
// (Cohen 1960; seeds/004_9626593eaf7665a5.txt lists kappa among the metrics).
void FillClassMetrics(const std::vector<int64_t>& confusion, int k, v1::TrialResult* result) {
  std::vector<double> rows(k, 0), cols(k, 0);
  double total = 0, diagonal = 0;
  for (int t = 0; t < k; ++t) {
    for (int p = 0; p < k; ++p) {
      const double v = static_cast<double>(confusion[int64_t{t} * k + p]);
      rows[t] += v;
      cols[p] += v;
      total += v;
      if (t == p) diagonal += v;
    }
  }
  double expected = 0;
  for (int c = 0; c < k; ++c) {
    result->add_per_class_recall(rows[c] > 0 ? confusion[int64_t{c} * k + c] / rows[c] : 0.0);
    expected += rows[c] * cols[c];
  }
  for (int64_t v : confusion) result->add_confusion(v);
  if (total == 0) return;
  const double po = diagonal / total;
  const double pe = expected / (total * total);
  result->set_kappa(pe < 1 ? (po - pe) / (1 - pe) : (po == 1 ? 1.0 : 0.0));
}

}  // namespace

absl::StatusOr<v1::TrialResult> Train(const v1::TrialConfig& config, const Dataset& data,
                                      const ProgressCallback& on_progress) {
  RETURN_IF_ERROR(ValidateTrialConfig(config));
  const v1::TrainConfig& tc = config.train();
  const int64_t train_n = config.dataset().train_limit() > 0
                              ? std::min(config.dataset().train_limit(), data.train_size())
                              : data.train_size();
  const int64_t test_n = config.dataset().test_limit() > 0
                             ? std::min(config.dataset().test_limit(), data.test_size())
                             : data.test_size();
  if (train_n < 1) return absl::InvalidArgumentError("dataset: no training examples");
  if (test_n < 1) return absl::InvalidArgumentError("dataset: no test examples");
  if (data.num_classes < 2 || data.num_classes > 256) {
    return absl::InvalidArgumentError("dataset: num_classes must be between 2 and 256");
  }
  if (data.channels < 1 || data.height < 1 || data.width < 1 ||
      static_cast<int64_t>(data.train_images.size()) != data.train_size() * data.image_size() ||
      static_cast<int64_t>(data.test_images.size()) != data.test_size() * data.image_size()) {
    return absl::InvalidArgumentError("dataset: image buffers do not match the shape and labels");
  }
  for (const std::vector<uint8_t>* labels : {&data.train_labels, &data.test_labels}) {
    for (uint8_t label : *labels) {
      if (label >= data.num_classes) {
        return absl::InvalidArgumentError("dataset: a label is not below num_classes");
      }
    }
  }
  ASSIGN_OR_RETURN(SitePrecision precision, MakeSitePrecision(config.precision()));
  ASSIGN_OR_RETURN(const Loss loss, ParseLoss(tc.loss()));
  OptimizerOptions optimizer_options;
  ASSIGN_OR_RETURN(optimizer_options.kind, ParseOptimizer(tc.optimizer()));
  optimizer_options.momentum = tc.momentum();
  optimizer_options.beta1 = tc.beta1();
  optimizer_options.beta2 = tc.beta2();
  optimizer_options.eps = tc.eps();
  optimizer_options.rho = tc.rho();
  optimizer_options.weight_decay = tc.weight_decay();
  LrSchedule schedule;
  ASSIGN_OR_RETURN(schedule.kind, ParseLrSchedule(tc.lr_schedule()));
  schedule.lr = tc.lr();
  schedule.gamma = tc.lr_gamma();
  schedule.power = tc.lr_power();
  schedule.step_size = std::max<int64_t>(tc.lr_step_size(), 1);

  const int batch = static_cast<int>(std::min<int64_t>(tc.batch_size(), train_n));
  const int eval_chunk =
      static_cast<int>(std::min<int64_t>(std::max(batch, kMinEvalBatch), test_n));
  const uint64_t seed = config.seed();
  ASSIGN_OR_RETURN(std::unique_ptr<Network> net,
                   Network::Create(config.model(), data.channels, data.height, data.width,
                                   data.num_classes, std::max(batch, eval_chunk), seed));
  Optimizer optimizer(optimizer_options);
  const uint64_t weight_key = DeriveKey(seed, kWeightTag);
  // master_weights none: the stored weights are the quantised ones from the start; fp32: the
  // optimiser updates a float32 copy and the forward pass sees its rounding.
  if (config.precision().master_weights() == "fp32") net->KeepMasterWeights();
  net->QuantizeWeights(precision.weights, DeriveKey(weight_key, 0));

  // The last partial batch of an epoch is kept: every example is seen once per epoch.
  const int64_t iters_per_epoch = (train_n + batch - 1) / batch;
  const int64_t total_iters =
      tc.iterations() > 0 ? tc.iterations() : int64_t{tc.epochs()} * iters_per_epoch;
  schedule.total_iterations = total_iters;
  const int k = data.num_classes;
  const int64_t image_size = data.image_size();

  std::vector<int64_t> order(train_n);
  std::vector<float> images(int64_t{batch} * image_size);
  std::vector<uint8_t> labels(batch);
  std::vector<float> dlogits(int64_t{batch} * k);

  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  result.set_num_classes(k);
  result.set_iterations_to_target(-1);
  Evaluation last;
  bool evaluated = false;
  double best_accuracy = 0;
  double running_loss = 0, running_accuracy = 0;
  int64_t running_batches = 0;
  int64_t images_trained = 0;
  Clock::duration train_time{};
  int64_t it = 0;

  while (it < total_iters) {
    const Clock::time_point step_start = Clock::now();
    const int64_t epoch = it / iters_per_epoch;
    const int64_t pos = it % iters_per_epoch;
    if (pos == 0) {
      // Fisher-Yates from the epoch's own stream: the order depends only on (seed, epoch).
      std::iota(order.begin(), order.end(), int64_t{0});
      CounterRng rng(DeriveKey(DeriveKey(seed, kShuffleTag), epoch));
      for (int64_t i = train_n - 1; i > 0; --i) {
        std::swap(order[i], order[rng.Below(i + 1)]);
      }
    }
    const double lr = schedule.At(it);  // 0-based iteration of this update
    ++it;
    // Only the iteration before an evaluation is measured (CurvePoint.sites).
    const bool report = it % tc.eval_every() == 0 || it == total_iters;
    precision.set_measure(report);
    const int64_t start = pos * batch;
    const int n = static_cast<int>(std::min<int64_t>(batch, train_n - start));
    for (int e = 0; e < n; ++e) {
      const int64_t src = order[start + e];
      std::memcpy(images.data() + e * image_size, data.train_images.data() + src * image_size,
                  sizeof(float) * image_size);
      labels[e] = data.train_labels[src];
    }
    const uint64_t step_key = DeriveKey(DeriveKey(seed, kTrainTag), it);
    const float* logits = net->Forward(images.data(), n, precision, step_key);
    const LossStats s =
        LossForwardBackward(loss, n, k, logits, labels.data(), 1.0f / n, dlogits.data(), nullptr);
    const double batch_loss = s.loss_sum / n;
    if (!std::isfinite(batch_loss) || batch_loss > kDivergenceLoss) {
      result.set_outcome(v1::TRIAL_OUTCOME_DIVERGED);
      result.set_detail(
          absl::StrCat("training loss ", batch_loss, " at iteration ", it,
                       std::isfinite(batch_loss) ? " exceeds 1e6" : " is not finite"));
      train_time += Clock::now() - step_start;
      break;
    }
    net->Backward(dlogits.data(), n, precision, step_key);
    net->QuantizeGradients(precision.gradients, step_key);
    const StateRounder round_state = [&](int tensor, float* state, int64_t size) {
      precision.optimizer.Apply(tensor, state, size,
                                SiteKey(step_key, Site::kOptimizer, static_cast<uint64_t>(tensor)));
    };
    optimizer.Step(net->params(), lr, round_state);
    net->QuantizeWeights(precision.weights, DeriveKey(weight_key, it));
    precision.EndIteration();
    train_time += Clock::now() - step_start;
    images_trained += n;
    running_loss += batch_loss;
    running_accuracy += static_cast<double>(s.correct) / n;
    ++running_batches;

    if (report) {
      last = Evaluate(*net, data, test_n, eval_chunk, loss, precision,
                      DeriveKey(DeriveKey(seed, kEvalTag), it));
      evaluated = true;
      best_accuracy = std::max(best_accuracy, last.accuracy);
      if (result.iterations_to_target() < 0 && last.accuracy >= tc.target_accuracy()) {
        result.set_iterations_to_target(it);
      }
      v1::CurvePoint point;
      point.set_iteration(it);
      point.set_epoch(static_cast<double>(it) / static_cast<double>(iters_per_epoch));
      point.set_train_loss(running_loss / running_batches);
      point.set_train_accuracy(running_accuracy / running_batches);
      point.set_test_loss(last.loss);
      point.set_test_accuracy(last.accuracy);
      point.set_learning_rate(lr);
      for (Site site : precision.listed) {
        const QuantStats& q = precision.at(site).last_iteration();
        v1::SiteStats* stats = point.add_sites();
        stats->set_site(SiteName(site));
        stats->set_effective_bits(q.effective_bits());
        stats->set_quantization_error_percent(q.error_percent());
        stats->set_overflow_percent(100.0 * q.overflow_rate());
      }
      running_loss = running_accuracy = 0;
      running_batches = 0;
      if (on_progress && !on_progress(point)) {
        return absl::CancelledError(
            absl::StrCat("training cancelled by the progress callback at iteration ", it));
      }
    }
  }

  if (result.outcome() == v1::TRIAL_OUTCOME_DIVERGED || !evaluated) {
    // The diverged model's own metrics (not reported as a curve point): the confusion matrix
    // shows what the divergence left. Its test loss may be NaN or Inf.
    last = Evaluate(*net, data, test_n, eval_chunk, loss, precision,
                    DeriveKey(DeriveKey(seed, kEvalTag), it));
    best_accuracy = std::max(best_accuracy, last.accuracy);
  }
  result.set_iterations(it);
  result.set_final_test_accuracy(last.accuracy);
  result.set_best_test_accuracy(best_accuracy);
  result.set_final_test_loss(last.loss);
  FillClassMetrics(last.confusion, k, &result);
  const double seconds = std::chrono::duration<double>(train_time).count();
  result.set_train_seconds(seconds);
  result.set_images_per_second(seconds > 0 ? static_cast<double>(images_trained) / seconds : 0);
  return result;
}

}  // namespace bitsweep::trainer
