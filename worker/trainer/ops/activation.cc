#include "worker/trainer/ops/activation.h"

#include <Eigen/Core>

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {

absl::StatusOr<Activation> ParseActivation(absl::string_view name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "tanh") return Activation::kTanh;
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "': unknown activation; supported: relu, sigmoid, tanh"));
}

// Eigen array expressions: vectorised on every target (GCC -O2 does not vectorise the
// equivalent loops).
void ActivationForward(Activation act, float* x, int64_t n) {
  Eigen::Map<Eigen::ArrayXf> a(x, n);
  switch (act) {
    case Activation::kRelu:
      // Branch-free (Eigen's select is a scalar loop with unpredictable branches); keeps NaN,
      // so the divergence check sees it.
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] < 0.0f ? 0.0f : x[i];
      break;
    case Activation::kSigmoid:
      a = a.logistic();
      break;
    case Activation::kTanh:
      a = a.tanh();
      break;
  }
}

void ActivationBackward(Activation act, const float* y, float* dy, int64_t n) {
  Eigen::Map<const Eigen::ArrayXf> out(y, n);
  Eigen::Map<Eigen::ArrayXf> d(dy, n);
  switch (act) {
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
      break;
    case Activation::kSigmoid:
      d *= out * (1.0f - out);
      break;
    case Activation::kTanh:
      d *= 1.0f - out.square();
      break;
  }
}

}  // namespace bitsweep::trainer
