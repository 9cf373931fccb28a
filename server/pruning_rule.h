// PruningRule: early stopping of hopeless trials (DESIGN §8), the median rule: at each of the
// configured iterations, a trial whose test accuracy is below the median of the other trials
// of its sweep at that iteration is stopped, once at least `min_trials` others reached it.
// Pure logic: the store supplies the accuracies.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "bitsweep/v1/sweep.pb.h"

namespace bitsweep::server {

class PruningRule {
 public:
  static constexpr int kDefaultMinTrials = 5;

  // Errors: InvalidArgument naming the field ("sweep.pruning.rule: 'x' is unknown (known:
  // median)", at_iterations not positive, min_trials negative, a rule without iterations).
  static absl::StatusOr<PruningRule> FromConfig(const v1::PruningConfig& config);

  // No rule: never prunes.
  PruningRule() = default;

  bool enabled() const { return enabled_; }
  // Whether the rule decides at `iteration`.
  bool DecidesAt(int64_t iteration) const;
  // Whether a trial with `accuracy` at a deciding iteration is pruned, given the accuracies
  // of the sweep's other trials at the same iteration.
  bool ShouldPrune(double accuracy, std::vector<double> others) const;

 private:
  bool enabled_ = false;
  std::vector<int64_t> at_iterations_;
  int min_trials_ = kDefaultMinTrials;
};

}  // namespace bitsweep::server
