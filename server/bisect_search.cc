#include "server/bisect_search.h"

namespace bitsweep::server {

BisectSearch::BisectSearch(int num_values, double tolerance_points)
    : num_values_(num_values),
      tolerance_((tolerance_points > 0 ? tolerance_points : kDefaultTolerancePoints) / 100.0) {}

bool BisectSearch::WithinTolerance(double baseline_accuracy, double accuracy) const {
  return accuracy >= baseline_accuracy - tolerance_;
}

BisectSearch::Step BisectSearch::Next(double baseline_accuracy,
                                      const std::map<int, double>& probe_accuracy) const {
  // Invariant: every index >= hi probed so far is within tolerance, every index < lo is not.
  // hi == num_values_ means no value has been found within tolerance yet.
  int lo = 0;
  int hi = num_values_;
  while (lo < hi) {
    int mid = lo + (hi - lo - 1) / 2;
    auto it = probe_accuracy.find(mid);
    if (it == probe_accuracy.end()) return Step{mid, std::nullopt};
    if (WithinTolerance(baseline_accuracy, it->second)) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  Step done;
  if (hi < num_values_) done.answer = hi;
  return done;
}

}  // namespace bitsweep::server
