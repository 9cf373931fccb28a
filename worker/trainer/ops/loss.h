// Losses over a mini-batch of logits z [N,K] (K classes) and integer labels.
//   cross_entropy:  l_n = -log softmax(z_n)[y_n]             dl/dz = softmax(z_n) - onehot(y_n)
//   squared_error:  l_n = ½ Σ_k (z_nk - onehot(y_n)_k)²      dl/dz = z_n - onehot(y_n)
// Squared error is on the raw outputs (no softmax), the textbook MSE-on-one-hot loss of seed
// 000's analysis; predictions are argmax z for both.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bitsweep::trainer {

enum class Loss { kCrossEntropy, kSquaredError };

// Errors: InvalidArgument "'<name>': unknown loss; supported: cross_entropy, squared_error".
absl::StatusOr<Loss> ParseLoss(absl::string_view name);

struct LossStats {
  double loss_sum = 0;  // Σ_n l_n
  int64_t correct = 0;  // examples whose argmax (first on ties) equals the label
};

// Computes the batch's losses; when dlogits is not null it receives grad_scale · dl_n/dz_n
// (grad_scale = 1/N gives the gradient of the mean loss). When predictions is not null it
// receives argmax z_n. Softmax is computed stably (max subtracted), in double for the log.
LossStats LossForwardBackward(Loss loss, int n, int classes, const float* logits,
                              const uint8_t* labels, float grad_scale, float* dlogits,
                              int* predictions);
// train.compute fp64: the same in double (the gradient is not rounded to float32).
LossStats LossForwardBackward(Loss loss, int n, int classes, const double* logits,
                              const uint8_t* labels, double grad_scale, double* dlogits,
                              int* predictions);

}  // namespace bitsweep::trainer
