// Summary statistics over seeds: mean, sample standard deviation and the 95% confidence
// interval of the mean from Student's t distribution (n - 1 degrees of freedom).
#pragma once

#include <span>

namespace bitsweep::analysis {

struct Summary {
  int n = 0;
  double mean = 0;
  double std = 0;  // sample standard deviation (n - 1); 0 when n < 2
  // 95% interval of the mean: mean ± t(0.975, n-1) · std / √n. NaN when n < 2 (no interval).
  double ci_low = 0;
  double ci_high = 0;
};

// Summary of `values` (empty: n = 0, everything else 0 and the interval NaN).
Summary Summarize(std::span<const double> values);

// The p-quantile (0 < p < 1) of Student's t distribution with `df` > 0 degrees of freedom,
// by bisection on the CDF (regularised incomplete beta); accurate to ~1e-9.
double StudentTQuantile(double p, double df);

// The CDF of Student's t distribution at t.
double StudentTCdf(double t, double df);

}  // namespace bitsweep::analysis
