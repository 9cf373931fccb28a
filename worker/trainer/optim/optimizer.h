// Optimisers (DESIGN §5): sgd (w -= lr·g) and momentum (v = μv + g; w -= lr·v). adam, adagrad
// and rmsprop belong to a later issue.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/trainer/network.h"

namespace bitsweep::trainer {

enum class OptimizerKind { kSgd, kMomentum };

// Errors: InvalidArgument "'<name>': ..." for unknown optimisers and for those not supported
// yet (adam, adagrad, rmsprop), listing the supported ones.
absl::StatusOr<OptimizerKind> ParseOptimizer(absl::string_view name);

class Optimizer {
 public:
  Optimizer(OptimizerKind kind, double momentum) : kind_(kind), momentum_(momentum) {}

  // Updates every param's value from its grad (velocity kept in float32, allocated on first use).
  void Step(std::vector<Param>& params, double lr);

 private:
  OptimizerKind kind_;
  double momentum_;
};

}  // namespace bitsweep::trainer
