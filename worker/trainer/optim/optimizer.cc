#include "worker/trainer/optim/optimizer.h"

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {

absl::StatusOr<OptimizerKind> ParseOptimizer(absl::string_view name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "momentum") return OptimizerKind::kMomentum;
  if (name == "adam" || name == "adagrad" || name == "rmsprop") {
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "': optimizer not supported yet; supported: sgd, momentum"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "': unknown optimizer; supported: sgd, momentum"));
}

void Optimizer::Step(std::vector<Param>& params, double lr) {
  const float flr = static_cast<float>(lr);
  const float mu = static_cast<float>(momentum_);
  for (Param& p : params) {
    const size_t n = p.value.size();
    float* w = p.value.data();
    const float* g = p.grad.data();
    if (kind_ == OptimizerKind::kSgd) {
      for (size_t i = 0; i < n; ++i) w[i] -= flr * g[i];
    } else {
      if (p.velocity.size() != n) p.velocity.assign(n, 0.0f);
      float* v = p.velocity.data();
      for (size_t i = 0; i < n; ++i) {
        v[i] = mu * v[i] + g[i];
        w[i] -= flr * v[i];
      }
    }
  }
}

}  // namespace bitsweep::trainer
