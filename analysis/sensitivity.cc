#include "analysis/sensitivity.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace bitsweep::analysis {
namespace {

struct Cell {
  double sum = 0;
  int n = 0;
};

// Σ_cells n_c (ȳ_c − ȳ)² where the cell of a group is `key(group)`.
template <typename Key>
std::pair<double, int> BetweenSS(const std::vector<TrialGroup>& groups, double grand_mean,
                                 const Key& key) {
  std::map<std::vector<std::string>, Cell> cells;
  for (const TrialGroup& g : groups) {
    Cell& c = cells[key(g)];
    for (const TrialSample& s : g.samples) {
      c.sum += s.final_accuracy;
      ++c.n;
    }
  }
  double ss = 0;
  int levels = 0;
  for (const auto& [k, c] : cells) {
    if (c.n == 0) continue;
    ++levels;
    const double d = c.sum / c.n - grand_mean;
    ss += c.n * d * d;
  }
  return {ss, levels};
}

}  // namespace

SensitivityReport Sensitivity(const std::vector<TrialGroup>& groups,
                              const std::string& precision_axis) {
  SensitivityReport report;
  double sum = 0;
  for (const TrialGroup& g : groups) {
    for (const TrialSample& s : g.samples) {
      sum += s.final_accuracy;
      ++report.observations;
    }
  }
  if (report.observations == 0) return report;
  const double mean = sum / report.observations;
  for (const TrialGroup& g : groups) {
    for (const TrialSample& s : g.samples) {
      report.ss_total += (s.final_accuracy - mean) * (s.final_accuracy - mean);
    }
  }
  const double total = report.ss_total;
  auto share = [&](double ss) { return total > 0 ? ss / total : 0.0; };
  const std::vector<std::string> paths = ParameterPaths(groups);
  std::map<std::string, double> main_ss;
  for (const std::string& path : paths) {
    auto [ss, levels] = BetweenSS(
        groups, mean, [&](const TrialGroup& g) { return std::vector<std::string>{g.Value(path)}; });
    main_ss[path] = ss;
    report.terms.push_back({path, {path}, share(ss), levels});
  }
  const bool has_precision = std::find(paths.begin(), paths.end(), precision_axis) != paths.end();
  if (has_precision) {
    for (const std::string& path : paths) {
      if (path == precision_axis) continue;
      auto [ss, cells] = BetweenSS(groups, mean, [&](const TrialGroup& g) {
        return std::vector<std::string>{g.Value(path), g.Value(precision_axis)};
      });
      const double inter = ss - main_ss[path] - main_ss[precision_axis];
      report.terms.push_back(
          {absl::StrCat(path, " × ", precision_axis), {path, precision_axis}, share(inter), cells});
    }
  }
  std::stable_sort(
      report.terms.begin(), report.terms.end(),
      [](const SensitivityTerm& a, const SensitivityTerm& b) { return a.share > b.share; });
  return report;
}

}  // namespace bitsweep::analysis
