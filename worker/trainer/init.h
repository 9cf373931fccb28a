// Weight initialisation schemes (DESIGN §5): he, glorot, normal:STD, uniform:A, constant:C
// (the positive initialisation of seeds/000_075f41563a3d4c76.txt), each multiplied by
// model.init_scale. Biases start at 0.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bitsweep::trainer {

struct InitSpec {
  enum class Kind { kHe, kGlorot, kNormal, kUniform, kConstant };
  Kind kind = Kind::kHe;
  double value = 0;  // STD, A or C
};

// Errors: InvalidArgument "'<spec>': <what is wrong>" (unknown scheme, malformed or
// non-finite number, negative STD or A).
absl::StatusOr<InitSpec> ParseInit(absl::string_view spec);

// Fills w[0, n) for a layer with the given fan-in and fan-out, deterministically from `key`:
//   he      N(0, 2/fan_in)                       (He et al. 2015)
//   glorot  U(-a, a), a = sqrt(6/(fan_in+fan_out)) (Glorot & Bengio 2010)
//   normal  N(0, STD²); uniform U(-A, A); constant C
// all times `scale`.
void InitWeights(const InitSpec& spec, double scale, int64_t fan_in, int64_t fan_out, uint64_t key,
                 float* w, int64_t n);

}  // namespace bitsweep::trainer
