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

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
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
  kOptimizer = 5,
  kAccumulator = 6  // not a SiteQuantizer: SitePrecision::accumulator below
};
inline constexpr int kNumSites = 5;  // the SiteQuantizer sites, weights..optimizer

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
  // Apply, also setting saturated[i] to 1 when data[i] lay outside the range this application
  // used (Quantizer::Saturates: it was clipped), else 0. The backward pass uses it for the
  // clipped straight-through estimator (network.h). Returns whether any element was marked
  // (false when saturated is null).
  bool Apply(int tensor, float* data, int64_t n, uint64_t key, uint8_t* saturated);

  // Once per training iteration: the dynamic formats take their next IL/FL from the
  // statistics of the iteration, which become last_iteration().
  void EndIteration();

  // Whether applications gather statistics (CurvePoint.sites); dynamic formats always do. The
  // trainer measures only the iteration before each evaluation: it costs a scalar pass.
  void set_measure(bool measure) { measure_ = measure; }
  bool measuring() const { return measure_; }

  // The statistics of the iteration before the last EndIteration.
  const QuantStats& last_iteration() const { return last_; }

  // dps: the current ⟨IL, FL⟩; dynfixed: the current FL of `tensor` (-1000 if not seen).
  int dps_integer_bits() const { return dps_il_; }
  int dps_frac_bits() const { return dps_fl_; }
  int dynfixed_frac_bits(int tensor) const;

  // What a checkpoint keeps between iterations (the per-iteration statistics are empty then).
  struct State {
    int dps_integer_bits = 0, dps_frac_bits = 0;
    std::vector<std::pair<int, int>> dynfixed_frac_bits;  // (tensor, FL), ascending tensor
    QuantStats last;
  };
  State state() const;
  void set_state(const State& state);

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
//
// Per-layer overrides (precision.layers[i], seeds/001): parameter layer i (conv layers, then
// hidden dense layers, then the output layer) uses, for each listed site, the format of
// layers[i].<site> if set, else of layers[i].default if set, else the site's own (rounding
// likewise); an overridden layer has its own quantiser (and dynamic state).
//
// The accumulator site: when listed with a format other than fp32, every product and every
// partial sum inside the dense and conv dot products is rounded to that format
// (ops/accumulator_gemm.h, AccumulatorGemm). Static formats only (fp32, float, mask, fixed, int is
// rejected: its scale is per tensor).
struct SitePrecision {
  SiteQuantizer weights;
  SiteQuantizer activations;
  SiteQuantizer errors;
  SiteQuantizer gradients;
  SiteQuantizer optimizer;
  std::vector<Site> listed;  // precision.sites, in order (the accumulator included)

  Quantizer accumulator;  // disabled (fp32) unless listed
  int accumulator_chunk = 0;
  // [layer][site index 0..kNumSites-1]: the layer's own quantiser, if overridden.
  std::vector<std::array<std::optional<SiteQuantizer>, kNumSites>> layer_sites;
  std::vector<std::optional<Quantizer>> layer_accumulator;

  SiteQuantizer& at(Site site);
  // The quantiser of `site` for parameter layer `layer`.
  SiteQuantizer& For(Site site, int layer);
  // The accumulator format of `layer`, or null when its dot products run in plain float32.
  const Quantizer* AccumulatorFor(int layer) const;
  // Every SiteQuantizer, in a fixed order (the sites, then the per-layer ones).
  std::vector<SiteQuantizer*> all();
  void EndIteration();
  void set_measure(bool measure);
};

// Errors: InvalidArgument naming the field path (precision.default.format, ...rounding,
// precision.sites[i], precision.<site>.format, precision.dynamic.*, precision.layers[i].*,
// precision.accumulator_chunk) for unknown or unsupported values. `num_layers` (> 0 when
// known) bounds precision.layers. Ignores precision.schedule (see PrecisionSchedule).
absl::StatusOr<SitePrecision> MakeSitePrecision(const v1::PrecisionConfig& config,
                                                int num_layers = -1);

// The PrecisionConfig in force after a switch: the switch's set fields replace the base's
// (default format/rounding, per-site formats/roundings, accumulator, sites, layers,
// accumulator_chunk when > 0).
v1::PrecisionConfig ApplySwitch(const v1::PrecisionConfig& base, const v1::PrecisionConfig& sw);

// precision.schedule resolved: entry 0 is the initial precision (from iteration 0), then one
// per switch, with the iteration (0-based, inclusive) it applies from.
struct ScheduledPrecision {
  int64_t from_iteration = 0;
  v1::PrecisionConfig config;
};
// Errors: InvalidArgument naming precision.schedule[i] (after_iteration not increasing or
// negative, or an invalid merged precision).
absl::StatusOr<std::vector<ScheduledPrecision>> PrecisionSchedule(const v1::PrecisionConfig& config,
                                                                  int num_layers = -1);

// The stream key for tensor `tensor` of site `site` under the step key `step_key` (which the
// trainer derives from the seed, the phase and the iteration).
inline uint64_t SiteKey(uint64_t step_key, Site site, uint64_t tensor) {
  return DeriveKey(DeriveKey(step_key, static_cast<uint64_t>(site)), tensor);
}

}  // namespace bitsweep::trainer
