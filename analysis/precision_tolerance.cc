#include "analysis/precision_tolerance.h"

#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "analysis/bit_width.h"

namespace bitsweep::analysis {

absl::StatusOr<std::string> FindPrecisionAxis(const std::vector<TrialGroup>& groups,
                                              const std::string& preferred) {
  const std::vector<std::string> paths = ParameterPaths(groups);
  auto swept = [&](const std::string& p) {
    return std::find(paths.begin(), paths.end(), p) != paths.end();
  };
  if (!preferred.empty()) {
    if (!swept(preferred)) {
      return absl::InvalidArgumentError(
          absl::StrCat("precision axis \"", preferred, "\" is not a swept parameter"));
    }
    return preferred;
  }
  if (swept("precision.default.format")) return std::string("precision.default.format");
  for (const std::string& path : paths) {
    if (!absl::EndsWith(path, "format")) continue;
    bool all = true;
    for (const TrialGroup& g : groups) all = all && ParseBitWidth(g.Value(path)).ok();
    if (all) return path;
  }
  return absl::InvalidArgumentError(
      "the sweep has no precision axis (a swept \"...format\" parameter)");
}

absl::StatusOr<ToleranceReport> PrecisionTolerance(const std::vector<TrialGroup>& groups,
                                                   const std::string& axis, double delta) {
  if (!(delta >= 0)) return absl::InvalidArgumentError("delta must be >= 0");
  ToleranceReport report;
  report.axis = axis;
  report.delta = delta;
  std::map<std::vector<ParamValue>, size_t> slice_index;
  for (const TrialGroup& g : groups) {
    const std::string& format = g.Value(axis);
    absl::StatusOr<int> bits = ParseBitWidth(format);
    if (!bits.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(axis, ": ", bits.status().message()));
    }
    std::vector<ParamValue> others = WithoutPaths(g.params, {axis});
    auto [it, inserted] = slice_index.try_emplace(others, report.slices.size());
    if (inserted) {
      report.slices.emplace_back();
      report.slices.back().others = others;
    }
    ToleranceSlice& slice = report.slices[it->second];
    if (g.final_accuracy.n == 0) continue;
    if (IsFloat32Baseline(format)) {
      // Prefer the plain "fp32" spelling when a slice has several float32 equivalents.
      if (slice.baseline == nullptr || format == "fp32") slice.baseline = &g;
      continue;
    }
    // One point per width: the best format of that width (e.g. fixed:16,FL for several FL).
    auto same = std::find_if(slice.widths.begin(), slice.widths.end(),
                             [&](const WidthPoint& w) { return w.bits == *bits; });
    if (same == slice.widths.end()) {
      slice.widths.push_back({*bits, format, &g, false});
    } else if (g.final_accuracy.mean > same->group->final_accuracy.mean) {
      *same = {*bits, format, &g, false};
    }
  }
  for (ToleranceSlice& slice : report.slices) {
    std::sort(slice.widths.begin(), slice.widths.end(),
              [](const WidthPoint& a, const WidthPoint& b) { return a.bits < b.bits; });
    // Knee over consecutive widths, the baseline as the widest point.
    std::vector<std::pair<int, double>> curve;
    for (const WidthPoint& w : slice.widths)
      curve.push_back({w.bits, w.group->final_accuracy.mean});
    if (slice.baseline != nullptr) curve.push_back({32, slice.baseline->final_accuracy.mean});
    for (size_t i = 1; i < curve.size(); ++i) {
      const double drop = curve[i].second - curve[i - 1].second;
      if (slice.knee_from_bits < 0 || drop > slice.knee_drop) {
        slice.knee_drop = drop;
        slice.knee_from_bits = curve[i].first;
        slice.knee_to_bits = curve[i - 1].first;
      }
    }
    if (slice.baseline == nullptr) continue;
    const double floor = slice.baseline->final_accuracy.mean - delta;
    for (WidthPoint& w : slice.widths) w.within = w.group->final_accuracy.mean >= floor;
    // Walk down from the widest width while the widths stay within δ.
    for (int i = static_cast<int>(slice.widths.size()) - 1; i >= 0 && slice.widths[i].within; --i) {
      slice.min_index = i;
    }
    if (slice.min_index >= 0) {
      slice.min_bits = slice.widths[slice.min_index].bits;
      slice.below_index = slice.min_index - 1;
    } else if (!slice.widths.empty()) {
      slice.below_index = static_cast<int>(slice.widths.size()) - 1;
    }
  }
  return report;
}

}  // namespace bitsweep::analysis
