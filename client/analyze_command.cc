#include "client/analyze_command.h"

#include <CLI/CLI.hpp>
#include <cmath>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/bit_width.h"
#include "analysis/convergence_speed.h"
#include "analysis/precision_tolerance.h"
#include "analysis/sensitivity.h"
#include "analysis/trial_groups.h"
#include "client/text_table.h"
#include "nlohmann/json.hpp"

namespace bitsweep::client {
namespace {

using analysis::ConvergenceReport;
using analysis::SensitivityReport;
using analysis::ToleranceReport;
using analysis::TrialGroup;
using nlohmann::json;

std::string Percent(double fraction) { return absl::StrFormat("%.2f", 100 * fraction); }

// A JSON number, or null for NaN (no interval).
json Number(double v) { return std::isnan(v) ? json(nullptr) : json(v); }

std::string Outcomes(const TrialGroup& g) {
  std::string s;
  auto add = [&](int count, const char* name) {
    if (count > 0) absl::StrAppend(&s, s.empty() ? "" : ", ", count, " ", name);
  };
  add(g.completed, "completed");
  add(g.diverged, "diverged");
  add(g.pruned, "pruned");
  add(g.failed, "failed");
  add(g.cancelled, "cancelled");
  add(g.unfinished, "unfinished");
  return s;
}

json GroupJson(const TrialGroup& g) {
  json params = json::object();
  for (const analysis::ParamValue& p : g.params) params[p.path] = p.value;
  const analysis::Summary& s = g.final_accuracy;
  return {{"params", params},
          {"n", s.n},
          {"mean", s.mean},
          {"std", s.std},
          {"ci95", {Number(s.ci_low), Number(s.ci_high)}},
          {"completed", g.completed},
          {"diverged", g.diverged},
          {"pruned", g.pruned},
          {"failed", g.failed},
          {"cancelled", g.cancelled},
          {"unfinished", g.unfinished}};
}

void WriteGroups(const std::vector<TrialGroup>& groups, std::ostream& out) {
  std::vector<std::string> headers;
  const std::vector<std::string> paths = analysis::ParameterPaths(groups);
  for (const std::string& p : paths) headers.push_back(p.substr(p.rfind('.') + 1));
  for (const char* h : {"n", "mean %", "std", "95% interval", "outcomes"}) headers.push_back(h);
  TextTable table(headers);
  for (size_t c = paths.size(); c < paths.size() + 4; ++c)
    table.SetAlign(c, TextTable::Align::kRight);
  for (const TrialGroup& g : groups) {
    std::vector<std::string> row;
    for (const std::string& p : paths) row.push_back(g.Value(p));
    const analysis::Summary& s = g.final_accuracy;
    row.push_back(absl::StrCat(s.n));
    row.push_back(s.n ? Percent(s.mean) : "-");
    row.push_back(s.n > 1 ? Percent(s.std) : "-");
    row.push_back(s.n > 1 ? absl::StrCat(Percent(s.ci_low), " .. ", Percent(s.ci_high)) : "-");
    row.push_back(Outcomes(g));
    table.AddRow(row);
  }
  table.Render(out);
}

std::string PointText(const analysis::WidthPoint& w) {
  return absl::StrFormat("%s %s%% (n=%d)", w.format, Percent(w.group->final_accuracy.mean),
                         w.group->final_accuracy.n);
}

json ToleranceJson(const ToleranceReport& report) {
  json slices = json::array();
  for (const analysis::ToleranceSlice& s : report.slices) {
    json others = json::object();
    for (const analysis::ParamValue& p : s.others) others[p.path] = p.value;
    json widths = json::array();
    for (const analysis::WidthPoint& w : s.widths) {
      widths.push_back({{"bits", w.bits},
                        {"format", w.format},
                        {"mean", w.group->final_accuracy.mean},
                        {"n", w.group->final_accuracy.n},
                        {"within", w.within}});
    }
    slices.push_back(
        {{"others", others},
         {"baseline_mean", s.baseline ? json(s.baseline->final_accuracy.mean) : json(nullptr)},
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

void WriteTolerance(const ToleranceReport& report, std::ostream& out) {
  out << absl::StrFormat("\nprecision tolerance along %s (within %.2f points of fp32)\n",
                         report.axis, 100 * report.delta);
  for (const analysis::ToleranceSlice& s : report.slices) {
    out << "  " << analysis::DescribeParams(s.others) << ": ";
    if (s.baseline == nullptr) {
      out << "no fp32 baseline";
    } else {
      out << "fp32 " << Percent(s.baseline->final_accuracy.mean) << "%; ";
      if (s.min_bits >= 0) {
        out << "fewest bits " << s.min_bits << " (" << PointText(s.widths[s.min_index]) << ")";
      } else {
        out << "no width stays within";
      }
      if (s.below_index >= 0) out << "; below: " << PointText(s.widths[s.below_index]);
    }
    if (s.knee_from_bits >= 0) {
      out << absl::StrFormat("; knee %d -> %d bits (-%.2f points)", s.knee_from_bits,
                             s.knee_to_bits, 100 * s.knee_drop);
    }
    out << "\n";
  }
}

json ConvergenceJson(const ConvergenceReport& r) {
  json slices = json::array();
  for (const analysis::ConvergenceSlice& s : r.slices) {
    json others = json::object();
    for (const analysis::ParamValue& p : s.others) others[p.path] = p.value;
    slices.push_back({{"others", others},
                      {r.a, s.a_iterations},
                      {r.b, s.b_iterations},
                      {r.a + "_missed", s.a_missed},
                      {r.b + "_missed", s.b_missed},
                      {"ratio", s.ratio}});
  }
  return {{"axis", r.axis},
          {"a", r.a},
          {"b", r.b},
          {"ratio", r.ratio},
          {"ci95", {r.ci_low, r.ci_high}},
          {"interval", "stratified percentile bootstrap"},
          {"resamples", r.resamples},
          {"compared_slices", r.compared_slices},
          {"slices", slices}};
}

void WriteConvergence(const ConvergenceReport& r, std::ostream& out) {
  out << "\nconvergence speed (iterations to target accuracy), " << r.a << " vs " << r.b
      << ", fp32 slices left out\n";
  int a_missed = 0, b_missed = 0;
  for (const analysis::ConvergenceSlice& s : r.slices) {
    a_missed += s.a_missed;
    b_missed += s.b_missed;
  }
  if (r.compared_slices == 0) {
    out << "  no slice where both reached the target\n";
  } else {
    out << absl::StrFormat(
        "  ratio %s/%s = %.3f, 95%% interval %.3f .. %.3f (stratified bootstrap, %d resamples, "
        "%d slices): %s needs %.1f%% %s iterations\n",
        r.a, r.b, r.ratio, r.ci_low, r.ci_high, r.resamples, r.compared_slices, r.a,
        100 * std::fabs(r.speedup()), r.speedup() >= 0 ? "fewer" : "more");
  }
  out << "  never reached the target: " << a_missed << " " << r.a << ", " << b_missed << " " << r.b
      << " trials (left out of the ratio)\n";
}

json SensitivityJson(const SensitivityReport& r) {
  json terms = json::array();
  for (const analysis::SensitivityTerm& t : r.terms) {
    terms.push_back({{"term", t.name}, {"share", t.share}, {"levels", t.levels}});
  }
  return {{"observations", r.observations}, {"ss_total", r.ss_total}, {"terms", terms}};
}

void WriteSensitivity(const SensitivityReport& r, std::ostream& out) {
  out << "\nsensitivity: share of the variance of final accuracy (" << r.observations
      << " trials)\n";
  int rank = 1;
  for (const analysis::SensitivityTerm& t : r.terms) {
    out << absl::StrFormat("  %2d. %-60s %6.1f%%\n", rank++, t.name, 100 * t.share);
  }
}

}  // namespace

absl::Status WriteAnalysis(const std::vector<v1::Trial>& trials, const AnalyzeRequest& request,
                           std::ostream& out) {
  if (!(request.delta_points >= 0)) return absl::InvalidArgumentError("--delta must be >= 0");
  const std::vector<TrialGroup> groups = analysis::GroupTrials(trials);
  json result = {{"trials", trials.size()}, {"groups", json::array()}};
  for (const TrialGroup& g : groups) result["groups"].push_back(GroupJson(g));

  absl::StatusOr<std::string> axis = analysis::FindPrecisionAxis(groups, request.axis);
  if (!axis.ok() && !request.axis.empty()) return axis.status();
  std::optional<ToleranceReport> tolerance;
  if (axis.ok()) {
    absl::StatusOr<ToleranceReport> t =
        analysis::PrecisionTolerance(groups, *axis, request.delta_points / 100);
    if (!t.ok()) return t.status();
    tolerance = std::move(*t);
  }
  std::optional<ConvergenceReport> convergence;
  analysis::ConvergenceOptions options;
  if (axis.ok()) {
    options.exclude_path = *axis;
    for (const TrialGroup& g : groups) {
      if (analysis::IsFloat32Baseline(g.Value(*axis)))
        options.exclude_values.push_back(g.Value(*axis));
    }
  }
  absl::StatusOr<ConvergenceReport> c = analysis::CompareConvergence(groups, options);
  if (c.ok()) convergence = std::move(*c);
  const SensitivityReport sensitivity = analysis::Sensitivity(groups, axis.ok() ? *axis : "");

  if (request.json) {
    result["tolerance"] = tolerance ? ToleranceJson(*tolerance) : json(nullptr);
    result["convergence"] = convergence ? ConvergenceJson(*convergence) : json(nullptr);
    result["sensitivity"] = SensitivityJson(sensitivity);
    out << result.dump(2) << "\n";
    return absl::OkStatus();
  }
  out << trials.size() << " trials in " << groups.size()
      << " groups (final test accuracy over seeds; 95% interval from Student's t)\n";
  WriteGroups(groups, out);
  if (tolerance) {
    WriteTolerance(*tolerance, out);
  } else {
    out << "\nprecision tolerance: " << axis.status().message() << "\n";
  }
  if (convergence) WriteConvergence(*convergence, out);
  WriteSensitivity(sensitivity, out);
  return absl::OkStatus();
}

absl::StatusOr<int> AnalyzeCommand(SweepClient& client, const AnalyzeRequest& request,
                                   const CommandEnv& env) {
  absl::StatusOr<std::vector<v1::Trial>> trials = client.ListTrials(request.sweep_id);
  if (!trials.ok()) return trials.status();
  absl::Status status = WriteAnalysis(*trials, request, *env.out);
  if (!status.ok()) return status;
  return kExitOk;
}

void AddAnalyzeCommand(CLI::App& app, const std::function<void(RemoteRun)>& set_run) {
  auto request = std::make_shared<AnalyzeRequest>();
  CLI::App* command = app.add_subcommand(
      "analyze", "How few bits? Tolerance, knee, convergence speed and sensitivity of a sweep");
  command->add_option("SWEEP", request->sweep_id, "Sweep id (as printed by submit and ls)")
      ->required()
      ->check(CLI::PositiveNumber);
  command->add_flag("--json", request->json, "Print JSON instead of tables");
  command
      ->add_option("--delta", request->delta_points,
                   "Tolerance: percentage points of accuracy below the fp32 baseline")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  command->add_option("--axis", request->axis,
                      "The precision axis (default: precision.default.format if swept)");
  command->footer(
      "Example:\n"
      "  bitsweep analyze 1\n"
      "  bitsweep analyze 1 --delta 1 --json");
  command->callback([request, set_run] {
    set_run([request](SweepClient& client, const CommandEnv& env) {
      return AnalyzeCommand(client, *request, env);
    });
  });
}

}  // namespace bitsweep::client
