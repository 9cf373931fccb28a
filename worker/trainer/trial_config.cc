#include "worker/trainer/trial_config.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "worker/trainer/data/synthetic.h"
#include "worker/trainer/init.h"
#include "worker/trainer/network.h"
#include "worker/trainer/ops/activation.h"
#include "worker/trainer/ops/loss.h"
#include "worker/trainer/optim/optimizer.h"
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
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format("fp32");
  p->mutable_default_()->set_rounding("nearest");
  p->add_sites("weights");
  p->add_sites("activations");
  p->add_sites("errors");
  c.set_seed(0);
  return c;
}

absl::Status ValidateTrialConfig(const v1::TrialConfig& config) {
  const v1::DatasetConfig& d = config.dataset();
  if (d.name() != "mnist" && d.name() != "fashion-mnist" && d.name() != "synthetic") {
    return Invalid("dataset.name", absl::StrCat("unknown dataset '", d.name(),
                                                "'; known: mnist, fashion-mnist, synthetic"));
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
  if (m.conv_size() > 0 && (m.kernel() < 1 || m.kernel() > kMaxKernel)) {
    return Invalid("model.kernel", absl::StrCat("must be between 1 and ", kMaxKernel));
  }
  if (m.conv_size() > 0 && (m.pool() < 1 || m.pool() > kMaxPool)) {
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
  if (auto o = ParseOptimizer(t.optimizer()); !o.ok()) {
    return AtPath("train.optimizer", o.status());
  }
  if (!std::isfinite(t.lr()) || t.lr() <= 0) {
    return Invalid("train.lr", "must be a finite number > 0");
  }
  if (!(t.momentum() >= 0 && t.momentum() < 1)) {
    return Invalid("train.momentum", "must be in [0, 1)");
  }
  if (t.eval_every() < 1) return Invalid("train.eval_every", "must be at least 1");
  if (!(t.target_accuracy() >= 0 && t.target_accuracy() <= 1)) {
    return Invalid("train.target_accuracy", "must be in [0, 1]");
  }
  if (auto l = ParseLoss(t.loss()); !l.ok()) return AtPath("train.loss", l.status());

  if (auto s = MakeSitePrecision(config.precision()); !s.ok()) return s.status();

  // The image size is known for every named dataset, so a model too deep for it is caught
  // here, before a sweep is stored (Train checks again against the loaded data).
  const int side = d.name() == "synthetic" ? kSyntheticSide : 28;
  RETURN_IF_ERROR(CheckModelFits(m, side, side));
  // Train sizes its buffers for max(batch, evaluation chunk of 128).
  const int64_t bytes = EstimateNetworkBytes(m, 1, side, side, 10, std::max(t.batch_size(), 128));
  if (bytes > kMaxNetworkBytes) {
    return Invalid("train.batch_size", absl::StrCat("with this model a trial needs ", bytes >> 20,
                                                    " MiB of weights and buffers, more than the ",
                                                    kMaxNetworkBytes >> 20, " MiB limit"));
  }
  return absl::OkStatus();
}

}  // namespace bitsweep::trainer
