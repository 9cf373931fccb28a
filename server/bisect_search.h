// BisectSearch: the decision logic of `method: bisect` (DESIGN §8) for one combination of the
// other swept axes. The axis values are ordered from fewest to most bits; assuming accuracy
// does not drop when bits are added, a binary search over them finds the fewest bits whose
// mean accuracy over seeds stays within `tolerance` of the fp32 baseline in about
// log2(n + 1) probes. State is derived from the finished probes alone, so the search resumes
// unchanged after a server restart. Pure logic: no store, no clock.
#pragma once

#include <map>
#include <optional>

namespace bitsweep::server {

class BisectSearch {
 public:
  // `num_values` axis values; `tolerance_points` in percentage points of accuracy (accuracies
  // are fractions in [0, 1]); 0 means the default of 0.5 points.
  BisectSearch(int num_values, double tolerance_points);

  struct Step {
    // The next axis index to probe; nullopt when the search is over.
    std::optional<int> probe;
    // When over: the fewest-bits index within tolerance, or nullopt if no value is.
    std::optional<int> answer;
  };

  // Replays the search over the finished probes (axis index -> mean accuracy over seeds) given
  // the baseline's mean accuracy, and returns the next probe or the answer.
  Step Next(double baseline_accuracy, const std::map<int, double>& probe_accuracy) const;

  // The first probe, which needs no baseline: the midpoint of the whole axis.
  int FirstProbe() const { return (num_values_ - 1) / 2; }

  // Whether `accuracy` is within tolerance of `baseline_accuracy`.
  bool WithinTolerance(double baseline_accuracy, double accuracy) const;

  static constexpr double kDefaultTolerancePoints = 0.5;

 private:
  int num_values_;
  double tolerance_;  // as a fraction
};

}  // namespace bitsweep::server
