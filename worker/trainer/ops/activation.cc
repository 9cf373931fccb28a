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

namespace {

// The ReLU passes are compares and selects over whole layers (no arithmetic, so the same bits
// on every target): built for AVX2 as well, chosen at run time.
template <typename T>
[[gnu::always_inline]] inline void ReluForward(T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] < T(0) ? T(0) : x[i];
}
template <typename T>
[[gnu::always_inline]] inline void ReluBackward(const T* y, T* dy, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dy[i] = y[i] > T(0) ? dy[i] : T(0);
}
template <typename T>
__attribute__((target("avx2"))) void ReluForwardAvx2(T* x, int64_t n) {
  ReluForward(x, n);
}
template <typename T>
__attribute__((target("avx2"))) void ReluBackwardAvx2(const T* y, T* dy, int64_t n) {
  ReluBackward(y, dy, n);
}

bool HasAvx2() {
  static const bool avx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return avx2;
}

// Eigen array expressions: vectorised on every target (GCC -O2 does not vectorise the
// equivalent loops).
template <typename T>
void Forward(Activation act, T* x, int64_t n) {
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> a(x, n);
  switch (act) {
    case Activation::kRelu:
      // Branch-free (Eigen's select is a scalar loop with unpredictable branches); keeps NaN,
      // so the divergence check sees it.
      if (HasAvx2()) {
        ReluForwardAvx2(x, n);
      } else {
        ReluForward(x, n);
      }
      break;
    case Activation::kSigmoid:
      a = a.logistic();
      break;
    case Activation::kTanh:
      a = a.tanh();
      break;
  }
}

template <typename T>
void Backward(Activation act, const T* y, T* dy, int64_t n) {
  Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> out(y, n);
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> d(dy, n);
  switch (act) {
    case Activation::kRelu:
      if (HasAvx2()) {
        ReluBackwardAvx2(y, dy, n);
      } else {
        ReluBackward(y, dy, n);
      }
      break;
    case Activation::kSigmoid:
      d *= out * (T(1) - out);
      break;
    case Activation::kTanh:
      d *= T(1) - out.square();
      break;
  }
}

}  // namespace

void ActivationForward(Activation act, float* x, int64_t n) { Forward(act, x, n); }
void ActivationForward(Activation act, double* x, int64_t n) { Forward(act, x, n); }

void ActivationBackward(Activation act, const float* y, float* dy, int64_t n) {
  Backward(act, y, dy, n);
}
void ActivationBackward(Activation act, const double* y, double* dy, int64_t n) {
  Backward(act, y, dy, n);
}

}  // namespace bitsweep::trainer
