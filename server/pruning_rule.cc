#include "server/pruning_rule.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace bitsweep::server {

absl::StatusOr<PruningRule> PruningRule::FromConfig(const v1::PruningConfig& config) {
  PruningRule rule;
  if (config.rule().empty()) {
    if (config.at_iterations_size() > 0) {
      return absl::InvalidArgumentError(
          "sweep.pruning.rule: missing (at_iterations given; known rules: median)");
    }
    return rule;
  }
  if (config.rule() != "median") {
    return absl::InvalidArgumentError(
        absl::StrCat("sweep.pruning.rule: '", config.rule(), "' is unknown (known: median)"));
  }
  if (config.at_iterations_size() == 0) {
    return absl::InvalidArgumentError(
        "sweep.pruning.at_iterations: the median rule needs at least one iteration");
  }
  for (int i = 0; i < config.at_iterations_size(); ++i) {
    if (config.at_iterations(i) <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("sweep.pruning.at_iterations[", i,
                                                     "]: ", config.at_iterations(i),
                                                     " is not a positive iteration"));
    }
  }
  if (config.min_trials() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sweep.pruning.min_trials: ", config.min_trials(), " is negative"));
  }
  rule.enabled_ = true;
  rule.at_iterations_.assign(config.at_iterations().begin(), config.at_iterations().end());
  std::sort(rule.at_iterations_.begin(), rule.at_iterations_.end());
  rule.min_trials_ = config.min_trials() == 0 ? kDefaultMinTrials : config.min_trials();
  return rule;
}

bool PruningRule::DecidesAt(int64_t iteration) const {
  return enabled_ && std::binary_search(at_iterations_.begin(), at_iterations_.end(), iteration);
}

bool PruningRule::ShouldPrune(double accuracy, std::vector<double> others) const {
  if (!enabled_ || static_cast<int>(others.size()) < min_trials_ || others.empty()) return false;
  std::sort(others.begin(), others.end());
  const size_t n = others.size();
  const double median = n % 2 == 1 ? others[n / 2] : (others[n / 2 - 1] + others[n / 2]) / 2.0;
  return accuracy < median;
}

}  // namespace bitsweep::server
