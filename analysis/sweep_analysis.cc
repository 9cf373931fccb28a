#include "analysis/sweep_analysis.h"

#include <cmath>
#include <utility>

#include "analysis/bit_width.h"

namespace bitsweep::analysis {
namespace {

using nlohmann::json;

// A JSON number, or null for NaN (no interval).
json Number(double v) { return std::isnan(v) ? json(nullptr) : json(v); }

json ParamsJson(const std::vector<ParamValue>& params) {
  json out = json::object();
  for (const ParamValue& p : params) out[p.path] = p.value;
  return out;
}

json GroupJson(const TrialGroup& g) {
  const Summary& s = g.final_accuracy;
  return {{"params", ParamsJson(g.params)},
          {"n", s.n},
          {"mean", Number(s.mean)},
          {"std", Number(s.std)},
          {"ci95", {Number(s.ci_low), Number(s.ci_high)}},
          {"completed", g.completed},
          {"diverged", g.diverged},
          {"pruned", g.pruned},
          {"failed", g.failed},
          {"cancelled", g.cancelled},
          {"unfinished", g.unfinished}};
}

json ToleranceJson(const ToleranceReport& report) {
  json slices = json::array();
  for (const ToleranceSlice& s : report.slices) {
    json widths = json::array();
    for (const WidthPoint& w : s.widths) {
      widths.push_back({{"bits", w.bits},
                        {"format", w.format},
                        {"mean", Number(w.group->final_accuracy.mean)},
                        {"n", w.group->final_accuracy.n},
                        {"within", w.within}});
    }
    slices.push_back(
        {{"others", ParamsJson(s.others)},
         {"baseline_mean", s.baseline ? Number(s.baseline->final_accuracy.mean) : json(nullptr)},
         {"min_bits", s.min_bits >= 0 ? json(s.min_bits) : json(nullptr)},
         {"evidence_within", s.min_index >= 0 ? json(s.widths[s.min_index].format) : json(nullptr)},
         {"evidence_below",
          s.below_index >= 0 ? json(s.widths[s.below_index].format) : json(nullptr)},
         {"knee",
          {{"from_bits", s.knee_from_bits}, {"to_bits", s.knee_to_bits}, {"drop", s.knee_drop}}},
         {"widths", widths}});
  }
  return {{"axis", report.axis}, {"delta", report.delta}, {"slices", slices}};
}

json ConvergenceJson(const ConvergenceReport& r) {
  json slices = json::array();
  for (const ConvergenceSlice& s : r.slices) {
    slices.push_back({{"others", ParamsJson(s.others)},
                      {r.a, s.a_iterations},
                      {r.b, s.b_iterations},
                      {r.a + "_missed", s.a_missed},
                      {r.b + "_missed", s.b_missed},
                      {"ratio", Number(s.ratio)}});
  }
  return {{"axis", r.axis},
          {"a", r.a},
          {"b", r.b},
          {"ratio", Number(r.ratio)},
          {"ci95", {Number(r.ci_low), Number(r.ci_high)}},
          {"interval", "stratified percentile bootstrap"},
          {"resamples", r.resamples},
          {"compared_slices", r.compared_slices},
          {"slices", slices}};
}

json SensitivityJson(const SensitivityReport& r) {
  json terms = json::array();
  for (const SensitivityTerm& t : r.terms) {
    terms.push_back({{"term", t.name}, {"share", Number(t.share)}, {"levels", t.levels}});
  }
  return {{"observations", r.observations}, {"ss_total", r.ss_total}, {"terms", terms}};
}

}  // namespace

absl::StatusOr<SweepAnalysis> AnalyzeSweep(const std::vector<v1::Trial>& trials,
                                           const SweepAnalysisOptions& options) {
  if (!(options.delta_points >= 0)) {
    return absl::InvalidArgumentError("delta: must be a number >= 0 (percentage points)");
  }
  SweepAnalysis a;
  a.trials = trials.size();
  a.groups = GroupTrials(trials);
  absl::StatusOr<std::string> axis = FindPrecisionAxis(a.groups, options.axis);
  if (!axis.ok() && !options.axis.empty()) return axis.status();
  a.axis_status = axis.status();
  ConvergenceOptions convergence;
  if (axis.ok()) {
    absl::StatusOr<ToleranceReport> t =
        PrecisionTolerance(a.groups, *axis, options.delta_points / 100);
    if (!t.ok()) return t.status();
    a.tolerance = std::move(*t);
    // Speed is compared at reduced precision: the fp32 cells do not depend on the rounding.
    convergence.exclude_path = *axis;
    for (const TrialGroup& g : a.groups) {
      if (IsFloat32Baseline(g.Value(*axis))) convergence.exclude_values.push_back(g.Value(*axis));
    }
  }
  absl::StatusOr<ConvergenceReport> c = CompareConvergence(a.groups, convergence);
  if (c.ok()) a.convergence = std::move(*c);
  a.sensitivity = Sensitivity(a.groups, axis.ok() ? *axis : "");
  return a;
}

json SweepAnalysisJson(const SweepAnalysis& a) {
  json groups = json::array();
  for (const TrialGroup& g : a.groups) groups.push_back(GroupJson(g));
  return {{"trials", a.trials},
          {"groups", groups},
          {"tolerance", a.tolerance ? ToleranceJson(*a.tolerance) : json(nullptr)},
          {"tolerance_missing",
           a.axis_status.ok() ? json(nullptr) : json(std::string(a.axis_status.message()))},
          {"convergence", a.convergence ? ConvergenceJson(*a.convergence) : json(nullptr)},
          {"sensitivity", SensitivityJson(a.sensitivity)}};
}

}  // namespace bitsweep::analysis
