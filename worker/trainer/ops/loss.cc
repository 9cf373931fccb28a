#include "worker/trainer/ops/loss.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace bitsweep::trainer {

absl::StatusOr<Loss> ParseLoss(absl::string_view name) {
  if (name == "cross_entropy") return Loss::kCrossEntropy;
  if (name == "squared_error") return Loss::kSquaredError;
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "': unknown loss; supported: cross_entropy, squared_error"));
}

namespace {

template <typename T>
LossStats ForwardBackward(Loss loss, int n, int classes, const T* logits, const uint8_t* labels,
                          T grad_scale, T* dlogits, int* predictions) {
  LossStats stats;
  for (int e = 0; e < n; ++e) {
    const T* z = logits + int64_t{e} * classes;
    const int label = labels[e];
    int best = 0;
    for (int k = 1; k < classes; ++k) {
      if (z[k] > z[best]) best = k;
    }
    if (best == label) ++stats.correct;
    if (predictions != nullptr) predictions[e] = best;
    T* dz = dlogits == nullptr ? nullptr : dlogits + int64_t{e} * classes;
    if (loss == Loss::kCrossEntropy) {
      const double zmax = z[best];
      double sum = 0;
      for (int k = 0; k < classes; ++k) sum += std::exp(static_cast<double>(z[k]) - zmax);
      // -log softmax = log Σ exp(z - max) - (z_y - max).
      stats.loss_sum += std::log(sum) - (static_cast<double>(z[label]) - zmax);
      if (dz != nullptr) {
        for (int k = 0; k < classes; ++k) {
          const double p = std::exp(static_cast<double>(z[k]) - zmax) / sum;
          dz[k] = grad_scale * static_cast<T>(p - (k == label ? 1.0 : 0.0));
        }
      }
    } else {
      double l = 0;
      for (int k = 0; k < classes; ++k) {
        const double d = static_cast<double>(z[k]) - (k == label ? 1.0 : 0.0);
        l += 0.5 * d * d;
        if (dz != nullptr) dz[k] = grad_scale * static_cast<T>(d);
      }
      stats.loss_sum += l;
    }
  }
  return stats;
}

}  // namespace

LossStats LossForwardBackward(Loss loss, int n, int classes, const float* logits,
                              const uint8_t* labels, float grad_scale, float* dlogits,
                              int* predictions) {
  return ForwardBackward(loss, n, classes, logits, labels, grad_scale, dlogits, predictions);
}

LossStats LossForwardBackward(Loss loss, int n, int classes, const double* logits,
                              const uint8_t* labels, double grad_scale, double* dlogits,
                              int* predictions) {
  return ForwardBackward(loss, n, classes, logits, labels, grad_scale, dlogits, predictions);
}

}  // namespace bitsweep::trainer
