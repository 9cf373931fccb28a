// Sensitivity (issue 8 §3; seeds/000_075f41563a3d4c76.txt: "what parameters are more sensitive
// to reduced precision?"): the share of the variance of final accuracy, over every trial of the
// grid, explained by each swept parameter's main effect, and by its two-way interaction with
// the precision axis, ranked.
//
//   main effect of A:      SS_A / SS_total,  SS_A = Σ_levels n_a (ȳ_a − ȳ)²  (one-way ANOVA)
//   interaction A × P:     (SS_AP − SS_A − SS_P) / SS_total, SS_AP = Σ_cells n_c (ȳ_c − ȳ)²
// Exact for a balanced grid (equal trials per cell); for unbalanced ones (failed trials) the
// interaction share is the usual sequential approximation and may come out slightly negative.
#pragma once

#include <string>
#include <vector>

#include "analysis/trial_groups.h"

namespace bitsweep::analysis {

struct SensitivityTerm {
  std::string name;                // "batch_size" path, or "path × precision_path"
  std::vector<std::string> paths;  // 1 (main effect) or 2 (interaction)
  double share = 0;                // of SS_total, in [0, 1] for main effects
  int levels = 0;                  // distinct values (cells for an interaction)
};

struct SensitivityReport {
  int observations = 0;
  double ss_total = 0;
  std::vector<SensitivityTerm> terms;  // ranked by share, largest first
};

// Observations: every sample (trial with a final accuracy) of every group. `precision_axis`
// may be empty (no interactions). Parameters with a single value explain nothing and are
// listed with share 0.
SensitivityReport Sensitivity(const std::vector<TrialGroup>& groups,
                              const std::string& precision_axis);

}  // namespace bitsweep::analysis
