#include "analysis/convergence_speed.h"

#include <algorithm>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"

namespace bitsweep::analysis {
namespace {

double Mean(const std::vector<int64_t>& v) {
  double s = 0;
  for (int64_t x : v) s += double(x);
  return v.empty() ? 0 : s / double(v.size());
}

// mean over slices of mean A / mean over slices of mean B.
double PooledRatio(
    const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& cells) {
  double a = 0, b = 0;
  for (const auto& [ca, cb] : cells) {
    a += Mean(ca);
    b += Mean(cb);
  }
  return b > 0 ? a / b : 0;
}

}  // namespace

absl::StatusOr<ConvergenceReport> CompareConvergence(const std::vector<TrialGroup>& groups,
                                                     const ConvergenceOptions& options) {
  ConvergenceReport report;
  report.axis = options.axis;
  report.a = options.a;
  report.b = options.b;
  bool seen_a = false, seen_b = false;
  std::map<std::vector<ParamValue>, size_t> index;
  for (const TrialGroup& g : groups) {
    const std::string& value = g.Value(options.axis);
    const bool is_a = value == options.a, is_b = value == options.b;
    seen_a = seen_a || is_a;
    seen_b = seen_b || is_b;
    if (!is_a && !is_b) continue;
    if (!options.exclude_path.empty()) {
      const std::string& v = g.Value(options.exclude_path);
      if (std::find(options.exclude_values.begin(), options.exclude_values.end(), v) !=
          options.exclude_values.end()) {
        continue;
      }
    }
    std::vector<ParamValue> others = WithoutPaths(g.params, {options.axis});
    auto [it, inserted] = index.try_emplace(others, report.slices.size());
    if (inserted) {
      report.slices.emplace_back();
      report.slices.back().others = others;
    }
    ConvergenceSlice& slice = report.slices[it->second];
    for (const TrialSample& s : g.samples) {
      if (s.iterations_to_target >= 0) {
        (is_a ? slice.a_iterations : slice.b_iterations).push_back(s.iterations_to_target);
      } else {
        ++(is_a ? slice.a_missed : slice.b_missed);
      }
    }
  }
  if (!seen_a || !seen_b) {
    return absl::InvalidArgumentError(absl::StrCat("axis \"", options.axis,
                                                   "\" does not take both values \"", options.a,
                                                   "\" and \"", options.b, "\""));
  }
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cells;
  for (ConvergenceSlice& slice : report.slices) {
    if (slice.a_iterations.empty() || slice.b_iterations.empty()) continue;
    const double mb = Mean(slice.b_iterations);
    slice.ratio = mb > 0 ? Mean(slice.a_iterations) / mb : 0;
    cells.push_back({slice.a_iterations, slice.b_iterations});
  }
  report.compared_slices = static_cast<int>(cells.size());
  if (cells.empty()) return report;
  report.ratio = PooledRatio(cells);
  std::mt19937_64 rng(options.seed);
  std::vector<double> boot;
  auto resample = [&](const std::vector<int64_t>& v) {
    std::vector<int64_t> out(v.size());
    std::uniform_int_distribution<size_t> pick(0, v.size() - 1);
    for (int64_t& x : out) x = v[pick(rng)];
    return out;
  };
  for (int r = 0; r < options.resamples; ++r) {
    std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> drawn;
    for (const auto& [ca, cb] : cells) drawn.push_back({resample(ca), resample(cb)});
    boot.push_back(PooledRatio(drawn));
  }
  report.resamples = options.resamples;
  if (boot.empty()) {
    report.ci_low = report.ci_high = report.ratio;
    return report;
  }
  std::sort(boot.begin(), boot.end());
  auto quantile = [&](double q) {
    const double pos = q * double(boot.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(lo + 1, boot.size() - 1);
    return boot[lo] + (pos - double(lo)) * (boot[hi] - boot[lo]);
  };
  report.ci_low = quantile(0.025);
  report.ci_high = quantile(0.975);
  return report;
}

}  // namespace bitsweep::analysis
