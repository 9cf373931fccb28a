// Where quantisation applies (DESIGN §4): one Quantizer per site, built from PrecisionConfig,
// and the derivation of stochastic-rounding stream keys from (seed, site, layer, step).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {

enum class Site : uint64_t { kWeights = 1, kActivations = 2, kErrors = 3 };

// The quantisers of one trial. A site not listed in precision.sites gets a disabled (fp32)
// quantiser.
struct SitePrecision {
  Quantizer weights;
  Quantizer activations;
  Quantizer errors;

  const Quantizer& at(Site site) const {
    return site == Site::kWeights ? weights : site == Site::kActivations ? activations : errors;
  }
};

// Errors: InvalidArgument naming the field path (precision.default.format, ...rounding,
// precision.sites[i]) for unknown or not-yet-supported values.
absl::StatusOr<SitePrecision> MakeSitePrecision(const v1::PrecisionConfig& config);

// The stream key for tensor `tensor` of site `site` under the step key `step_key` (which the
// trainer derives from the seed, the phase and the iteration).
inline uint64_t SiteKey(uint64_t step_key, Site site, uint64_t tensor) {
  return DeriveKey(DeriveKey(step_key, static_cast<uint64_t>(site)), tensor);
}

}  // namespace bitsweep::trainer
