#include "client/predict_command.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "analysis/accumulator_width.h"
#include "analysis/mismatch_bound.h"
#include "client/sweep_client.h"
#include "client/sweep_file.h"
#include "client/text_table.h"
#include "client/train_command.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "worker/trainer/analysis/gradient_retention.h"
#include "worker/trainer/analysis/noise_gain.h"
#include "worker/trainer/data/dataset.h"
#include "worker/trainer/network.h"
#include "worker/trainer/ops/conv.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/quant/sites.h"
#include "worker/trainer/trainer.h"

namespace bitsweep::client {
namespace {

// Accumulator mantissas at which predict measures the weight gradients' retention.
constexpr int kRetentionMantissas[] = {4, 6, 8, 10, 12, 14, 16, 18, 20, 22};

using nlohmann::json;

// Fixed point as seed 001 models it (seeds/001_c711bc6ac272f5cb.txt, Sakr et al. ICML'17): a
// B-bit two's complement number on a range normalised to [−1, 1), step Δ = 2^(1−B). Our layers'
// weights and activations are not all inside [−1, 1) (trained weights reach |w| > 1, relu
// activations and logits grow to tens), so each quantity q of each layer gets its own range
// [−2^I, 2^I), I >= 0 the fewest integer bits holding every value seen (the paper's
// normalisation, by a power of two so that it is plain fixed point): fixed:B,B−1−I, step
// 2^I · 2^(1−B). The bound then uses that step: its term is E · (2^I Δ)² = (E · 4^I) · 4^(1−B),
// so the gains handed to analysis/mismatch_bound.h are E · 4^I ("range-scaled gains"), and the
// per-layer assignment equalises E · 4^I · Δ² as the paper's equalisation of reflected noise
// variances does. B < I + 1 cannot hold the range: the width is raised to I + 1 (no fractional
// bits), whose step 2^I is still the bound's step for that width.
struct Ranges {
  std::vector<int> weights, activations;  // integer bits I per layer
};

int Width(int bits, int integer_bits) { return std::max(bits, integer_bits + 1); }

std::string FixedFormat(int bits, int integer_bits) {
  const int width = Width(bits, integer_bits);
  return absl::StrCat("fixed:", width, ",", width - 1 - integer_bits);
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

// The precision config of an assignment: weights and activations per layer in fixed point on the
// layer's ranges, round to nearest; everything else float32.
v1::PrecisionConfig FixedPointConfig(const analysis::PrecisionAssignment& a, const Ranges& ranges) {
  v1::PrecisionConfig config;
  config.mutable_default_()->set_format("fp32");
  config.mutable_default_()->set_rounding("nearest");
  config.add_sites("weights");
  config.add_sites("activations");
  for (size_t l = 0; l < a.weight_bits.size(); ++l) {
    v1::LayerPrecision* layer = config.add_layers();
    layer->mutable_weights()->set_format(FixedFormat(a.weight_bits[l], ranges.weights[l]));
    layer->mutable_weights()->set_rounding("nearest");
    layer->mutable_activations()->set_format(
        FixedFormat(a.activation_bits[l], ranges.activations[l]));
    layer->mutable_activations()->set_rounding("nearest");
  }
  return config;
}

absl::StatusOr<trainer::SitePrecision> FixedPoint(const analysis::PrecisionAssignment& a,
                                                  const Ranges& ranges) {
  return trainer::MakeSitePrecision(FixedPointConfig(a, ranges),
                                    static_cast<int>(a.weight_bits.size()));
}

analysis::PrecisionAssignment Uniform(int bits, size_t layers) {
  analysis::PrecisionAssignment a;
  a.weight_bits.assign(layers, bits);
  a.activation_bits.assign(layers, bits);
  a.reference_bits = bits;
  return a;
}

// Proto JSON writes 64-bit integers as strings; sweep files want numbers.
void IntegersAsNumbers(json& j) {
  if (j.is_object() || j.is_array()) {
    for (json& child : j) IntegersAsNumbers(child);
  } else if (j.is_string()) {
    const std::string& text = j.get_ref<const std::string&>();
    const bool digits = !text.empty() && text.size() < 19 &&
                        std::all_of(text.begin() + (text[0] == '-' ? 1 : 0), text.end(),
                                    [](char c) { return c >= '0' && c <= '9'; }) &&
                        text != "-";
    if (digits) j = std::stoll(text);
  }
}

// One value of the verifying sweep's precision.layers axis: its label, the uniform B (0 for
// the fp32 baseline and the per-layer assignment) and the list of layer overrides.
struct VerifyPoint {
  std::string label;
  int bits = 0;
  json layers;
};

// The values of the verifying sweep's axis, in order: the fp32 baseline (no layer formats),
// uniform B-2..B+2 and the per-layer assignment, in exactly the formats measured here.
std::vector<VerifyPoint> VerifyPoints(const analysis::PrecisionAssignment& uniform,
                                      const analysis::PrecisionAssignment& per_layer,
                                      const Ranges& ranges) {
  const size_t layers = uniform.weight_bits.size();
  auto layer_list = [&](const analysis::PrecisionAssignment& a) {
    json list = json::array();
    const v1::PrecisionConfig c = FixedPointConfig(a, ranges);
    for (const v1::LayerPrecision& l : c.layers()) {
      list.push_back(
          {{"weights", {{"format", l.weights().format()}, {"rounding", "nearest"}}},
           {"activations", {{"format", l.activations().format()}, {"rounding", "nearest"}}}});
    }
    return list;
  };
  std::vector<VerifyPoint> points;
  points.push_back({"fp32 baseline", 0, json::array()});
  for (int b = uniform.reference_bits - 2; b <= uniform.reference_bits + 2; ++b) {
    if (b < 2) continue;
    points.push_back({absl::StrCat("uniform B = ", b), b, layer_list(Uniform(b, layers))});
  }
  points.push_back({absl::StrCat("per-layer assignment, B_ref = ", per_layer.reference_bits), 0,
                    layer_list(per_layer)});
  return points;
}

// Writes the verifying sweep (see predict_command.h): `config` as the base, float32 weights and
// activations by default with master weights fp32, and one axis precision.layers over `points`.
absl::Status WriteVerifySweep(const std::string& path, const v1::TrialConfig& config,
                              const std::vector<VerifyPoint>& points) {
  v1::TrialConfig base = config;
  base.clear_seed();
  v1::PrecisionConfig* precision = base.mutable_precision();
  precision->Clear();
  precision->mutable_default_()->set_format("fp32");
  precision->mutable_default_()->set_rounding("nearest");
  precision->add_sites("weights");
  precision->add_sites("activations");
  // The forward pass sees the B-bit weights; the optimiser updates a float32 copy, so that
  // small updates are not lost to the weight format's step (a network *with* these formats).
  precision->set_master_weights("fp32");
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string text;
  auto status = google::protobuf::util::MessageToJsonString(base, &text, options);
  if (!status.ok()) return absl::InternalError(std::string(status.message()));
  json base_json = json::parse(text);
  IntegersAsNumbers(base_json);

  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) return absl::NotFoundError(absl::StrCat("--verify-sweep: cannot write ", path));
  const std::string stem = std::filesystem::path(path).stem().string();
  file << "# The verifying sweep of seed 001 (seeds/001_c711bc6ac272f5cb.txt), written by\n"
          "# `bitsweep predict`: fixed point (fixed:W,FL, round to nearest) at the weights and\n"
          "# activations sites, per layer on the ranges [-2^I, 2^I) of the float32 model.\n"
          "# Values of precision.layers, in order:\n";
  for (size_t i = 0; i < points.size(); ++i) file << "#   " << i << ": " << points[i].label << "\n";
  file << "name: " << json(stem.empty() ? "seed001-verify" : stem).dump() << "\n";
  file << "base: " << base_json.dump() << "\n";
  file << "sweep:\n  method: grid\n  seeds: 1\n  parameters:\n    precision.layers:\n";
  for (const VerifyPoint& point : points) file << "      - " << point.layers.dump() << "\n";
  file.close();
  if (!file) return absl::DataLossError(absl::StrCat("--verify-sweep: error writing ", path));
  return absl::OkStatus();
}

// Loads the weights of trainer checkpoint `bytes` into `net` (which the config built). `what`
// names the checkpoint in errors.
absl::Status LoadWeights(const std::string& bytes, const std::string& what, trainer::Network& net) {
  absl::StatusOr<std::vector<std::vector<float>>> weights = trainer::CheckpointWeights(bytes);
  if (!weights.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", weights.status().message()));
  }
  std::vector<trainer::Param>& params = net.params();
  if (weights->size() != params.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": has ", weights->size(),
                                                   " parameter tensors, the config's model has ",
                                                   params.size()));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if ((*weights)[i].size() != params[i].value.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": parameter tensor ", i, " has ", (*weights)[i].size(),
                       " values, the config's model ", params[i].value.size()));
    }
  }
  for (size_t i = 0; i < params.size(); ++i) params[i].value = std::move((*weights)[i]);
  return absl::OkStatus();
}

