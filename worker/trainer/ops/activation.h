// Element-wise activations. The backward pass uses the forward output y (not the input), which
// is what a reduced-precision implementation keeps: relu' = [y > 0], sigmoid' = y(1-y),
// tanh' = 1 - y².
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bitsweep::trainer {

enum class Activation { kRelu, kSigmoid, kTanh };

// Errors: InvalidArgument "'<name>': unknown activation; supported: relu, sigmoid, tanh".
absl::StatusOr<Activation> ParseActivation(absl::string_view name);

// x[0, n) = act(x), in place. The double overloads (train.compute fp64) compute in double.
void ActivationForward(Activation act, float* x, int64_t n);
void ActivationForward(Activation act, double* x, int64_t n);

// dy[0, n) *= act'(x), given y = act(x), in place.
void ActivationBackward(Activation act, const float* y, float* dy, int64_t n);
void ActivationBackward(Activation act, const double* y, double* dy, int64_t n);

}  // namespace bitsweep::trainer
