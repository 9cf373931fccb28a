#include "worker/trainer/trial_config.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "worker/trainer/data/synthetic.h"
#include "worker/trainer/init.h"
#include "worker/trainer/network.h"
#include "worker/trainer/ops/activation.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/optim/optimizer.h"
#include "worker/trainer/optim/schedule.h"
#include "worker/trainer/quant/sites.h"

namespace bitsweep::trainer {
namespace {

// Bounds that keep a trial's memory and time sane; generous for the experiments of DESIGN §3.
constexpr int kMaxConvLayers = 5;
constexpr int kMaxDenseLayers = 5;
constexpr int kMaxFilters = 1024;
constexpr int kMaxKernel = 32;
constexpr int kMaxPool = 16;
constexpr int kMaxDenseWidth = 1 << 16;
constexpr int kMaxBatch = 1 << 16;

absl::Status Invalid(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Re-prefixes a parser's "'<spec>': ..." error with the field path.
absl::Status AtPath(absl::string_view path, const absl::Status& status) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", status.message()));
}

}  // namespace

v1::TrialConfig DefaultTrialConfig() {
  v1::TrialConfig c;
  c.mutable_dataset()->set_name("mnist");
  v1::ModelConfig* m = c.mutable_model();
  m->add_conv(32);
  m->add_conv(32);
  m->set_kernel(5);
  m->set_pool(2);
  m->add_dense(256);
  m->set_activation("relu");
  m->set_init("he");
  m->set_init_scale(1.0);
  v1::TrainConfig* t = c.mutable_train();
  t->set_epochs(1);
  t->set_iterations(0);
  t->set_batch_size(128);
  t->set_optimizer("momentum");
  t->set_lr(0.05);
  t->set_momentum(0.9);
  t->set_eval_every(100);
  t->set_target_accuracy(0.97);
  t->set_loss("cross_entropy");
  t->set_beta1(0.9);
  t->set_beta2(0.999);
  t->set_eps(1e-8);
  t->set_rho(0.9);
  t->set_weight_decay(0);
  t->set_lr_schedule("const");
  t->set_lr_gamma(0.1);
  t->set_lr_power(0.75);
  t->set_lr_step_size(1000);
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format("fp32");
  p->mutable_default_()->set_rounding("nearest");
  p->add_sites("weights");
  p->add_sites("activations");
  p->add_sites("errors");
  // seeds/002_a5ea6972c7539976.txt §4: E_max = R_max = 0.01%.
  v1::DynamicPrecisionConfig* dyn = p->mutable_dynamic();
  dyn->set_max_overflow_percent(0.01);
  dyn->set_max_error_percent(0.01);
  dyn->set_min_integer_bits(1);
  dyn->set_max_integer_bits(16);
  dyn->set_min_frac_bits(0);
  dyn->set_max_frac_bits(32);
  p->set_master_weights("none");
  c.set_seed(0);
  return c;
}

absl::Status ValidateTrialConfig(const v1::TrialConfig& config) {
  if (!config.kind().empty() && config.kind() != "train" && config.kind() != "simulated") {
    return Invalid("kind", absl::StrCat("'", config.kind(),
                                        "': unknown; supported: train, "
                                        "simulated"));
  }
  if (config.kind() == "simulated") {
    const v1::SimulationConfig& sim = config.simulation();
    if (sim.points() < 1 || sim.points() > 100000) {
      return Invalid("simulation.points", "must be between 1 and 100000");
    }
    if (sim.millis_per_point() < 0 || sim.millis_per_point() > 60000) {
      return Invalid("simulation.millis_per_point", "must be between 0 and 60000");
    }
  }
  const v1::DatasetConfig& d = config.dataset();
  if (d.name() != "mnist" && d.name() != "fashion-mnist" && d.name() != "cifar10" &&
      d.name() != "synthetic") {
    return Invalid("dataset.name",
                   absl::StrCat("unknown dataset '", d.name(),
                                "'; known: mnist, fashion-mnist, cifar10, synthetic"));
  }
  if (d.train_limit() < 0) return Invalid("dataset.train_limit", "must not be negative");
  if (d.test_limit() < 0) return Invalid("dataset.test_limit", "must not be negative");

  const v1::ModelConfig& m = config.model();
  if (m.conv_size() > kMaxConvLayers) {
    return Invalid("model.conv", absl::StrCat("at most ", kMaxConvLayers, " conv layers"));
  }
  for (int i = 0; i < m.conv_size(); ++i) {
    if (m.conv(i) < 1 || m.conv(i) > kMaxFilters) {
      return Invalid(absl::StrCat("model.conv[", i, "]"),
                     absl::StrCat("filters must be between 1 and ", kMaxFilters));
    }
  }
  for (const auto& [list, name] : {std::pair{&m.kernels(), "kernels"}, {&m.pools(), "pools"}}) {
    if (list->size() > 0 && list->size() != m.conv_size()) {
      return Invalid(
          absl::StrCat("model.", name),
          absl::StrCat(list->size(), " entries but model.conv has ", m.conv_size(), " layers"));
    }
  }
  for (int i = 0; i < m.kernels_size(); ++i) {
    if (m.kernels(i) < 1 || m.kernels(i) > kMaxKernel) {
      return Invalid(absl::StrCat("model.kernels[", i, "]"),
                     absl::StrCat("must be between 1 and ", kMaxKernel));
    }
  }
  for (int i = 0; i < m.pools_size(); ++i) {
    if (m.pools(i) < 1 || m.pools(i) > kMaxPool) {
      return Invalid(absl::StrCat("model.pools[", i, "]"),
                     absl::StrCat("must be between 1 (no pooling) and ", kMaxPool));
    }
  }
  if (m.conv_size() > 0 && m.kernels_size() == 0 && (m.kernel() < 1 || m.kernel() > kMaxKernel)) {
    return Invalid("model.kernel", absl::StrCat("must be between 1 and ", kMaxKernel));
  }
  if (m.conv_size() > 0 && m.pools_size() == 0 && (m.pool() < 1 || m.pool() > kMaxPool)) {
    return Invalid("model.pool", absl::StrCat("must be between 1 (no pooling) and ", kMaxPool));
  }
  if (m.dense_size() > kMaxDenseLayers) {
    return Invalid("model.dense",
                   absl::StrCat("at most ", kMaxDenseLayers, " hidden dense layers"));
  }
  for (int i = 0; i < m.dense_size(); ++i) {
    if (m.dense(i) < 1 || m.dense(i) > kMaxDenseWidth) {
      return Invalid(absl::StrCat("model.dense[", i, "]"),
                     absl::StrCat("width must be between 1 and ", kMaxDenseWidth));
    }
  }
  if (auto a = ParseActivation(m.activation()); !a.ok()) {
    return AtPath("model.activation", a.status());
  }
  if (auto i = ParseInit(m.init()); !i.ok()) return AtPath("model.init", i.status());
  if (!std::isfinite(m.init_scale()) || m.init_scale() <= 0) {
    return Invalid("model.init_scale", "must be a finite number > 0");
  }

  const v1::TrainConfig& t = config.train();
  if (t.iterations() < 0) return Invalid("train.iterations", "must not be negative");
  if (t.iterations() == 0 && t.epochs() < 1) {
    return Invalid("train.epochs", "must be at least 1 (or set train.iterations)");
  }
  if (t.batch_size() < 1 || t.batch_size() > kMaxBatch) {
    return Invalid("train.batch_size", absl::StrCat("must be between 1 and ", kMaxBatch));
  }
  auto optimizer = ParseOptimizer(t.optimizer());
  if (!optimizer.ok()) return AtPath("train.optimizer", optimizer.status());
  if (!std::isfinite(t.lr()) || t.lr() <= 0) {
    return Invalid("train.lr", "must be a finite number > 0");
  }
  if (!(t.momentum() >= 0 && t.momentum() < 1)) {
    return Invalid("train.momentum", "must be in [0, 1)");
  }
  if (!(t.beta1() >= 0 && t.beta1() < 1)) return Invalid("train.beta1", "must be in [0, 1)");
  if (!(t.beta2() >= 0 && t.beta2() < 1)) return Invalid("train.beta2", "must be in [0, 1)");
  if (!(t.rho() >= 0 && t.rho() < 1)) return Invalid("train.rho", "must be in [0, 1)");
  const bool adaptive = *optimizer == OptimizerKind::kAdam ||
                        *optimizer == OptimizerKind::kAdagrad ||
                        *optimizer == OptimizerKind::kRmsprop;
  // ε only enters adam, adagrad and rmsprop, whose first step divides by √0 + ε.
  if (!std::isfinite(t.eps()) || t.eps() < 0 || (adaptive && t.eps() <= 0)) {
    return Invalid("train.eps", "must be a finite number > 0 (for adam, adagrad, rmsprop)");
  }
  if (!std::isfinite(t.weight_decay()) || t.weight_decay() < 0) {
    return Invalid("train.weight_decay", "must be a finite number >= 0");
  }
  auto schedule = ParseLrSchedule(t.lr_schedule());
  if (!schedule.ok()) return AtPath("train.lr_schedule", schedule.status());
  if (*schedule == LrScheduleKind::kStep) {
    if (!(t.lr_gamma() > 0 && t.lr_gamma() <= 1)) {
      return Invalid("train.lr_gamma", "must be in (0, 1] for the step schedule");
    }
    if (t.lr_step_size() < 1) {
      return Invalid("train.lr_step_size", "must be at least 1 for the step schedule");
    }
  }
  if (*schedule == LrScheduleKind::kInv) {
    if (!std::isfinite(t.lr_gamma()) || t.lr_gamma() < 0) {
      return Invalid("train.lr_gamma", "must be a finite number >= 0 for the inv schedule");
    }
    if (!std::isfinite(t.lr_power()) || t.lr_power() < 0) {
      return Invalid("train.lr_power", "must be a finite number >= 0 for the inv schedule");
    }
  }
  if (t.eval_every() < 1) return Invalid("train.eval_every", "must be at least 1");
  if (!(t.target_accuracy() >= 0 && t.target_accuracy() <= 1)) {
    return Invalid("train.target_accuracy", "must be in [0, 1]");
  }
  if (auto l = ParseLoss(t.loss()); !l.ok()) return AtPath("train.loss", l.status());

  const bool fp64 = t.compute() == "fp64";
  if (!t.compute().empty() && t.compute() != "fp32" && !fp64) {
    return Invalid("train.compute",
                   absl::StrCat("'", t.compute(), "': unknown; supported: fp32, fp64"));
  }
  const int num_layers = m.conv_size() + m.dense_size() + 1;
  auto schedule_or = PrecisionSchedule(config.precision(), num_layers);
  if (!schedule_or.ok()) return schedule_or.status();
  if (fp64) {
    // The accumulator site emulates a float32 dot-product unit (ops/accumulator_gemm.h); a double
    // network has no such path. Every other site rounds through float32 (network.h).
    for (size_t i = 0; i < schedule_or->size(); ++i) {
      auto sites = MakeSitePrecision((*schedule_or)[i].config, num_layers);
      if (!sites.ok()) return sites.status();
      for (int layer = 0; layer < num_layers; ++layer) {
        if (sites->AccumulatorFor(layer) == nullptr) continue;
        return Invalid(i == 0 ? std::string("precision.sites")
                              : absl::StrCat("precision.schedule[", i - 1, "].precision"),
                       "the accumulator site (rounded dot products) is float32-only; it is not "
                       "supported with train.compute fp64");
      }
    }
  }
  const std::string& master = config.precision().master_weights();
  if (!master.empty() && master != "none" && master != "fp32") {
    return Invalid("precision.master_weights",
                   absl::StrCat("'", master, "': unknown; supported: none, fp32"));
  }

  // The image size is known for every named dataset, so a model too deep for it is caught
  // here, before a sweep is stored (Train checks again against the loaded data).
  const int side = d.name() == "synthetic" ? kSyntheticSide : d.name() == "cifar10" ? 32 : 28;
  const int channels = d.name() == "cifar10" ? 3 : 1;
  RETURN_IF_ERROR(CheckModelFits(m, side, side));
  // Train sizes its buffers for max(batch, evaluation chunk of 128).
  const int64_t bytes = EstimateNetworkBytes(m, channels, side, side, 10,
                                             std::max(t.batch_size(), 128), fp64 ? 8 : 4);
  if (bytes > kMaxNetworkBytes) {
    return Invalid("train.batch_size", absl::StrCat("with this model a trial needs ", bytes >> 20,
                                                    " MiB of weights and buffers, more than the ",
                                                    kMaxNetworkBytes >> 20, " MiB limit"));
  }
  return absl::OkStatus();
}

}  // namespace bitsweep::trainer