// Where the float32 model's weights come from: a checkpoint (`what` names it in messages), or
// training here when `what` is empty.
struct ModelWeights {
  std::string checkpoint;
  std::string what;
};

// The prediction of RunPredict for `config` and `weights`: printed to `out` (text, or JSON
// with request.json) and returned as the JSON object `--json` prints.
absl::StatusOr<json> Predict(const v1::TrialConfig& config, const ModelWeights& weights,
                             const PredictRequest& request, std::ostream& out, std::ostream& err) {
  if (!(request.target_pm > 0 && request.target_pm <= 1)) {
    return absl::InvalidArgumentError("--target-pm must be in (0, 1]");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const trainer::Dataset> data,
                   trainer::LoadDataset(config.dataset().name(), request.data_dir));
  const auto start = std::chrono::steady_clock::now();
  const int batch = std::max(1, config.train().batch_size());
  ASSIGN_OR_RETURN(std::unique_ptr<trainer::Network> net,
                   trainer::Network::Create(config.model(), data->channels, data->height,
                                            data->width, data->num_classes, batch, config.seed()));
  if (weights.what.empty()) {
    RETURN_IF_ERROR(TrainFloat32(*net, config, *data, err));
  } else {
    RETURN_IF_ERROR(LoadWeights(weights.checkpoint, weights.what, *net));
    err << "predict: weights from " << weights.what << "\n";
  }
  const double train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t size = data->image_size();
  const int64_t test_n = config.dataset().test_limit() > 0
                             ? std::min(config.dataset().test_limit(), data->test_size())
                             : data->test_size();
  const int64_t gain_n = request.inputs > 0 ? std::min(request.inputs, test_n) : test_n;
  const float* test_images = data->test_images.data();
  const double accuracy = Accuracy(*net, test_images, data->test_labels.data(), test_n, size);
  err << "predict: fp32 test accuracy " << absl::StrFormat("%.2f%%", 100 * accuracy)
      << "; noise gains over " << gain_n << " test images\n";
  ASSIGN_OR_RETURN(trainer::NoiseGainReport gains,
                   trainer::ComputeNoiseGains(*net, config.model(), test_images, gain_n,
                                              data->channels, data->height, data->width));
  // Each quantity's range (see FixedFormat): weights from the model, activations over the test
  // images the mismatch is measured on.
  Ranges ranges;
  ranges.weights = trainer::WeightIntegerBits(*net);
  ranges.activations = trainer::ActivationIntegerBits(*net, test_images, test_n, size);
  std::vector<analysis::LayerNoiseGain> layers;  // range-scaled: E · 4^I
  for (size_t l = 0; l < gains.layers.size(); ++l) {
    const trainer::LayerNoiseGains& g = gains.layers[l];
    layers.push_back({g.layer, std::ldexp(g.activations, 2 * ranges.activations[l]),
                      std::ldexp(g.weights, 2 * ranges.weights[l])});
  }
  const int min_width =
      1 + std::max(*std::max_element(ranges.weights.begin(), ranges.weights.end()),
                   *std::max_element(ranges.activations.begin(), ranges.activations.end()));
  ASSIGN_OR_RETURN(analysis::PrecisionAssignment uniform,
                   analysis::MinUniformPrecision(layers, request.target_pm));
  ASSIGN_OR_RETURN(analysis::PrecisionAssignment per_layer,
                   analysis::MinPerLayerPrecision(layers, request.target_pm));
  // Widths below a range's I + 1 are raised to it (FixedFormat); the bound follows.
  for (size_t l = 0; l < layers.size(); ++l) {
    per_layer.weight_bits[l] = Width(per_layer.weight_bits[l], ranges.weights[l]);
    per_layer.activation_bits[l] = Width(per_layer.activation_bits[l], ranges.activations[l]);
  }
  ASSIGN_OR_RETURN(per_layer.bound, analysis::MismatchBound(layers, per_layer.activation_bits,
                                                            per_layer.weight_bits));

  // The bound and the measured mismatch rate for uniform B around the prediction, from the
  // narrowest width that holds every range.
  const auto measure_start = std::chrono::steady_clock::now();
  json bounds = json::array();
  TextTable bound_table({"B", "bound p_m", "measured p_m"});
  for (size_t c = 0; c < 3; ++c) bound_table.SetAlign(c, TextTable::Align::kRight);
  const int lo = std::max({2, min_width, uniform.reference_bits - 4});
  const int hi = std::max(lo, uniform.reference_bits + 6);
  int measured_min_bits = -1;
  for (int b = lo; b <= hi; ++b) {
    ASSIGN_OR_RETURN(trainer::SitePrecision fixed, FixedPoint(Uniform(b, layers.size()), ranges));
    const double measured = trainer::MeasureMismatchRate(*net, test_images, test_n, size, fixed, 1);
    const double bound = analysis::UniformMismatchBound(layers, b);
    if (measured <= request.target_pm && measured_min_bits < 0) measured_min_bits = b;
    if (measured > request.target_pm) measured_min_bits = -1;  // not yet for good
    bounds.push_back({{"bits", b}, {"bound", bound}, {"measured", measured}});
    bound_table.AddRow(
        {absl::StrCat(b), absl::StrFormat("%.4g", bound), absl::StrFormat("%.4f", measured)});
  }
  ASSIGN_OR_RETURN(trainer::SitePrecision per_layer_fixed, FixedPoint(per_layer, ranges));
  const double per_layer_measured =
      trainer::MeasureMismatchRate(*net, test_images, test_n, size, per_layer_fixed, 1);
  const double measure_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - measure_start).count();
  const std::vector<VerifyPoint> verify_points = VerifyPoints(uniform, per_layer, ranges);
  if (!request.verify_sweep.empty()) {
    RETURN_IF_ERROR(WriteVerifySweep(request.verify_sweep, config, verify_points));
    err << "predict: verifying sweep written to " << request.verify_sweep
        << " (submit it with `bitsweep submit`)\n";
  }

  // Seed 003: the accumulations as the trainer's accumulator site performs them, and the
  // minimum accumulator mantissa of each.
  ASSIGN_OR_RETURN(
      std::vector<analysis::LayerAccumulation> lengths,
      analysis::AccumulationLengths(config.model(), data->channels, data->height, data->width,
                                    data->num_classes, batch, trainer::kConvGroup));
  analysis::VrrOptions vrr;
  vrr.samples = 200;
  json accumulators = json::array();
  TextTable acc_table({"layer", "forward n", "m", "backward n", "m", "gradient n", "m"});
  for (size_t c = 1; c < 7; ++c) acc_table.SetAlign(c, TextTable::Align::kRight);
  for (const analysis::LayerAccumulation& l : lengths) {
    std::vector<std::string> row = {l.layer};
    json entry = {{"layer", l.layer}};
    for (const auto& [name, sum] :
         {std::pair<const char*, analysis::Accumulation>{"forward", l.forward},
          {"backward", l.backward},
          {"gradient", l.gradient}}) {
      ASSIGN_OR_RETURN(int m, analysis::MinAccumulatorMantissa(sum, request.min_vrr, vrr));
      entry[name] = {{"length", sum.chain}, {"groups", sum.groups}, {"min_mantissa", m}};
      row.push_back(sum.groups > 1 ? absl::StrCat(sum.chain, " x", sum.groups)
                                   : absl::StrCat(sum.chain));
      row.push_back(absl::StrCat(m));
    }
    entry["gradient"]["dot_product"] = l.gradient_dot_product;
    accumulators.push_back(entry);
    acc_table.AddRow(row);
  }
  // Seed 003 on the model's own GEMMs: the weight gradients of the first training batch with
  // every accumulation rounded to float:8,m (truncating, and to nearest), against float32.
  ASSIGN_OR_RETURN(const trainer::Loss loss, trainer::ParseLoss(config.train().loss()));
  const int retention_n = static_cast<int>(std::min<int64_t>(batch, data->train_size()));
  json retention = json::array();
  std::vector<std::string> ret_header = {"m", "rounding"};
  for (int l = 0; l < net->num_layers(); ++l) ret_header.push_back(net->LayerName(l));
  TextTable ret_table(ret_header);
  for (size_t c = 2; c < ret_header.size(); ++c) ret_table.SetAlign(c, TextTable::Align::kRight);
  for (int m : kRetentionMantissas) {
    for (const char* rounding : {"truncate", "nearest"}) {
      v1::PrecisionConfig acc;
      acc.mutable_default_()->set_format("fp32");
      acc.mutable_default_()->set_rounding("nearest");
      acc.add_sites("accumulator");
      acc.mutable_accumulator()->set_format(absl::StrCat("float:8,", m));
      acc.mutable_accumulator()->set_rounding(rounding);
      ASSIGN_OR_RETURN(trainer::SitePrecision precision,
                       trainer::MakeSitePrecision(acc, net->num_layers()));
      ASSIGN_OR_RETURN(std::vector<trainer::LayerGradientRetention> kept,
                       trainer::MeasureGradientRetention(*net, data->train_images.data(),
                                                         data->train_labels.data(), retention_n,
                                                         loss, precision, 1));
      std::vector<std::string> row = {absl::StrCat(m), rounding};
      json entry = {{"mantissa", m}, {"rounding", rounding}, {"layers", json::array()}};
      for (const trainer::LayerGradientRetention& r : kept) {
        row.push_back(absl::StrFormat("%.3f / %.4f", r.retention, r.cosine));
        entry["layers"].push_back(
            {{"layer", r.layer}, {"retention", r.retention}, {"cosine", r.cosine}});
      }
      retention.push_back(entry);
      ret_table.AddRow(row);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  json gain_json = json::array();
  TextTable gain_table({"layer", "E_A", "E_W", "I_A", "I_W", "B_A", "B_W"});
  for (size_t c = 1; c < 7; ++c) gain_table.SetAlign(c, TextTable::Align::kRight);
  double total_a = 0, total_w = 0;
  for (size_t l = 0; l < gains.layers.size(); ++l) {
    const trainer::LayerNoiseGains& g = gains.layers[l];
    total_a += g.activations;
    total_w += g.weights;
    gain_json.push_back({{"layer", g.layer},
                         {"E_A", g.activations},
                         {"E_W", g.weights},
                         {"I_A", ranges.activations[l]},
                         {"I_W", ranges.weights[l]},
                         {"B_A", per_layer.activation_bits[l]},
                         {"B_W", per_layer.weight_bits[l]}});
    gain_table.AddRow({g.layer, absl::StrFormat("%.4g", g.activations),
                       absl::StrFormat("%.4g", g.weights), absl::StrCat(ranges.activations[l]),
                       absl::StrCat(ranges.weights[l]), absl::StrCat(per_layer.activation_bits[l]),
                       absl::StrCat(per_layer.weight_bits[l])});
  }
  double scaled_total = 0;
  for (const analysis::LayerNoiseGain& l : layers) scaled_total += l.activations + l.weights;
  json assignments = json::array();
  for (const VerifyPoint& point : verify_points) {
    assignments.push_back({{"label", point.label},
                           {"bits", point.bits > 0 ? json(point.bits) : json(nullptr)},
                           {"precision_layers", point.layers}});
  }
  json result = {
      {"fp32_test_accuracy", accuracy},
      {"inputs", gains.inputs},
      {"mismatch_inputs", test_n},
      {"skipped_ties", gains.skipped_ties},
      {"target_pm", request.target_pm},
      {"layers", gain_json},
      {"E_A_total", total_a},
      {"E_W_total", total_w},
      {"E_scaled_total", scaled_total},
      {"uniform",
       {{"min_bits", uniform.reference_bits},
        {"bound", uniform.bound},
        {"measured_min_bits", measured_min_bits >= 0 ? json(measured_min_bits) : json(nullptr)}}},
      {"per_layer",
       {{"reference_bits", per_layer.reference_bits},
        {"bound", per_layer.bound},
        {"measured", per_layer_measured}}},
      {"bounds", bounds},
      {"accumulators", accumulators},
      {"gradient_retention", retention},
      {"min_vrr", request.min_vrr},
      {"train_seconds", train_seconds},
      {"measure_seconds", measure_seconds},
      {"assignments", assignments},
      {"seconds", seconds}};
  if (!request.verify_sweep.empty()) result["verify_sweep"] = request.verify_sweep;
  if (request.json) {
    out << result.dump(2) << "\n";
    return result;
  }
  out << absl::StrFormat(
      "fp32 model: test accuracy %.2f%%; noise gains over %d test images (seed 001)\n",
      100 * accuracy, gains.inputs);
  gain_table.Render(out);
  out << absl::StrFormat(
      "total E_A %.4g, E_W %.4g; range-scaled sum E*4^I %.4g (I = integer bits of each range "
      "[-2^I, 2^I))\n",
      total_a, total_w, scaled_total);
  out << absl::StrFormat(
      "\nmismatch bound p_m <= sum E*4^I * 4^(1-B) per uniform B, and measured on %d test images\n"
      "(weights and activations fixed:B,B-1-I per layer, round to nearest)\n",
      test_n);
  bound_table.Render(out);
  out << absl::StrFormat(
      "\npredicted for p_m <= %g: uniform B = %d (bound %.4g); measured: %s\n"
      "per layer (B_ref %d, bound %.4g, measured p_m %.4f): columns B_A / B_W above\n",
      request.target_pm, uniform.reference_bits, uniform.bound,
      measured_min_bits >= 0 ? absl::StrCat("B = ", measured_min_bits)
                             : std::string("not reached in the table"),
      per_layer.reference_bits, per_layer.bound, per_layer_measured);
  out << absl::StrFormat(
      "\nminimum accumulator mantissa bits m per GEMM (seed 003: Monte-Carlo VRR >= %.2f, "
      "%d sums, truncating accumulator; n as the trainer accumulates: a chain of n products, "
      "\"n xG\" G chains whose results are then summed)\n",
      request.min_vrr, vrr.samples);
  acc_table.Render(out);
  out << absl::StrFormat(
      "\nmeasured on this model's GEMMs (seed 003): weight-gradient retention sum(g^2)/sum(g0^2) "
      "/ cosine to float32, one batch of %d training images, every accumulation float:8,m\n",
      retention_n);
  ret_table.Render(out);
  out << absl::StrFormat("\n(%.1f s: fp32 model %.1f s, mismatch measurements %.1f s)\n", seconds,
                         train_seconds, measure_seconds);
  return result;
}

// The weights of the --checkpoint file. Errors: NotFound (unreadable).
absl::StatusOr<ModelWeights> CheckpointFileWeights(const PredictRequest& request) {
  std::ifstream file(request.checkpoint, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("--checkpoint: cannot read ", request.checkpoint));
  }
  std::ostringstream bytes;
  bytes << file.rdbuf();
  ModelWeights weights;
  weights.checkpoint = bytes.str();
  weights.what = absl::StrCat("--checkpoint ", request.checkpoint);
  return weights;
}

}  // namespace

