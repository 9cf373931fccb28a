#include "client/analyze_command.h"

#include <CLI/CLI.hpp>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "analysis/bit_width.h"
#include "analysis/convergence_speed.h"
#include "analysis/precision_tolerance.h"
#include "analysis/sensitivity.h"
#include "analysis/sweep_analysis.h"
#include "analysis/trial_groups.h"
#include "client/text_table.h"

namespace bitsweep::client {
namespace {

using analysis::ConvergenceReport;
using analysis::SensitivityReport;
using analysis::ToleranceReport;
using analysis::TrialGroup;

std::string Percent(double fraction) { return absl::StrFormat("%.2f", 100 * fraction); }

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
      // The change in accuracy at the knee, signed: at small n a narrower width can score higher.
      const double change = std::fabs(s.knee_drop) < 5e-5 ? 0.0 : -100 * s.knee_drop;
      out << absl::StrFormat("; knee %d -> %d bits (%+.2f points)", s.knee_from_bits,
                             s.knee_to_bits, change);
    }
    out << "\n";
  }
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
  absl::StatusOr<analysis::SweepAnalysis> a =
      analysis::AnalyzeSweep(trials, {request.delta_points, request.axis});
  if (!a.ok()) return a.status();
  if (request.json) {
    out << analysis::SweepAnalysisJson(*a).dump(2) << "\n";
    return absl::OkStatus();
  }
  out << a->trials << " trials in " << a->groups.size()
      << " groups (final test accuracy over seeds; 95% interval from Student's t)\n";
  WriteGroups(a->groups, out);
  if (a->tolerance) {
    WriteTolerance(*a->tolerance, out);
  } else {
    out << "\nprecision tolerance: " << a->axis_status.message() << "\n";
  }
  if (a->convergence) WriteConvergence(*a->convergence, out);
  WriteSensitivity(a->sensitivity, out);
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
