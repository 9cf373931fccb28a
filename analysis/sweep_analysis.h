// Everything `bitsweep analyze` reports about a sweep, computed once from its trials so that the
// CLI (client/analyze_command) and the dashboard (GET /api/sweeps/{id}/analysis) give the same
// answers: the groups over seeds, the precision tolerance and knee along the precision axis,
// stochastic vs truncate convergence speed, and the sensitivity ranking (DESIGN §8).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "analysis/convergence_speed.h"
#include "analysis/precision_tolerance.h"
#include "analysis/sensitivity.h"
#include "analysis/trial_groups.h"
#include "bitsweep/v1/sweep.pb.h"
#include "nlohmann/json.hpp"

namespace bitsweep::analysis {

struct SweepAnalysisOptions {
  double delta_points = 0.5;  // tolerance: percentage points of accuracy below fp32
  std::string axis;           // precision axis; empty: FindPrecisionAxis's default
};

// The reports point into `groups`: the object is movable (a vector's elements keep their
// addresses when it moves) but not copyable.
struct SweepAnalysis {
  SweepAnalysis() = default;
  SweepAnalysis(SweepAnalysis&&) = default;
  SweepAnalysis& operator=(SweepAnalysis&&) = default;
  SweepAnalysis(const SweepAnalysis&) = delete;
  SweepAnalysis& operator=(const SweepAnalysis&) = delete;

  size_t trials = 0;
  std::vector<TrialGroup> groups;
  absl::Status axis_status;  // why there is no tolerance (no precision axis), else OK
  std::optional<ToleranceReport> tolerance;
  std::optional<ConvergenceReport> convergence;  // absent without two roundings to compare
  SensitivityReport sensitivity;
};

// Errors: InvalidArgument when delta_points is negative or not a number, or `axis` is given
// and is not a swept format axis.
absl::StatusOr<SweepAnalysis> AnalyzeSweep(const std::vector<v1::Trial>& trials,
                                           const SweepAnalysisOptions& options);

// The analysis as one JSON object: {trials, groups, tolerance, convergence, sensitivity}
// (tolerance / convergence null when absent; accuracies as fractions; NaN as null). The
// format of `bitsweep analyze --json`, documented in docs/api.md.
nlohmann::json SweepAnalysisJson(const SweepAnalysis& analysis);

}  // namespace bitsweep::analysis