absl::Status RunPredict(const PredictRequest& request, std::ostream& out, std::ostream& err) {
  ASSIGN_OR_RETURN(v1::TrialConfig config, LoadTrainConfig(request.config_path, request.sets));
  ModelWeights weights;
  if (!request.checkpoint.empty()) {
    ASSIGN_OR_RETURN(weights, CheckpointFileWeights(request));
  }
  return Predict(config, weights, request, out, err).status();
}

bool IsTrialId(const std::string& argument) {
  return !argument.empty() && argument.size() < 19 &&
         std::all_of(argument.begin(), argument.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool NeedsServer(const PredictRequest& request) {
  return IsTrialId(request.config_path) || request.record || request.record_sweep != 0 ||
         request.submit;
}

namespace {

// The trial's config with `sets` applied the way LoadTrainConfig applies them (through the
// same YAML path), validated.
absl::StatusOr<v1::TrialConfig> ApplySets(const v1::TrialConfig& config, int64_t trial_id,
                                          const std::vector<std::string>& sets) {
  if (sets.empty()) return config;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  // Every field, zeros included: the YAML path fills what is left out with the defaults.
  options.always_print_primitive_fields = true;
  std::string text;
  auto status = google::protobuf::util::MessageToJsonString(config, &text, options);
  if (!status.ok()) return absl::InternalError(std::string(status.message()));
  json j = json::parse(text);
  IntegersAsNumbers(j);
  return TrainConfigFromYaml(j.dump(), absl::StrCat("trial ", trial_id, "'s config"), sets);
}

}  // namespace

absl::StatusOr<int> PredictCommand(SweepClient& client, const PredictRequest& request,
                                   std::ostream& out, std::ostream& err) {
  // Usage errors before any work: the prediction takes seconds to minutes.
  const bool trial_argument = IsTrialId(request.config_path);
  if (request.submit && request.verify_sweep.empty()) {
    return absl::InvalidArgumentError(
        "--submit submits the verifying sweep: give --verify-sweep FILE too");
  }
  if (request.submit && request.record_sweep != 0) {
    return absl::InvalidArgumentError(
        "--submit records on the sweep it submits: --sweep cannot name another");
  }
  if (request.record && request.record_sweep == 0 && !request.submit && !trial_argument) {
    return absl::InvalidArgumentError(
        "--record: on which sweep? give --sweep ID (or predict a TRIAL, recorded on its sweep, "
        "or --submit the verifying sweep)");
  }
  if (trial_argument && !request.checkpoint.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint: trial ", request.config_path,
                     "'s weights come from the server; --checkpoint FILE goes with a CONFIG file"));
  }
  v1::TrialConfig config;
  ModelWeights weights;
  int64_t trial_id = 0;
  int64_t trial_sweep = 0;
  std::string source;
  if (trial_argument) {
    if (!absl::SimpleAtoi(request.config_path, &trial_id) || trial_id <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("TRIAL: '", request.config_path, "' is not a trial id"));
    }
    ASSIGN_OR_RETURN(v1::GetTrialResponse trial, client.GetTrial(trial_id, false));
    trial_sweep = trial.trial().sweep_id();
    ASSIGN_OR_RETURN(config, ApplySets(trial.trial().config(), trial_id, request.sets));
    ASSIGN_OR_RETURN(v1::GetTrialCheckpointResponse checkpoint,
                     client.GetTrialCheckpoint(trial_id));
    const std::string state = absl::AsciiStrToLower(
        absl::StripPrefix(v1::TrialState_Name(checkpoint.trial_state()), "TRIAL_STATE_"));
    weights.what = absl::StrCat("trial ", trial_id, "'s checkpoint (", state, ", after iteration ",
                                checkpoint.iteration(), ")");
    weights.checkpoint = std::move(*checkpoint.mutable_state());
    source = absl::StrCat("trial ", trial_id);
  } else {
    ASSIGN_OR_RETURN(config, LoadTrainConfig(request.config_path, request.sets));
    if (!request.checkpoint.empty()) {
      ASSIGN_OR_RETURN(weights, CheckpointFileWeights(request));
      source = absl::StrCat(request.config_path, " with checkpoint ", request.checkpoint);
    } else {
      source = absl::StrCat(request.config_path, " (trained in fp32 by predict)");
    }
  }
  ASSIGN_OR_RETURN(json result, Predict(config, weights, request, out, err));
  int64_t record_on = request.record_sweep != 0 ? request.record_sweep : 0;
  if (request.submit) {
    ASSIGN_OR_RETURN(v1::SweepSpec spec, ParseSweepFile(request.verify_sweep));
    absl::StatusOr<v1::SubmitSweepResponse> submitted = client.SubmitSweep(spec, false);
    if (!submitted.ok()) {
      return absl::Status(
          submitted.status().code(),
          absl::StrCat("--submit ", request.verify_sweep, ": ", submitted.status().message()));
    }
    record_on = submitted->sweep_id();
    err << "predict: verifying sweep "
        << (submitted->existing() ? "already submitted as" : "submitted as") << " sweep "
        << record_on << " (" << submitted->trial_count() << " trials)\n";
  } else if (request.record && record_on == 0) {
    record_on = trial_sweep;
  }
  if (record_on != 0) {
    ASSIGN_OR_RETURN(int64_t id,
                     client.RecordPrediction(record_on, trial_id, source, result.dump()));
    err << "predict: prediction " << id << " recorded on sweep " << record_on << "\n";
  }
  return 0;
}

