// Precision tolerance (issue 8 §2, DESIGN §8): along a precision axis with a float32 baseline,
// per value of the other axes, the fewest bits whose mean final accuracy stays within δ of the
// baseline, with the evidence either side, and the knee (largest drop between consecutive
// widths). seeds/000_075f41563a3d4c76.txt asks this question; seed 001 predicts it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "analysis/trial_groups.h"

namespace bitsweep::analysis {

// One width on the axis within a slice: the best-scoring format of that many bits.
struct WidthPoint {
  int bits = 0;
  std::string format;
  const TrialGroup* group = nullptr;  // its mean is the point's accuracy
  bool within = false;                // mean >= baseline mean - δ
};

struct ToleranceSlice {
  std::vector<ParamValue> others;        // the values of the other axes
  const TrialGroup* baseline = nullptr;  // null: no fp32 group in this slice
  std::vector<WidthPoint> widths;  // ascending bits, baseline excluded, only groups with n > 0
  // Fewest bits B such that every width >= B is within δ; -1 when none is (or no baseline).
  int min_bits = -1;
  int min_index = -1;    // into widths: the evidence that passes
  int below_index = -1;  // into widths: the widest failing width below min_bits (-1: none)
  // Largest drop of mean accuracy between consecutive widths (the baseline counts as the
  // widest point): from `knee_from_bits` down to `knee_to_bits`. knee_drop 0 when < 2 points.
  int knee_from_bits = -1, knee_to_bits = -1;
  double knee_drop = 0;
};

struct ToleranceReport {
  std::string axis;
  double delta = 0;  // fraction (0.005 = 0.5 percentage points)
  std::vector<ToleranceSlice> slices;
};

// The precision axis of `groups`: `preferred` if given, else precision.default.format if
// swept, else the first swept path ending in "format" whose values all parse as formats.
// Errors: InvalidArgument when `preferred` is not swept or no such axis exists.
absl::StatusOr<std::string> FindPrecisionAxis(const std::vector<TrialGroup>& groups,
                                              const std::string& preferred);

// Errors: InvalidArgument when an axis value is not a format (naming it) or delta < 0.
// The report points into `groups`, which must outlive it.
absl::StatusOr<ToleranceReport> PrecisionTolerance(const std::vector<TrialGroup>& groups,
                                                   const std::string& axis, double delta);

}  // namespace bitsweep::analysis
