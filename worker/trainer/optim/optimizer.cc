#include "worker/trainer/optim/optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {

absl::StatusOr<OptimizerKind> ParseOptimizer(absl::string_view name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "momentum") return OptimizerKind::kMomentum;
  if (name == "adam") return OptimizerKind::kAdam;
  if (name == "adagrad") return OptimizerKind::kAdagrad;
  if (name == "rmsprop") return OptimizerKind::kRmsprop;
  return absl::InvalidArgumentError(absl::StrCat(
      "'", name, "': unknown optimizer; supported: sgd, momentum, adam, adagrad, rmsprop"));
}

void Optimizer::Step(std::vector<Param>& params, double lr, const StateRounder& round_state) {
  ++steps_;
  const OptimizerOptions& o = options_;
  float flr = static_cast<float>(lr);
  if (o.kind == OptimizerKind::kAdam) {
    // Folding the bias corrections into the step: lr·m̂/(√v̂+ε) = lr_t·m/(√v + ε·√(1-β2^t))
    // with lr_t = lr·√(1-β2^t)/(1-β1^t) (Kingma & Ba 2015, §2, the efficient form).
    const double t = static_cast<double>(steps_);
    const double c1 = 1.0 - std::pow(o.beta1, t);
    const double c2 = 1.0 - std::pow(o.beta2, t);
    flr = static_cast<float>(lr * std::sqrt(c2) / c1);
  }
  const float mu = static_cast<float>(o.momentum);
  const float b1 = static_cast<float>(o.beta1), b2 = static_cast<float>(o.beta2);
  const float rho = static_cast<float>(o.rho);
  float eps = static_cast<float>(o.eps);
  if (o.kind == OptimizerKind::kAdam) {
    eps =
        static_cast<float>(o.eps * std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(steps_))));
  }
  for (size_t pi = 0; pi < params.size(); ++pi) {
    Param& p = params[pi];
    std::vector<float>& target = p.master.empty() ? p.value : p.master;
    const size_t n = target.size();
    float* w = target.data();
    const float* grad = p.grad.data();
    const float wd = p.is_bias ? 0.0f : static_cast<float>(o.weight_decay);
    auto g = [&](size_t i) { return wd == 0.0f ? grad[i] : grad[i] + wd * w[i]; };
    const int tensor = static_cast<int>(2 * pi);
    const int64_t size = static_cast<int64_t>(n);
    if (o.kind == OptimizerKind::kSgd) {
      for (size_t i = 0; i < n; ++i) w[i] -= flr * g(i);
      continue;
    }
    if (p.velocity.size() != n) p.velocity.assign(n, 0.0f);
    float* s = p.velocity.data();
    switch (o.kind) {
      case OptimizerKind::kMomentum:
        for (size_t i = 0; i < n; ++i) s[i] = mu * s[i] + g(i);
        if (round_state) round_state(tensor, s, size);
        for (size_t i = 0; i < n; ++i) w[i] -= flr * s[i];
        break;
      case OptimizerKind::kAdam: {
        if (p.second.size() != n) p.second.assign(n, 0.0f);
        float* v = p.second.data();
        for (size_t i = 0; i < n; ++i) {
          const float gi = g(i);
          s[i] = b1 * s[i] + (1.0f - b1) * gi;
          v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        }
        if (round_state) {
          round_state(tensor, s, size);
          round_state(tensor + 1, v, size);
        }
        for (size_t i = 0; i < n; ++i) w[i] -= flr * s[i] / (std::sqrt(v[i]) + eps);
        break;
      }
      case OptimizerKind::kAdagrad:
      case OptimizerKind::kRmsprop: {
        // g(i) is recomputed for the step: the state must be complete (and rounded) first.
        const bool ada = o.kind == OptimizerKind::kAdagrad;
        for (size_t i = 0; i < n; ++i) {
          const float gi = g(i);
          s[i] = ada ? s[i] + gi * gi : rho * s[i] + (1.0f - rho) * gi * gi;
        }
        if (round_state) round_state(tensor, s, size);
        for (size_t i = 0; i < n; ++i) w[i] -= flr * g(i) / (std::sqrt(s[i]) + eps);
        break;
      }
      case OptimizerKind::kSgd:
        break;
    }
  }
}

}  // namespace bitsweep::trainer
