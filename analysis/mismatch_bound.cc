#include "analysis/mismatch_bound.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace bitsweep::analysis {
namespace {

constexpr int kMaxBits = 64;

double Term(double gain, int bits) { return gain * std::ldexp(1.0, 2 * (1 - bits)); }

absl::Status CheckGains(const std::vector<LayerNoiseGain>& gains) {
  for (const LayerNoiseGain& g : gains) {
    for (double e : {g.activations, g.weights}) {
      if (!std::isfinite(e) || e < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("noise gain of layer ", g.layer, " is ", e, ": must be finite and >= 0"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTarget(double target_pm) {
  if (!(target_pm > 0 && target_pm <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target mismatch probability ", target_pm, " must be in (0, 1]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> MismatchBound(const std::vector<LayerNoiseGain>& gains,
                                     const std::vector<int>& activation_bits,
                                     const std::vector<int>& weight_bits) {
  if (activation_bits.size() != gains.size() || weight_bits.size() != gains.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("need ", gains.size(), " activation and weight widths, got ",
                     activation_bits.size(), " and ", weight_bits.size()));
  }
  double bound = 0;
  for (size_t l = 0; l < gains.size(); ++l) {
    bound +=
        Term(gains[l].activations, activation_bits[l]) + Term(gains[l].weights, weight_bits[l]);
  }
  return bound;
}

double UniformMismatchBound(const std::vector<LayerNoiseGain>& gains, int bits) {
  double total = 0;
  for (const LayerNoiseGain& g : gains) total += g.activations + g.weights;
  return Term(total, bits);
}

absl::StatusOr<PrecisionAssignment> MinUniformPrecision(const std::vector<LayerNoiseGain>& gains,
                                                        double target_pm) {
  if (absl::Status s = CheckTarget(target_pm); !s.ok()) return s;
  if (absl::Status s = CheckGains(gains); !s.ok()) return s;
  for (int b = 1; b <= kMaxBits; ++b) {
    const double bound = UniformMismatchBound(gains, b);
    if (bound <= target_pm) {
      PrecisionAssignment a;
      a.activation_bits.assign(gains.size(), b);
      a.weight_bits.assign(gains.size(), b);
      a.reference_bits = b;
      a.bound = bound;
      return a;
    }
  }
  return absl::OutOfRangeError(
      absl::StrCat("even ", kMaxBits, " bits do not bring the bound under ", target_pm));
}

absl::StatusOr<PrecisionAssignment> PerLayerPrecision(const std::vector<LayerNoiseGain>& gains,
                                                      int reference_bits) {
  if (absl::Status s = CheckGains(gains); !s.ok()) return s;
  double e_min = std::numeric_limits<double>::infinity();
  for (const LayerNoiseGain& g : gains) {
    for (double e : {g.activations, g.weights}) {
      if (e > 0) e_min = std::min(e_min, e);
    }
  }
  if (!std::isfinite(e_min)) return absl::InvalidArgumentError("no noise gain is positive");
  auto bits = [&](double e) {
    // seeds/001 slide 11, step 2: B = B_ref + round(log2 √(E / E_min)).
    return e > 0 ? reference_bits + static_cast<int>(std::lround(0.5 * std::log2(e / e_min)))
                 : reference_bits;
  };
  PrecisionAssignment a;
  a.reference_bits = reference_bits;
  for (const LayerNoiseGain& g : gains) {
    a.activation_bits.push_back(bits(g.activations));
    a.weight_bits.push_back(bits(g.weights));
  }
  a.bound = *MismatchBound(gains, a.activation_bits, a.weight_bits);
  return a;
}

absl::StatusOr<PrecisionAssignment> MinPerLayerPrecision(const std::vector<LayerNoiseGain>& gains,
                                                         double target_pm) {
  if (absl::Status s = CheckTarget(target_pm); !s.ok()) return s;
  for (int b = 1; b <= kMaxBits; ++b) {
    absl::StatusOr<PrecisionAssignment> a = PerLayerPrecision(gains, b);
    if (!a.ok()) return a.status();
    if (a->bound <= target_pm) return a;
  }
  return absl::OutOfRangeError(absl::StrCat("even a reference of ", kMaxBits,
                                            " bits does not bring the bound under ", target_pm));
}

}  // namespace bitsweep::analysis
