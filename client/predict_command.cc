#include "client/predict_command.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/accumulator_width.h"
#include "analysis/mismatch_bound.h"
#include "client/text_table.h"
#include "client/train_command.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/trainer/analysis/noise_gain.h"
#include "worker/trainer/data/dataset.h"
#include "worker/trainer/network.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/quant/sites.h"

namespace bitsweep::client {
namespace {

using nlohmann::json;

// Fixed point with step 2^(1-B): B bits for weights on [-1, 1); activations get 6 more integer
// bits (range ±64) so that the measurement sees rounding noise, not saturation.
constexpr int kActivationExtraBits = 6;
std::string WeightFormat(int bits) { return absl::StrCat("fixed:", bits, ",", bits - 1); }
std::string ActivationFormat(int bits) {
  return absl::StrCat("fixed:", bits + kActivationExtraBits, ",", bits - 1);
}

// Float32 training with the config's model, batch, lr and momentum (plain SGD with momentum:
// v = μv + g, w -= lr·v), for the config's epochs or iterations on its train_limit images.
absl::Status TrainFloat32(trainer::Network& net, const v1::TrialConfig& config,
                          const trainer::Dataset& data, std::ostream& err) {
  const v1::TrainConfig& tc = config.train();
  const int64_t train_n = config.dataset().train_limit() > 0
                              ? std::min(config.dataset().train_limit(), data.train_size())
                              : data.train_size();
  const int batch = net.max_batch();
  const int64_t per_epoch = (train_n + batch - 1) / batch;
  const int64_t iterations = tc.iterations() > 0 ? tc.iterations() : tc.epochs() * per_epoch;
  ASSIGN_OR_RETURN(const trainer::Loss loss, trainer::ParseLoss(tc.loss()));
  const int k = net.num_classes();
  const int64_t size = data.image_size();
  std::vector<int64_t> order(train_n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(config.seed());
  std::vector<float> x(batch * size), dz(int64_t{batch} * k);
  std::vector<uint8_t> labels(batch);
  trainer::SitePrecision fp32;
  const float momentum = static_cast<float>(tc.optimizer() == "sgd" ? 0.0 : tc.momentum());
  for (trainer::Param& p : net.params()) p.velocity.assign(p.value.size(), 0.0f);
  double loss_sum = 0;
  for (int64_t it = 0; it < iterations; ++it) {
    const int64_t pos = (it % per_epoch) * batch;
    if (pos == 0) std::shuffle(order.begin(), order.end(), rng);
    const int b = static_cast<int>(std::min<int64_t>(batch, train_n - pos));
    for (int j = 0; j < b; ++j) {
      const int64_t e = order[pos + j];
      std::copy_n(data.train_images.data() + e * size, size, x.data() + j * size);
      labels[j] = data.train_labels[e];
    }
    const float* z = net.Forward(x.data(), b, fp32, 0);
    loss_sum +=
        trainer::LossForwardBackward(loss, b, k, z, labels.data(), 1.0f / b, dz.data(), nullptr)
            .loss_sum /
        b;
    net.Backward(dz.data(), b, fp32, 0);
    const float lr = static_cast<float>(tc.lr());
    for (trainer::Param& p : net.params()) {
      for (size_t i = 0; i < p.value.size(); ++i) {
        p.velocity[i] = momentum * p.velocity[i] + p.grad[i];
        p.value[i] -= lr * p.velocity[i];
      }
    }
    if ((it + 1) % 100 == 0 || it + 1 == iterations) {
      err << absl::StrFormat("predict: fp32 training %d/%d iterations, loss %.4f\n", it + 1,
                             iterations, loss_sum / double(it % 100 + 1));
      loss_sum = 0;
    }
    if (!std::isfinite(loss_sum)) {
      return absl::FailedPreconditionError("fp32 training diverged; lower train.lr");
    }
  }
  return absl::OkStatus();
}

double Accuracy(trainer::Network& net, const float* images, const uint8_t* labels, int64_t n,
                int64_t size) {
  trainer::SitePrecision fp32;
  const int k = net.num_classes();
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += net.max_batch()) {
    const int b = static_cast<int>(std::min<int64_t>(net.max_batch(), n - start));
    const float* z = net.Forward(images + start * size, b, fp32, 0);
    for (int j = 0; j < b; ++j) {
      const float* row = z + int64_t{j} * k;
      correct += (std::max_element(row, row + k) - row) == labels[start + j];
    }
  }
  return double(correct) / double(n);
}

// The fixed-point precision of an assignment (weights and activations per layer).
absl::StatusOr<trainer::SitePrecision> FixedPoint(const analysis::PrecisionAssignment& a) {
  v1::PrecisionConfig config;
  config.mutable_default_()->set_format("fp32");
  config.mutable_default_()->set_rounding("nearest");
  config.add_sites("weights");
  config.add_sites("activations");
  for (size_t l = 0; l < a.weight_bits.size(); ++l) {
    v1::LayerPrecision* layer = config.add_layers();
    layer->mutable_weights()->set_format(WeightFormat(a.weight_bits[l]));
    layer->mutable_weights()->set_rounding("nearest");
    layer->mutable_activations()->set_format(ActivationFormat(a.activation_bits[l]));
    layer->mutable_activations()->set_rounding("nearest");
  }
  return trainer::MakeSitePrecision(config, static_cast<int>(a.weight_bits.size()));
}

}  // namespace

absl::Status RunPredict(const PredictRequest& request, std::ostream& out, std::ostream& err) {
  if (!request.checkpoint.empty()) {
    return absl::UnimplementedError(
        "--checkpoint: the trainer has no public API yet to load a checkpoint's weights into a "
        "network; run without it to train the model in fp32 locally");
  }
  if (!(request.target_pm > 0 && request.target_pm <= 1)) {
    return absl::InvalidArgumentError("--target-pm must be in (0, 1]");
  }
  ASSIGN_OR_RETURN(v1::TrialConfig config, LoadTrainConfig(request.config_path, request.sets));
  ASSIGN_OR_RETURN(std::shared_ptr<const trainer::Dataset> data,
                   trainer::LoadDataset(config.dataset().name(), request.data_dir));
  const auto start = std::chrono::steady_clock::now();
  const int batch = std::max(1, config.train().batch_size());
  ASSIGN_OR_RETURN(std::unique_ptr<trainer::Network> net,
                   trainer::Network::Create(config.model(), data->channels, data->height,
                                            data->width, data->num_classes, batch, config.seed()));
  RETURN_IF_ERROR(TrainFloat32(*net, config, *data, err));
  const int64_t size = data->image_size();
  const int64_t test_n = config.dataset().test_limit() > 0
                             ? std::min(config.dataset().test_limit(), data->test_size())
                             : data->test_size();
  const int64_t gain_n = request.inputs > 0 ? std::min(request.inputs, test_n) : test_n;
  const double accuracy =
      Accuracy(*net, data->test_images.data(), data->test_labels.data(), test_n, size);
  err << "predict: fp32 test accuracy " << absl::StrFormat("%.2f%%", 100 * accuracy)
      << "; noise gains over " << gain_n << " test images\n";
  ASSIGN_OR_RETURN(
      trainer::NoiseGainReport gains,
      trainer::ComputeNoiseGains(*net, config.model(), data->test_images.data(), gain_n, size));
  std::vector<analysis::LayerNoiseGain> layers;
  bool all_known = true;
  for (const trainer::LayerNoiseGains& g : gains.layers) {
    // An unknown E_A (conv followed by conv) counts as 0 in the bound: it is then a lower bound.
    layers.push_back({g.layer, g.activations_known ? g.activations : 0.0, g.weights});
    all_known = all_known && g.activations_known;
  }
  ASSIGN_OR_RETURN(analysis::PrecisionAssignment uniform,
                   analysis::MinUniformPrecision(layers, request.target_pm));
  ASSIGN_OR_RETURN(analysis::PrecisionAssignment per_layer,
                   analysis::MinPerLayerPrecision(layers, request.target_pm));

  // The bound and the measured mismatch rate for uniform B around the prediction.
  json bounds = json::array();
  TextTable bound_table({"B", "bound p_m", "measured p_m"});
  for (size_t c = 0; c < 3; ++c) bound_table.SetAlign(c, TextTable::Align::kRight);
  const int lo = std::max(2, uniform.reference_bits - 4), hi = uniform.reference_bits + 3;
  for (int b = lo; b <= hi; ++b) {
    analysis::PrecisionAssignment a;
    a.weight_bits.assign(layers.size(), b);
    a.activation_bits.assign(layers.size(), b);
    ASSIGN_OR_RETURN(trainer::SitePrecision fixed, FixedPoint(a));
    const double measured =
        trainer::MeasureMismatchRate(*net, data->test_images.data(), test_n, size, fixed, 1);
    const double bound = analysis::UniformMismatchBound(layers, b);
    bounds.push_back({{"bits", b}, {"bound", bound}, {"measured", measured}});
    bound_table.AddRow(
        {absl::StrCat(b), absl::StrFormat("%.4g", bound), absl::StrFormat("%.4f", measured)});
  }
  ASSIGN_OR_RETURN(trainer::SitePrecision per_layer_fixed, FixedPoint(per_layer));
  const double per_layer_measured = trainer::MeasureMismatchRate(*net, data->test_images.data(),
                                                                 test_n, size, per_layer_fixed, 1);

  // Seed 003: accumulation lengths and the minimum accumulator mantissa per GEMM.
  ASSIGN_OR_RETURN(std::vector<analysis::LayerAccumulation> lengths,
                   analysis::AccumulationLengths(config.model(), data->channels, data->height,
                                                 data->width, data->num_classes, batch));
  analysis::VrrOptions vrr;
  vrr.samples = 200;
  json accumulators = json::array();
  TextTable acc_table({"layer", "forward n", "m", "backward n", "m", "gradient n", "m"});
  for (size_t c = 1; c < 7; ++c) acc_table.SetAlign(c, TextTable::Align::kRight);
  for (const analysis::LayerAccumulation& l : lengths) {
    std::vector<std::string> row = {l.layer};
    json entry = {{"layer", l.layer}};
    for (const auto& [name, n] : {std::pair<const char*, int64_t>{"forward", l.forward},
                                  {"backward", l.backward},
                                  {"gradient", l.gradient}}) {
      ASSIGN_OR_RETURN(int m, analysis::MinAccumulatorMantissa(n, request.min_vrr, vrr));
      entry[name] = {{"length", n}, {"min_mantissa", m}};
      row.push_back(absl::StrCat(n));
      row.push_back(absl::StrCat(m));
    }
    accumulators.push_back(entry);
    acc_table.AddRow(row);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  json gain_json = json::array();
  TextTable gain_table({"layer", "E_A", "E_W", "B_A", "B_W"});
  for (size_t c = 1; c < 5; ++c) gain_table.SetAlign(c, TextTable::Align::kRight);
  double total_a = 0, total_w = 0;
  for (size_t l = 0; l < gains.layers.size(); ++l) {
    const trainer::LayerNoiseGains& g = gains.layers[l];
    total_a += layers[l].activations;
    total_w += g.weights;
    gain_json.push_back({{"layer", g.layer},
                         {"E_A", g.activations_known ? json(g.activations) : json(nullptr)},
                         {"E_W", g.weights},
                         {"B_A", per_layer.activation_bits[l]},
                         {"B_W", per_layer.weight_bits[l]}});
    gain_table.AddRow(
        {g.layer, g.activations_known ? absl::StrFormat("%.4g", g.activations) : "n/a",
         absl::StrFormat("%.4g", g.weights), absl::StrCat(per_layer.activation_bits[l]),
         absl::StrCat(per_layer.weight_bits[l])});
  }
  if (request.json) {
    json result = {{"fp32_test_accuracy", accuracy},
                   {"inputs", gains.inputs},
                   {"skipped_ties", gains.skipped_ties},
                   {"target_pm", request.target_pm},
                   {"layers", gain_json},
                   {"E_A_total", total_a},
                   {"E_W_total", total_w},
                   {"all_activation_gains_known", all_known},
                   {"uniform", {{"min_bits", uniform.reference_bits}, {"bound", uniform.bound}}},
                   {"per_layer",
                    {{"reference_bits", per_layer.reference_bits},
                     {"bound", per_layer.bound},
                     {"measured", per_layer_measured}}},
                   {"bounds", bounds},
                   {"accumulators", accumulators},
                   {"min_vrr", request.min_vrr},
                   {"seconds", seconds}};
    out << result.dump(2) << "\n";
    return absl::OkStatus();
  }
  out << absl::StrFormat(
      "fp32 model: test accuracy %.2f%%; noise gains over %d test images (seed 001)\n",
      100 * accuracy, gains.inputs);
  gain_table.Render(out);
  out << absl::StrFormat("total E_A %.4g, E_W %.4g%s\n", total_a, total_w,
                         all_known ? "" : " (n/a gains left out: the bound is a lower bound)");
  out << absl::StrFormat(
      "\nmismatch bound p_m <= sum E * 4^(1-B) per uniform B, and measured on %d test images\n"
      "(weights fixed:B,B-1, activations fixed:B+%d,B-1, round to nearest)\n",
      test_n, kActivationExtraBits);
  bound_table.Render(out);
  out << absl::StrFormat(
      "\npredicted for p_m <= %g: uniform B = %d (bound %.4g); per layer (B_ref %d, bound %.4g, "
      "measured p_m %.4f): columns B_A / B_W above\n",
      request.target_pm, uniform.reference_bits, uniform.bound, per_layer.reference_bits,
      per_layer.bound, per_layer_measured);
  out << absl::StrFormat(
      "\nminimum accumulator mantissa bits m per GEMM (seed 003: Monte-Carlo VRR >= %.2f, "
      "%d sums, truncating accumulator)\n",
      request.min_vrr, vrr.samples);
  acc_table.Render(out);
  out << absl::StrFormat("\n(%.1f s)\n", seconds);
  return absl::OkStatus();
}

void AddPredictCommand(CLI::App& app, std::ostream* out, std::ostream* err,
                       const std::function<void(LocalRun)>& set_run) {
  auto request = std::make_shared<PredictRequest>();
  CLI::App* command = app.add_subcommand(
      "predict", "Predict the minimum precision of a model (seeds 001 and 003; no server needed)");
  command->add_option("CONFIG", request->config_path, "Trial config or sweep file (YAML)")
      ->required();
  command->add_option("--set", request->sets, "path=value applied over the config");
  command->add_option("--checkpoint", request->checkpoint,
                      "A trainer checkpoint (not supported yet)");
  command->add_option("--target-pm", request->target_pm, "Target mismatch probability")
      ->capture_default_str();
  command->add_option("--inputs", request->inputs, "Test images for the noise gains (0 = all)")
      ->capture_default_str();
  command
      ->add_option("--min-vrr", request->min_vrr,
                   "Accumulator: smallest acceptable variance retention ratio")
      ->capture_default_str();
  command->add_flag("--json", request->json, "Print JSON");
  command->add_option("--data-dir", request->data_dir, "Dataset directory")->capture_default_str();
  command->footer(
      "Example:\n"
      "  bitsweep predict examples/seed001_predict.yaml --target-pm 0.01");
  command->callback([request, out, err, set_run] {
    set_run([request, out, err]() -> absl::StatusOr<int> {
      absl::Status status = RunPredict(*request, *out, *err);
      if (!status.ok()) return status;
      return 0;
    });
  });
}

}  // namespace bitsweep::client
