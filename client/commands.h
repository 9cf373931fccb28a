// The CLI's commands, one function each, independent of argument parsing so that tests can call
// them against a fake server. Each writes its normal output to `env.out` and returns the exit
// code for a completed command (0, or 1 when the sweep has failed trials); a failed command
// returns its error, which the caller prints (see cli.h for the mapping to exit codes).
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

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

// A command that talks to the server, run once the command line is parsed.
using RemoteRun = std::function<absl::StatusOr<int>(SweepClient&, const CommandEnv&)>;

// Exit codes of the bitsweep CLI.
inline constexpr int kExitOk = 0;
inline constexpr int kExitTrialsFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;

// What `submit` does besides submitting.
struct SubmitOptions {
  // Validate and count the trials; store nothing.
  bool dry_run = false;
  // Watch the sweep afterwards (WatchCommand).
  bool watch = false;
  // Reuse an existing sweep with the same spec: requeue its failed and cancelled trials.
  bool resume = false;
};

// `submit FILE`: prints "submitted sweep N (T trials)", or "valid: T trials" for a dry run, or
// for a spec the server already has "existing sweep N: requeued X, reused Y" (with `resume`) or
// "existing sweep N (T trials), unchanged"; with `watch`, then watches the sweep.
// Errors: those of ParseSweepFile (before contacting the server); InvalidArgument (the server
// rejected the spec, message prefixed with FILE); Unavailable.
absl::StatusOr<int> SubmitCommand(SweepClient& client, const std::string& file,
                                  const SubmitOptions& options, const CommandEnv& env);

// `ls`: a table of sweeps (id, name, state, done/total, running, failed, created), or a JSON
// array. Errors: Unavailable.
absl::StatusOr<int> ListCommand(SweepClient& client, bool json, const CommandEnv& env);

// `status SWEEP`: one sweep's state and counts, or a JSON object. Errors: NotFound; Unavailable.
absl::StatusOr<int> StatusCommand(SweepClient& client, int64_t sweep_id, bool json,
                                  const CommandEnv& env);

// `watch SWEEP...`: a progress line per sweep (bar, done/running/failed, rate in trials per
// minute and ETA once a trial has finished while watching), redrawn in place on a terminal and
// printed once per change otherwise; failed trials' errors as they happen; when every sweep has
// ended, a summary table (one row per sweep). Several sweeps are followed at once, each on its
// own stream. Returns 1 when any trial failed. Errors: NotFound (checked before watching);
// Unavailable.
absl::StatusOr<int> WatchCommand(SweepClient& client, const std::vector<int64_t>& sweep_ids,
                                 const CommandEnv& env);

// `results SWEEP`: one row per trial (id, swept parameters, seed, state, final and best test
// accuracy in %, iterations to target, outcome), then the errors of failed trials; or a JSON
// array of trials. Returns 1 when any trial failed. Errors: NotFound; Unavailable.
absl::StatusOr<int> ResultsCommand(SweepClient& client, int64_t sweep_id, bool json,
                                   const CommandEnv& env);

// `cancel SWEEP`: cancels and prints the resulting state. Errors: NotFound; Unavailable.
absl::StatusOr<int> CancelCommand(SweepClient& client, int64_t sweep_id, const CommandEnv& env);

// `cancel --trial TRIAL`: cancels one trial, prints "trial N (sweep S): STATE".
// Errors: NotFound; Unavailable.
absl::StatusOr<int> CancelTrialCommand(SweepClient& client, int64_t trial_id,
                                       const CommandEnv& env);

// `pause SWEEP` / `resume SWEEP`: no new trials start while paused (running ones finish); prints
// the resulting state. Errors: NotFound; FailedPrecondition (e.g. the sweep has ended);
// Unavailable.
absl::StatusOr<int> PauseCommand(SweepClient& client, int64_t sweep_id, const CommandEnv& env);
absl::StatusOr<int> ResumeCommand(SweepClient& client, int64_t sweep_id, const CommandEnv& env);

// `rerun SWEEP --failed [--cancelled]`: requeues those trials with a fresh attempt budget and
// prints "sweep N: requeued X trials". Errors: InvalidArgument (neither kind asked for);
// NotFound; Unavailable.
absl::StatusOr<int> RerunCommand(SweepClient& client, int64_t sweep_id, bool failed, bool cancelled,
                                 const CommandEnv& env);

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
// last `tail` curve points; or all of it as one JSON object (the trial as in `results --json`
// plus worker, started/finished times and "curve"). Returns 1 when the trial failed.
// Errors: NotFound; Unavailable.
absl::StatusOr<int> LogsCommand(SweepClient& client, int64_t trial_id, int tail, bool json,
                                const CommandEnv& env);

// "[#####.....] 5/10 done, 2 running, 0 failed" (also "N cancelled" and "N diverged" when
// non-zero); the bar is `bar_width` characters wide.
std::string FormatProgressLine(const v1::TrialCounts& counts, int bar_width = 20);

// ", R trials/min, ETA T" for a sweep whose finished trials (done + failed + cancelled) went
// from `finished_then` at `then_ms` to `finished_now` at `now_ms`, out of `total`; without the
// ETA once nothing is left. "" when no trial finished in between or no time passed: a rate is
// only shown once it has been observed.
std::string FormatRateAndEta(int64_t finished_then, int64_t then_ms, int64_t finished_now,
                             int64_t now_ms, int64_t total);

// "45s", "3m05s", "2h10m".
std::string FormatShortDuration(int64_t seconds);

}  // namespace bitsweep::client
