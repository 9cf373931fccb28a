// Where quantisation applies (DESIGN §4): one SiteQuantizer per site, built from
// PrecisionConfig, and the derivation of stochastic-rounding stream keys from (seed, site,
// layer, step).
//
// Static formats (fp32, float, mask, fixed, int) are a plain Quantizer. The dynamic formats
// keep fixed-point state that EndIteration() updates once per training iteration from the
// statistics of that iteration's applications (all deterministic: counts in a fixed order):
//   dynfixed:WL  per tensor: WL fixed, IL = WL - FL moves (Courbariaux et al. 2014, §5 "dynamic
//                fixed point"): with R the overflow rate at IL and R' the rate IL - 1 would
//                have had, IL+1 if R > R_max, kept if R' > R_max, else IL-1. A tensor's first
//                application picks the smallest IL that holds its max|x| (IL in [WL-52, WL+32]).
//   dps:IL,FL    per site (all tensors of the site share one ⟨IL, FL⟩),
//                seeds/002_a5ea6972c7539976.txt Algorithm 1: IL += (R > R_max ? 1 : -1),
//                FL += (E > E_max ? 1 : -1), E the average % quantisation error (Equation 1),
//                both clamped to the configured bounds.
// R_max and E_max default to seed 002's 0.01%.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "worker/trainer/quant/quantizer.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {

enum class Site : uint64_t {
  kWeights = 1,
  kActivations = 2,
  kErrors = 3,
  kGradients = 4,
  kOptimizer = 5
};
inline constexpr int kNumSites = 5;

// "weights", "activations", ...
const char* SiteName(Site site);

struct DynamicOptions {
  double max_overflow_rate = 1e-4;  // R_max as a fraction (0.01%)
  double max_error_percent = 0.01;  // E_max in percent
  int min_integer_bits = 1, max_integer_bits = 32;
  int min_frac_bits = 0, max_frac_bits = 52;
};

// One site's quantiser. Not thread-safe (one per trial).
class SiteQuantizer {
 public:
  SiteQuantizer() = default;  // fp32: does nothing
  // A static Quantizer (implicit: tests and callers build sites from one).
  SiteQuantizer(const Quantizer& quantizer)  // NOLINT
      : SiteQuantizer(quantizer.format(), quantizer.rounding(), DynamicOptions()) {}
  SiteQuantizer(const Format& format, Rounding rounding, const DynamicOptions& options);

  bool enabled() const { return base_.enabled(); }
  const Format& format() const { return base_.format(); }

  // Quantises tensor `tensor` (the site's own numbering: layer, param index, ...) in place,
  // with stochastic stream `key`, adding to the statistics when measuring or dynamic.
  void Apply(int tensor, float* data, int64_t n, uint64_t key);

  // Once per training iteration: the dynamic formats take their next IL/FL from the
  // statistics of the iteration, which become last_iteration().
  void EndIteration();

  // Whether applications gather statistics (CurvePoint.sites); dynamic formats always do. The
  // trainer measures only the iteration before each evaluation: it costs a scalar pass.
  void set_measure(bool measure) { measure_ = measure; }

  // The statistics of the iteration before the last EndIteration.
  const QuantStats& last_iteration() const { return last_; }

  // dps: the current ⟨IL, FL⟩; dynfixed: the current FL of `tensor` (-1000 if not seen).
  int dps_integer_bits() const { return dps_il_; }
  int dps_frac_bits() const { return dps_fl_; }
  int dynfixed_frac_bits(int tensor) const;

 private:
  struct TensorState {
    int frac_bits = 0;
    QuantStats stats;  // this iteration
  };

  Quantizer base_;
  DynamicOptions options_;
  bool measure_ = false;
  QuantStats iteration_;  // this iteration, all tensors
  QuantStats last_;
  int dps_il_ = 0, dps_fl_ = 0;
  std::map<int, TensorState> tensors_;  // dynfixed
};

// The quantisers of one trial. A site not listed in precision.sites gets a disabled (fp32)
// quantiser.
struct SitePrecision {
  SiteQuantizer weights;
  SiteQuantizer activations;
  SiteQuantizer errors;
  SiteQuantizer gradients;
  SiteQuantizer optimizer;
  std::vector<Site> listed;  // precision.sites, in order

  SiteQuantizer& at(Site site);
  void EndIteration();
  void set_measure(bool measure);
};

// Errors: InvalidArgument naming the field path (precision.default.format, ...rounding,
// precision.sites[i], precision.<site>.format, precision.dynamic.*) for unknown or
// not-yet-supported values.
absl::StatusOr<SitePrecision> MakeSitePrecision(const v1::PrecisionConfig& config);

// The stream key for tensor `tensor` of site `site` under the step key `step_key` (which the
// trainer derives from the seed, the phase and the iteration).
inline uint64_t SiteKey(uint64_t step_key, Site site, uint64_t tensor) {
  return DeriveKey(DeriveKey(step_key, static_cast<uint64_t>(site)), tensor);
}

}  // namespace bitsweep::trainer
