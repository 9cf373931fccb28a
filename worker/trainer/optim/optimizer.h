// Optimisers (DESIGN §5), in the network's scalar type (float32, or double for
// train.compute fp64) on contiguous buffers, with g = grad + wd·w for
// weights (biases are not decayed: the usual L2 convention, as in Caffe's LeNet of seed 002):
//   sgd       w -= lr·g
//   momentum  v = μv + g;               w -= lr·v
//   adam      m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
//             w -= lr·m̂ / (√v̂ + ε), m̂ = m/(1-β1^t), v̂ = v/(1-β2^t)  (Kingma & Ba 2015, Alg. 1)
//   adagrad   G += g²;                  w -= lr·g / (√G + ε)  (Duchi et al. 2011)
//   rmsprop   s = ρ·s + (1-ρ)·g²;       w -= lr·g / (√s + ε)  (Tieleman & Hinton 2012)
// The state (v, m, G, s) is allocated on first use; a StateRounder (the optimizer site) rounds
// each state tensor after it is updated and before the weights use it.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/trainer/network.h"

namespace bitsweep::trainer {

enum class OptimizerKind { kSgd, kMomentum, kAdam, kAdagrad, kRmsprop };

// Errors: InvalidArgument "'<name>': unknown optimizer; supported: ...".
absl::StatusOr<OptimizerKind> ParseOptimizer(absl::string_view name);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kSgd;
  double momentum = 0.9;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double rho = 0.9;
  double weight_decay = 0;
};

// Rounds state tensor `tensor` (2·param for v/m/G/s, 2·param+1 for adam's second moment) in
// place.
template <typename T>
using BasicStateRounder = std::function<void(int tensor, T* data, int64_t n)>;
using StateRounder = BasicStateRounder<float>;

class Optimizer {
 public:
  explicit Optimizer(const OptimizerOptions& options) : options_(options) {}
  Optimizer(OptimizerKind kind, double momentum) {
    options_.kind = kind;
    options_.momentum = momentum;
  }

  // Updates every param from its grad: p.master when it is non-empty (fp32 master weights),
  // else p.value. `round_state` may be empty.
  void Step(std::vector<Param>& params, double lr, const StateRounder& round_state = {});
  // train.compute fp64: the same formulas with every operand and state in double.
  void Step(std::vector<BasicParam<double>>& params, double lr,
            const BasicStateRounder<double>& round_state = {});

  int64_t steps() const { return steps_; }
  // Checkpoint restore: the number of steps taken so far (adam's t).
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  template <typename T>
  void StepImpl(std::vector<BasicParam<T>>& params, double lr,
                const BasicStateRounder<T>& round_state);

  OptimizerOptions options_;
  int64_t steps_ = 0;  // adam's t
};

}  // namespace bitsweep::trainer
