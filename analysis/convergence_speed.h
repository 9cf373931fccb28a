// Convergence speed comparison (issue 8 §2): iterations-to-target of one value of an axis
// (e.g. rounding = stochastic) against another (truncate), slice by slice over the other axes.
// seeds/000_075f41563a3d4c76.txt claims stochastic rounding converges 25% faster.
//
// The pooled ratio is mean over slices of mean_A / mean over slices of mean_B (each slice one
// weight; only trials that reached the target; only slices where both arms have one). Its 95%
// interval is a stratified percentile bootstrap: each (slice, arm) cell resampled with
// replacement, `resamples` times, from a fixed seed (deterministic). We chose the bootstrap
// over the delta method because cells hold 1-5 trials and iterations-to-target is discrete
// and skewed; with n = 1 per cell the interval collapses to the point (no spread to resample).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "analysis/trial_groups.h"

namespace bitsweep::analysis {

struct ConvergenceSlice {
  std::vector<ParamValue> others;
  std::vector<int64_t> a_iterations, b_iterations;  // trials that reached the target
  int a_missed = 0, b_missed = 0;                   // trials that never reached it
  double ratio = 0;                                 // mean A / mean B; 0 when not comparable
};

struct ConvergenceReport {
  std::string axis, a, b;
  std::vector<ConvergenceSlice> slices;
  int compared_slices = 0;
  double ratio = 0;  // pooled; 0 when no slice is comparable
  double ci_low = 0, ci_high = 0;
  int resamples = 0;
  // 1 - ratio: the fraction of iterations A saves (seed 000's "25% faster" is 0.25).
  double speedup() const { return 1.0 - ratio; }
};

struct ConvergenceOptions {
  std::string axis = "precision.default.rounding";
  std::string a = "stochastic";
  std::string b = "truncate";
  // Slices where this path has one of these values are left out (e.g. the fp32 baseline,
  // where rounding changes nothing). Empty path: keep all.
  std::string exclude_path;
  std::vector<std::string> exclude_values;
  int resamples = 2000;
  uint64_t seed = 1;
};

// Errors: InvalidArgument when the axis is not swept or does not take both values.
absl::StatusOr<ConvergenceReport> CompareConvergence(const std::vector<TrialGroup>& groups,
                                                     const ConvergenceOptions& options);

}  // namespace bitsweep::analysis