void AddPredictCommand(CLI::App& app, std::ostream* out, std::ostream* err,
                       const std::function<void(LocalRun)>& set_local_run,
                       const std::function<void(RemoteRun)>& set_remote_run) {
  auto request = std::make_shared<PredictRequest>();
  CLI::App* command =
      app.add_subcommand("predict",
                         "Predict the minimum precision of a model (seeds 001 and 003; from a "
                         "config locally, or from a trial of the server)");
  command
      ->add_option("CONFIG_OR_TRIAL", request->config_path,
                   "Trial config or sweep file (YAML), or the id of a finished trial that kept "
                   "its final checkpoint (train.keep_final_checkpoint: true)")
      ->required();
  command->add_option("--set", request->sets, "path=value applied over the config");
  command->add_option("--checkpoint", request->checkpoint,
                      "Take the weights from this trainer checkpoint file instead of training "
                      "(the model must be CONFIG's)");
  command->add_option("--verify-sweep", request->verify_sweep,
                      "Also write the verifying sweep file (fp32, uniform B-2..B+2, per-layer) "
                      "here");
  command->add_option("--target-pm", request->target_pm, "Target mismatch probability")
      ->capture_default_str();
  command->add_option("--inputs", request->inputs, "Test images for the noise gains (0 = all)")
      ->capture_default_str();
  command
      ->add_option("--min-vrr", request->min_vrr,
                   "Accumulator: smallest acceptable variance retention ratio")
      ->capture_default_str();
  command->add_flag("--json", request->json, "Print JSON");
  command->add_flag("--record", request->record,
                    "Record the prediction at the server (on --sweep, else on TRIAL's sweep, "
                    "else on the sweep --submit creates); the dashboard shows it");
  command->add_option("--sweep", request->record_sweep,
                      "Record the prediction on this sweep (implies --record)");
  command->add_flag("--submit", request->submit,
                    "Submit the --verify-sweep file and record the prediction on that sweep");
  command->add_option("--data-dir", request->data_dir, "Dataset directory")->capture_default_str();
  command->footer(
      "With a TRIAL id the config and weights come from the server (GetTrial and its kept\n"
      "checkpoint): sweep with train.keep_final_checkpoint: true, then predict any finished\n"
      "trial. --record stores the JSON prediction on a sweep; the sweep page shows it next to\n"
      "the sweep's measurements (with --submit, next to the verifying sweep's accuracies).\n"
      "Seed 001 (Sakr et al.): noise gains E_A, E_W per layer, the bound\n"
      "p_m <= sum E*4^I * 4^(1-B) (each quantity in fixed point on its own range [-2^I, 2^I),\n"
      "I from the fp32 model), the predicted minimum uniform B and per-layer B_A / B_W, and the\n"
      "mismatch rate measured against the fp32 network on the config's test images.\n"
      "The fp32 model: trained here from CONFIG (plain SGD with its lr and momentum), or the\n"
      "weights of a trainer checkpoint (--checkpoint FILE; e.g. from the server:\n"
      "curl -o c.bin http://HOST:8080/api/trials/N/checkpoint), or of TRIAL's kept checkpoint.\n"
      "--verify-sweep FILE writes a sweep over precision.layers: the fp32 baseline, uniform\n"
      "B-2..B+2 and the per-layer assignment, in exactly the formats measured here (weights\n"
      "and activations sites, master weights fp32). Submit it (bitsweep submit FILE): the\n"
      "trials' final test accuracies are the accuracy of each precision; the mismatch rates\n"
      "are the ones printed here.\n"
      "Examples:\n"
      "  bitsweep predict examples/seed001_predict.yaml --target-pm 0.01\n"
      "  bitsweep predict examples/seed001_predict.yaml --verify-sweep verify.yaml\n"
      "  bitsweep submit verify.yaml && bitsweep analyze SWEEP_ID\n"
      "  bitsweep predict 12 --record\n"
      "  bitsweep predict 12 --verify-sweep verify.yaml --submit");
  command->callback([request, out, err, set_local_run, set_remote_run] {
    // A trial id or recording needs the server; a CONFIG alone runs offline.
    if (NeedsServer(*request)) {
      set_remote_run([request, out, err](SweepClient& client, const CommandEnv&) {
        return PredictCommand(client, *request, *out, *err);
      });
      return;
    }
    set_local_run([request, out, err]() -> absl::StatusOr<int> {
      absl::Status status = RunPredict(*request, *out, *err);
      if (!status.ok()) return status;
      return 0;
    });
  });
}

}  // namespace bitsweep::client
