// `bitsweep analyze`: answers "how few bits?" for a finished (or running) sweep, from its trials
// (ListTrials), with the analysis library (analysis/):
//
//   bitsweep analyze SWEEP [--json] [--delta 0.5] [--axis PATH]
//
// Prints the groups over seeds (mean, std, 95% t interval, n, outcomes), the precision
// tolerance per value of the other axes (fewest bits within δ points of fp32, with the groups
// either side) and its knee, stochastic vs truncate iterations-to-target (when the sweep has
// both roundings) and the sensitivity ranking. --json prints the same as one JSON object.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bitsweep/v1/sweep.pb.h"
#include "client/commands.h"
#include "client/sweep_client.h"

namespace CLI {
class App;
}

namespace bitsweep::client {

struct AnalyzeRequest {
  int64_t sweep_id = 0;
  bool json = false;
  double delta_points = 0.5;  // percentage points of test accuracy
  std::string axis;           // precision axis; empty: found (analysis::FindPrecisionAxis)
};

// Writes the analysis of `trials` to `out` (text, or JSON with request.json).
// Errors: InvalidArgument (delta < 0; --axis not swept or not formats).
absl::Status WriteAnalysis(const std::vector<v1::Trial>& trials, const AnalyzeRequest& request,
                           std::ostream& out);

// Fetches the sweep's trials and writes the analysis to env.out; returns the exit code.
// Errors: NotFound (no such sweep), Unavailable, and as WriteAnalysis.
absl::StatusOr<int> AnalyzeCommand(SweepClient& client, const AnalyzeRequest& request,
                                   const CommandEnv& env);

// Registers `analyze` on the CLI; `set_run` receives the command to run once parsed.
void AddAnalyzeCommand(CLI::App& app, const std::function<void(RemoteRun)>& set_run);

}  // namespace bitsweep::client
