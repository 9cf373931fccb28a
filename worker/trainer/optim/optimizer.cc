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
  StepImpl(params, lr, round_state);
}

void Optimizer::Step(std::vector<BasicParam<double>>& params, double lr,
                     const BasicStateRounder<double>& round_state) {
  StepImpl(params, lr, round_state);
}

// Written once for both scalar types: with T = float every constant and operation is the
// float32 one the trainer has always used (results unchanged).
template <typename T>
void Optimizer::StepImpl(std::vector<BasicParam<T>>& params, double lr,
                         const BasicStateRounder<T>& round_state) {
  ++steps_;
  const OptimizerOptions& o = options_;
  T flr = static_cast<T>(lr);
  if (o.kind == OptimizerKind::kAdam) {
    // Folding the bias corrections into the step: lr·m̂/(√v̂+ε) = lr_t·m/(√v + ε·√(1-β2^t))
    // with lr_t = lr·√(1-β2^t)/(1-β1^t) (Kingma & Ba 2015, §2, the efficient form).
    const double t = static_cast<double>(steps_);
    const double c1 = 1.0 - std::pow(o.beta1, t);
    const double c2 = 1.0 - std::pow(o.beta2, t);
    flr = static_cast<T>(lr * std::sqrt(c2) / c1);
  }
  const T mu = static_cast<T>(o.momentum);
  const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
  const T rho = static_cast<T>(o.rho);
  T eps = static_cast<T>(o.eps);
  if (o.kind == OptimizerKind::kAdam) {
    eps = static_cast<T>(o.eps * std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(steps_))));
  }
  for (size_t pi = 0; pi < params.size(); ++pi) {
    BasicParam<T>& p = params[pi];
    std::vector<T>& target = p.master.empty() ? p.value : p.master;
    const size_t n = target.size();
    T* w = target.data();
    const T* grad = p.grad.data();
    const T wd = p.is_bias ? T(0) : static_cast<T>(o.weight_decay);
    auto g = [&](size_t i) { return wd == T(0) ? grad[i] : grad[i] + wd * w[i]; };
    const int tensor = static_cast<int>(2 * pi);
    const int64_t size = static_cast<int64_t>(n);
    if (o.kind == OptimizerKind::kSgd) {
      for (size_t i = 0; i < n; ++i) w[i] -= flr * g(i);
      continue;
    }
    if (p.velocity.size() != n) p.velocity.assign(n, T(0));
    T* s = p.velocity.data();
    switch (o.kind) {
      case OptimizerKind::kMomentum:
        for (size_t i = 0; i < n; ++i) s[i] = mu * s[i] + g(i);
        if (round_state) round_state(tensor, s, size);
        for (size_t i = 0; i < n; ++i) w[i] -= flr * s[i];
        break;
      case OptimizerKind::kAdam: {
        if (p.second.size() != n) p.second.assign(n, T(0));
        T* v = p.second.data();
        for (size_t i = 0; i < n; ++i) {
          const T gi = g(i);
          s[i] = b1 * s[i] + (T(1) - b1) * gi;
          v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
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
          const T gi = g(i);
          s[i] = ada ? s[i] + gi * gi : rho * s[i] + (T(1) - rho) * gi * gi;
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
