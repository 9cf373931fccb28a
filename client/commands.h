// The CLI's commands, one function each, independent of argument parsing so that tests can call
// them against a fake server. Each writes its normal output to `env.out` and returns the exit
// code for a completed command (0, or 1 when the sweep has failed trials); a failed command
// returns its error, which the caller prints (see cli.h for the mapping to exit codes).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "bitsweep/v1/sweep.pb.h"
#include "client/sweep_client.h"
#include "common/clock.h"

namespace bitsweep::client {

// Where and how a command prints.
struct CommandEnv {
  std::ostream* out = nullptr;
  // stdout is a terminal: progress is redrawn in place instead of one line per change.
  bool interactive = false;
  // Columns available to tables; 0 means unlimited (output is not a terminal).
  int width = 0;
  // For ages such as "last heartbeat 3s ago".
  const common::Clock* clock = common::SystemClock::Get();
};

// Exit codes of the bitsweep CLI.
inline constexpr int kExitOk = 0;
inline constexpr int kExitTrialsFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;

// `submit FILE`: prints "submitted sweep N (T trials)", or "valid: T trials" for a dry run; with
// `watch`, then watches the sweep (see WatchCommand).
// Errors: those of ParseSweepFile (before contacting the server); InvalidArgument (the server
// rejected the spec, message prefixed with FILE); Unavailable.
absl::StatusOr<int> SubmitCommand(SweepClient& client, const std::string& file, bool dry_run,
                                  bool watch, const CommandEnv& env);

// `ls`: a table of sweeps (id, name, state, done/total, running, failed, created), or a JSON
// array. Errors: Unavailable.
absl::StatusOr<int> ListCommand(SweepClient& client, bool json, const CommandEnv& env);

// `status SWEEP`: one sweep's state and counts, or a JSON object. Errors: NotFound; Unavailable.
absl::StatusOr<int> StatusCommand(SweepClient& client, int64_t sweep_id, bool json,
                                  const CommandEnv& env);

// `watch SWEEP`: a progress line per change until the sweep ends, then a summary. Returns 1 when
// any trial failed. Errors: NotFound; Unavailable.
absl::StatusOr<int> WatchCommand(SweepClient& client, int64_t sweep_id, const CommandEnv& env);

// `results SWEEP`: one row per trial (id, swept parameters, seed, state, final and best test
// accuracy in %, iterations to target, outcome), then the errors of failed trials; or a JSON
// array of trials. Returns 1 when any trial failed. Errors: NotFound; Unavailable.
absl::StatusOr<int> ResultsCommand(SweepClient& client, int64_t sweep_id, bool json,
                                   const CommandEnv& env);

// `cancel SWEEP`: cancels and prints the resulting state. Errors: NotFound; Unavailable.
absl::StatusOr<int> CancelCommand(SweepClient& client, int64_t sweep_id, const CommandEnv& env);

// `workers`: id, host, slots, running, last heartbeat age, alive; or a JSON array.
// Errors: Unavailable.
absl::StatusOr<int> WorkersCommand(SweepClient& client, bool json, const CommandEnv& env);

// What `export` writes.
struct ExportOptions {
  int64_t sweep_id = 0;
  // csv | json
  std::string format = "csv";
  // One row per curve point (iteration, epoch, losses, accuracies, learning rate) instead of
  // one per trial.
  bool curves = false;
  // Empty or "-": `env.out`. Otherwise written whole (temporary file, then rename).
  std::string output_path;
};

// `export SWEEP`: one row per trial, columns trial_id, every swept parameter path, seed, state,
// attempt, final_test_accuracy, best_test_accuracy (fractions), iterations_to_target, outcome,
// worker, duration_seconds, error; missing values are empty (CSV) or null (JSON). With
// `curves`, one row per curve point (one GetTrial call per trial). Returns 1 when any trial
// failed (the export is still written). Errors: InvalidArgument (bad format, cannot write the
// file); NotFound; Unavailable.
absl::StatusOr<int> ExportCommand(SweepClient& client, const ExportOptions& options,
                                  const CommandEnv& env);

// `logs TRIAL`: the trial's state, attempt, parameters, worker, times, result or error, and its
// last `tail` curve points. Returns 1 when the trial failed. Errors: NotFound; Unavailable.
absl::StatusOr<int> LogsCommand(SweepClient& client, int64_t trial_id, int tail,
                                const CommandEnv& env);

// "[#####.....] 5/10 done, 2 running, 0 failed" (also "N cancelled" and "N diverged" when
// non-zero); the bar is `bar_width` characters wide.
std::string FormatProgressLine(const v1::TrialCounts& counts, int bar_width = 20);

}  // namespace bitsweep::client
