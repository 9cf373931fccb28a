#include "client/commands.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "client/sweep_file.h"
#include "client/text_table.h"
#include "common/status_macros.h"
#include "proto/state_names.h"

namespace bitsweep::client {
namespace {

using nlohmann::json;

// One mapping for the CLI and the server's metrics (proto/state_names.h).
using v1::SweepStateName;
using v1::TrialStateName;
std::string OutcomeName(v1::TrialOutcome outcome) { return v1::TrialOutcomeName(outcome); }

// What became of a trial, for the results table: the result's outcome once it is done,
// otherwise its state.
std::string TrialOutcomeText(const v1::Trial& trial) {
  if (trial.state() == v1::TRIAL_STATE_DONE) return OutcomeName(trial.result().outcome());
  if (trial.state() == v1::TRIAL_STATE_QUEUED || trial.state() == v1::TRIAL_STATE_RUNNING) {
    return "-";
  }
  return TrialStateName(trial.state());
}

std::string Plural(int64_t n, absl::string_view noun) {
  return absl::StrCat(n, " ", noun, n == 1 ? "" : "s");
}

// Timestamps are shown in UTC, like the server's logs.
std::string FormatUnixMs(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

std::string FormatAge(int64_t now_ms, int64_t then_ms) {
  if (then_ms <= 0) return "never";
  const int64_t seconds = std::max<int64_t>(0, (now_ms - then_ms) / 1000);
  if (seconds < 120) return absl::StrCat(seconds, "s ago");
  if (seconds < 2 * 3600) return absl::StrCat(seconds / 60, "m ago");
  if (seconds < 2 * 86400) return absl::StrCat(seconds / 3600, "h ago");
  return absl::StrCat(seconds / 86400, "d ago");
}

std::string Percent(double fraction) { return absl::StrFormat("%.2f", fraction * 100.0); }

json CountsToJson(const v1::TrialCounts& counts) {
  return json{{"total", counts.total()},       {"queued", counts.queued()},
              {"running", counts.running()},   {"done", counts.done()},
              {"failed", counts.failed()},     {"cancelled", counts.cancelled()},
              {"diverged", counts.diverged()}, {"pruned", counts.pruned()}};
}

json SweepToJson(const v1::Sweep& sweep) {
  return json{{"id", sweep.id()},
              {"name", sweep.name()},
              {"state", SweepStateName(sweep.state())},
              {"priority", sweep.priority()},
              {"counts", CountsToJson(sweep.counts())},
              {"created_unix_ms", sweep.created_unix_ms()},
              {"finished_unix_ms",
               sweep.finished_unix_ms() > 0 ? json(sweep.finished_unix_ms()) : json(nullptr)}};
}

// The proto's own JSON mapping would print int64 fields as strings; results are written by
// hand so that every number is a JSON number.
json ResultToJson(const v1::TrialResult& result) {
  return json{
      {"outcome", OutcomeName(result.outcome())},
      {"final_test_accuracy", result.final_test_accuracy()},
      {"best_test_accuracy", result.best_test_accuracy()},
      {"final_test_loss", result.final_test_loss()},
      {"iterations_to_target",
       result.iterations_to_target() >= 0 ? json(result.iterations_to_target()) : json(nullptr)},
      {"iterations", result.iterations()},
      {"num_classes", result.num_classes()},
      {"confusion", std::vector<int64_t>(result.confusion().begin(), result.confusion().end())},
      {"per_class_recall",
       std::vector<double>(result.per_class_recall().begin(), result.per_class_recall().end())},
      {"kappa", result.kappa()},
      {"images_per_second", result.images_per_second()},
      {"train_seconds", result.train_seconds()},
      {"detail", result.detail()}};
}

json TrialToJson(const v1::Trial& trial) {
  json params = json::object();
  for (const v1::TrialParam& param : trial.params()) params[param.path()] = param.value();
  json object{{"id", trial.id()},
              {"sweep_id", trial.sweep_id()},
              {"params", std::move(params)},
              {"seed", trial.seed()},
              {"state", TrialStateName(trial.state())},
              {"attempt", trial.attempt()},
              {"result", trial.state() == v1::TRIAL_STATE_DONE ? ResultToJson(trial.result())
                                                               : json(nullptr)}};
  if (trial.state() == v1::TRIAL_STATE_FAILED) object["error"] = trial.error();
  return object;
}

json WorkerToJson(const v1::WorkerInfo& worker) {
  return json{
      {"id", worker.worker_id()},    {"incarnation", worker.incarnation()},
      {"host", worker.host()},       {"slots", worker.slots()},
      {"running", worker.running()}, {"last_heartbeat_unix_ms", worker.last_heartbeat_unix_ms()},
      {"alive", worker.alive()},     {"trials_done", worker.trials_done()}};
}

void PrintJson(const json& value, const CommandEnv& env) { *env.out << value.dump(2) << '\n'; }

// Column headers for swept parameters: the last path component, unless two paths share it.
std::vector<std::string> ParameterHeaders(const std::vector<std::string>& paths) {
  auto last_component = [](const std::string& path) {
    const size_t dot = path.rfind('.');
    return dot == std::string::npos ? path : path.substr(dot + 1);
  };
  std::map<std::string, int> uses;
  for (const std::string& path : paths) ++uses[last_component(path)];
  std::vector<std::string> headers;
  for (const std::string& path : paths) {
    const std::string short_name = last_component(path);
    headers.push_back(uses[short_name] > 1 ? path : short_name);
  }
  return headers;
}

std::string SweepSummary(const v1::Sweep& sweep) {
  const v1::TrialCounts& counts = sweep.counts();
  std::string summary =
      absl::StrCat("sweep ", sweep.id(), " (", sweep.name(), ") ", SweepStateName(sweep.state()),
                   ": ", counts.done(), "/", counts.total(), " done");
  if (counts.diverged() > 0 || counts.pruned() > 0) {
    std::vector<std::string> parts;
    if (counts.diverged() > 0) parts.push_back(absl::StrCat(counts.diverged(), " diverged"));
    if (counts.pruned() > 0) parts.push_back(absl::StrCat(counts.pruned(), " pruned"));
    absl::StrAppend(&summary, " (", absl::StrJoin(parts, ", "), ")");
  }
  absl::StrAppend(&summary, ", ", counts.failed(), " failed");
  if (counts.cancelled() > 0) absl::StrAppend(&summary, ", ", counts.cancelled(), " cancelled");
  if (counts.running() > 0) absl::StrAppend(&summary, ", ", counts.running(), " running");
  if (counts.queued() > 0) absl::StrAppend(&summary, ", ", counts.queued(), " queued");
  return summary;
}

// The spec as JSON through protobuf's mapping: `base` is a Struct and maps onto plain JSON.
json SpecToJson(const v1::SweepSpec& spec) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(spec, &text, options).ok()) return nullptr;
  return json::parse(text, nullptr, /*allow_exceptions=*/false);
}

}  // namespace

std::string FormatProgressLine(const v1::TrialCounts& counts, int bar_width) {
  const int64_t finished = counts.done() + counts.failed() + counts.cancelled();
  int filled = 0;
  if (counts.total() > 0) {
    filled = static_cast<int>(std::min<int64_t>(bar_width, finished * bar_width / counts.total()));
  }
  std::string line = absl::StrCat(
      "[", std::string(filled, '#'), std::string(bar_width - filled, '.'), "] ", counts.done(), "/",
      counts.total(), " done, ", counts.running(), " running, ", counts.failed(), " failed");
  if (counts.cancelled() > 0) absl::StrAppend(&line, ", ", counts.cancelled(), " cancelled");
  if (counts.diverged() > 0) absl::StrAppend(&line, ", ", counts.diverged(), " diverged");
  if (counts.pruned() > 0) absl::StrAppend(&line, ", ", counts.pruned(), " pruned");
  return line;
}

std::string FormatShortDuration(int64_t seconds) {
  seconds = std::max<int64_t>(0, seconds);
  if (seconds < 60) return absl::StrCat(seconds, "s");
  if (seconds < 3600) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  return absl::StrFormat("%dh%02dm", seconds / 3600, (seconds % 3600) / 60);
}

std::string FormatRateAndEta(int64_t finished_then, int64_t then_ms, int64_t finished_now,
                             int64_t now_ms, int64_t total) {
  const int64_t finished = finished_now - finished_then;
  const int64_t elapsed_ms = now_ms - then_ms;
  if (finished <= 0 || elapsed_ms <= 0) return "";
  const double per_minute = static_cast<double>(finished) * 60'000.0 / elapsed_ms;
  std::string text = absl::StrFormat(", %.1f trials/min", per_minute);
  const int64_t left = total - finished_now;
  if (left > 0) {
    const auto eta_seconds = static_cast<int64_t>(static_cast<double>(left) * 60.0 / per_minute);
    absl::StrAppend(&text, ", ETA ", FormatShortDuration(eta_seconds));
  }
  return text;
}

absl::StatusOr<int> SubmitCommand(SweepClient& client, const std::string& file,
                                  const SubmitOptions& options, const CommandEnv& env) {
  ASSIGN_OR_RETURN(v1::SweepSpec spec, ParseSweepFile(file));
  absl::StatusOr<v1::SubmitSweepResponse> response =
      client.SubmitSweep(spec, options.dry_run, options.resume);
  if (absl::IsInvalidArgument(response.status())) {
    // The server names the field path; the user also needs to know which file it is in.
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", response.status().message()));
  }
  RETURN_IF_ERROR(response.status());
  if (options.dry_run) {
    *env.out << "valid: " << Plural(response->trial_count(), "trial") << '\n';
    return kExitOk;
  }
  if (response->existing() && options.resume) {
    *env.out << "existing sweep " << response->sweep_id() << ": requeued " << response->requeued()
             << ", reused " << response->reused() << std::endl;
  } else if (response->existing()) {
    *env.out << "existing sweep " << response->sweep_id() << " ("
             << Plural(response->trial_count(), "trial")
             << "), unchanged (--resume requeues its failed and cancelled trials)" << std::endl;
  } else {
    *env.out << "submitted sweep " << response->sweep_id() << " ("
             << Plural(response->trial_count(), "trial") << ")" << std::endl;
  }
  if (!options.watch) return kExitOk;
  return WatchCommand(client, {response->sweep_id()}, env);
}

absl::StatusOr<int> ListCommand(SweepClient& client, bool json_output, const CommandEnv& env) {
  ASSIGN_OR_RETURN(std::vector<v1::Sweep> sweeps, client.ListSweeps());
  if (json_output) {
    json array = json::array();
    for (const v1::Sweep& sweep : sweeps) array.push_back(SweepToJson(sweep));
    PrintJson(array, env);
    return kExitOk;
  }
  TextTable table({"id", "name", "state", "done/total", "running", "failed", "created (UTC)"});
  for (size_t column : {0, 3, 4, 5}) table.SetAlign(column, TextTable::Align::kRight);
  for (const v1::Sweep& sweep : sweeps) {
    const v1::TrialCounts& counts = sweep.counts();
    table.AddRow({absl::StrCat(sweep.id()), sweep.name(), SweepStateName(sweep.state()),
                  absl::StrCat(counts.done(), "/", counts.total()), absl::StrCat(counts.running()),
                  absl::StrCat(counts.failed()), FormatUnixMs(sweep.created_unix_ms())});
  }
  table.Render(*env.out, env.width);
  return kExitOk;
}

absl::StatusOr<int> StatusCommand(SweepClient& client, int64_t sweep_id, bool json_output,
                                  const CommandEnv& env) {
  ASSIGN_OR_RETURN(v1::Sweep sweep, client.GetSweep(sweep_id));
  if (json_output) {
    json object = SweepToJson(sweep);
    object["spec"] = SpecToJson(sweep.spec());
    PrintJson(object, env);
    return kExitOk;
  }
  const v1::TrialCounts& counts = sweep.counts();
  std::ostream& out = *env.out;
  out << "sweep " << sweep.id() << " (" << sweep.name() << "): " << SweepStateName(sweep.state())
      << ", priority " << sweep.priority() << '\n';
  out << "trials:   " << counts.total() << " total, " << counts.queued() << " queued, "
      << counts.running() << " running, " << counts.done() << " done (" << counts.diverged()
      << " diverged), " << counts.failed() << " failed, " << counts.cancelled() << " cancelled\n";
  out << "progress: " << FormatProgressLine(counts) << '\n';
  out << "created:  " << FormatUnixMs(sweep.created_unix_ms()) << " UTC\n";
  if (sweep.finished_unix_ms() > 0) {
    out << "finished: " << FormatUnixMs(sweep.finished_unix_ms()) << " UTC\n";
  }
  return kExitOk;
}

namespace {

// What `watch` knows of one sweep: its last state and where the rate is measured from.
struct WatchedSweep {
  v1::Sweep sweep;
  bool seen = false;  // At least one event arrived.
  int64_t first_finished = 0;
  int64_t first_ms = 0;
  std::string line;  // The progress line last shown.
};

int64_t Finished(const v1::TrialCounts& counts) {
  return counts.done() + counts.failed() + counts.cancelled();
}

// Follows several sweeps at once and draws their progress lines; every method but the
// constructor is called from the sweeps' stream threads, under one lock.
class WatchDisplay {
 public:
  WatchDisplay(const std::vector<v1::Sweep>& sweeps, const CommandEnv& env) : env_(env) {
    for (const v1::Sweep& sweep : sweeps) {
      WatchedSweep watched;
      watched.sweep = sweep;
      watched_.push_back(std::move(watched));
    }
  }

  void OnEvent(size_t index, const v1::SweepEvent& event) {
    std::lock_guard<std::mutex> lock(mu_);
    WatchedSweep& watched = watched_[index];
    const int64_t now_ms = env_.clock->NowUnixMs();
    if (!watched.seen) {
      watched.seen = true;
      watched.first_finished = Finished(event.sweep().counts());
      watched.first_ms = now_ms;
    }
    watched.sweep = event.sweep();
    for (const v1::Trial& trial : event.trials()) {
      if (trial.state() == v1::TRIAL_STATE_FAILED && reported_failures_.insert(trial.id()).second) {
        PrintAboveBlock(absl::StrCat("trial ", trial.id(), " failed: ", trial.error()));
      }
    }
    std::string line = ProgressLine(watched, now_ms);
    if (env_.interactive) {
      watched.line = std::move(line);
      Redraw();
    } else if (line != watched.line) {
      *env_.out << line << std::endl;
      watched.line = std::move(line);
    }
  }

  // Ends the redrawn block (the cursor goes below it).
  void Finish() {
    std::lock_guard<std::mutex> lock(mu_);
    drawn_ = 0;
  }

  std::vector<v1::Sweep> Sweeps() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<v1::Sweep> sweeps;
    for (const WatchedSweep& watched : watched_) sweeps.push_back(watched.sweep);
    return sweeps;
  }
  bool Seen(size_t index) {
    std::lock_guard<std::mutex> lock(mu_);
    return watched_[index].seen;
  }
  void SetSweep(size_t index, v1::Sweep sweep) {
    std::lock_guard<std::mutex> lock(mu_);
    watched_[index].sweep = std::move(sweep);
  }

 private:
  std::string ProgressLine(const WatchedSweep& watched, int64_t now_ms) const {
    const v1::Sweep& sweep = watched.sweep;
    std::string line;
    if (watched_.size() > 1) line = absl::StrCat("sweep ", sweep.id(), " ");
    absl::StrAppend(&line, FormatProgressLine(sweep.counts()),
                    FormatRateAndEta(watched.first_finished, watched.first_ms,
                                     Finished(sweep.counts()), now_ms, sweep.counts().total()));
    if (sweep.state() == v1::SWEEP_STATE_PAUSED) absl::StrAppend(&line, " (paused)");
    // A line that wraps cannot be redrawn in place.
    if (env_.interactive && env_.width > 1) line = TruncateToWidth(line, env_.width - 1);
    return line;
  }

  // On a terminal the block of progress lines (one per sweep seen so far) is redrawn in place:
  // cursor up over the block, each line rewritten and cleared to its end.
  void Redraw() {
    std::ostream& out = *env_.out;
    if (drawn_ > 0) out << "\033[" << drawn_ << 'A';
    int lines = 0;
    for (const WatchedSweep& watched : watched_) {
      if (!watched.seen) continue;
      out << '\r' << watched.line << "\033[K\n";
      ++lines;
    }
    drawn_ = lines;
    out << std::flush;
  }

  void PrintAboveBlock(const std::string& message) {
    std::ostream& out = *env_.out;
    if (env_.interactive && drawn_ > 0) {
      // Up over the block, clear it, print the message; Redraw() puts the block back below.
      out << "\033[" << drawn_ << "A\r\033[J";
      drawn_ = 0;
    }
    out << message << '\n';
  }

  const CommandEnv& env_;
  std::mutex mu_;
  std::vector<WatchedSweep> watched_;
  std::set<int64_t> reported_failures_;
  int drawn_ = 0;  // Lines of the block now on screen (interactive).
};

// The table `watch` ends with: one row per sweep.
void PrintSweepSummaryTable(const std::vector<v1::Sweep>& sweeps, const CommandEnv& env) {
  TextTable table({"sweep", "name", "state", "done/total", "diverged", "pruned", "failed",
                   "cancelled", "took"});
  for (size_t column : {0, 3, 4, 5, 6, 7, 8}) table.SetAlign(column, TextTable::Align::kRight);
  for (const v1::Sweep& sweep : sweeps) {
    const v1::TrialCounts& counts = sweep.counts();
    const bool finished = sweep.finished_unix_ms() > 0 && sweep.created_unix_ms() > 0;
    table.AddRow(
        {absl::StrCat(sweep.id()), sweep.name(), SweepStateName(sweep.state()),
         absl::StrCat(counts.done(), "/", counts.total()), absl::StrCat(counts.diverged()),
         absl::StrCat(counts.pruned()), absl::StrCat(counts.failed()),
         absl::StrCat(counts.cancelled()),
         finished ? FormatShortDuration((sweep.finished_unix_ms() - sweep.created_unix_ms()) / 1000)
                  : "-"});
  }
  table.Render(*env.out, env.width);
}

}  // namespace

absl::StatusOr<int> WatchCommand(SweepClient& client, const std::vector<int64_t>& sweep_ids,
                                 const CommandEnv& env) {
  // Unknown ids are usage errors before anything is drawn.
  std::vector<v1::Sweep> sweeps;
  for (int64_t id : sweep_ids) {
    ASSIGN_OR_RETURN(v1::Sweep sweep, client.GetSweep(id));
    sweeps.push_back(std::move(sweep));
  }
  WatchDisplay display(sweeps, env);
  std::vector<absl::Status> statuses(sweeps.size());
  auto follow = [&](size_t index) {
    statuses[index] = client.WatchSweep(sweeps[index].id(), [&](const v1::SweepEvent& event) {
      display.OnEvent(index, event);
      return absl::OkStatus();
    });
  };
  if (sweeps.size() == 1) {
    follow(0);
  } else {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < sweeps.size(); ++i) threads.emplace_back(follow, i);
    for (std::thread& thread : threads) thread.join();
  }
  display.Finish();
  for (const absl::Status& status : statuses) RETURN_IF_ERROR(status);
  for (size_t i = 0; i < sweeps.size(); ++i) {
    // A stream that ended without an event (the sweep had already ended): ask once more.
    if (!display.Seen(i)) {
      ASSIGN_OR_RETURN(v1::Sweep sweep, client.GetSweep(sweeps[i].id()));
      display.SetSweep(i, std::move(sweep));
    }
  }
  const std::vector<v1::Sweep> final_sweeps = display.Sweeps();
  PrintSweepSummaryTable(final_sweeps, env);
  const bool any_failed =
      std::any_of(final_sweeps.begin(), final_sweeps.end(),
                  [](const v1::Sweep& sweep) { return sweep.counts().failed() > 0; });
  return any_failed ? kExitTrialsFailed : kExitOk;
}

absl::StatusOr<int> ResultsCommand(SweepClient& client, int64_t sweep_id, bool json_output,
                                   const CommandEnv& env) {
  ASSIGN_OR_RETURN(std::vector<v1::Trial> trials, client.ListTrials(sweep_id));
  const bool any_failed = std::any_of(trials.begin(), trials.end(), [](const v1::Trial& trial) {
    return trial.state() == v1::TRIAL_STATE_FAILED;
  });
  const int exit_code = any_failed ? kExitTrialsFailed : kExitOk;
  if (json_output) {
    json array = json::array();
    for (const v1::Trial& trial : trials) array.push_back(TrialToJson(trial));
    PrintJson(array, env);
    return exit_code;
  }

  // Swept paths in order of first appearance: the server lists them in the spec's order.
  std::vector<std::string> paths;
  for (const v1::Trial& trial : trials) {
    for (const v1::TrialParam& param : trial.params()) {
      if (std::find(paths.begin(), paths.end(), param.path()) == paths.end()) {
        paths.push_back(param.path());
      }
    }
  }
  std::vector<std::string> headers{"id"};
  for (std::string& header : ParameterHeaders(paths)) headers.push_back(std::move(header));
  const size_t first_fixed = headers.size();
  for (const char* header : {"seed", "state", "final %", "best %", "iters to target", "outcome"}) {
    headers.push_back(header);
  }
  TextTable table(headers);
  table.SetAlign(0, TextTable::Align::kRight);
  for (size_t column : {first_fixed, first_fixed + 2, first_fixed + 3, first_fixed + 4}) {
    table.SetAlign(column, TextTable::Align::kRight);
  }
  for (const v1::Trial& trial : trials) {
    std::vector<std::string> row{absl::StrCat(trial.id())};
    for (const std::string& path : paths) {
      std::string value = "-";
      for (const v1::TrialParam& param : trial.params()) {
        if (param.path() == path) value = param.value();
      }
      row.push_back(std::move(value));
    }
    const bool done = trial.state() == v1::TRIAL_STATE_DONE;
    const v1::TrialResult& result = trial.result();
    row.push_back(absl::StrCat(trial.seed()));
    row.push_back(TrialStateName(trial.state()));
    row.push_back(done ? Percent(result.final_test_accuracy()) : "-");
    row.push_back(done ? Percent(result.best_test_accuracy()) : "-");
    row.push_back(done && result.iterations_to_target() >= 0
                      ? absl::StrCat(result.iterations_to_target())
                      : "-");
    row.push_back(TrialOutcomeText(trial));
    table.AddRow(std::move(row));
  }
  table.Render(*env.out, env.width);
  for (const v1::Trial& trial : trials) {
    if (trial.state() == v1::TRIAL_STATE_FAILED) {
      *env.out << "trial " << trial.id() << " failed: " << trial.error() << '\n';
    }
  }
  return exit_code;
}

absl::StatusOr<int> CancelCommand(SweepClient& client, int64_t sweep_id, const CommandEnv& env) {
  ASSIGN_OR_RETURN(v1::Sweep sweep, client.CancelSweep(sweep_id));
  *env.out << SweepSummary(sweep) << '\n';
  return kExitOk;
}

absl::StatusOr<int> CancelTrialCommand(SweepClient& client, int64_t trial_id,
                                       const CommandEnv& env) {
  ASSIGN_OR_RETURN(v1::Trial trial, client.CancelTrial(trial_id));
  *env.out << "trial " << trial.id() << " (sweep " << trial.sweep_id()
           << "): " << TrialStateName(trial.state()) << '\n';
  return kExitOk;
}

absl::StatusOr<int> PauseCommand(SweepClient& client, int64_t sweep_id, const CommandEnv& env) {
  ASSIGN_OR_RETURN(v1::Sweep sweep, client.PauseSweep(sweep_id));
  *env.out << SweepSummary(sweep) << '\n';
  return kExitOk;
}

absl::StatusOr<int> ResumeCommand(SweepClient& client, int64_t sweep_id, const CommandEnv& env) {
  ASSIGN_OR_RETURN(v1::Sweep sweep, client.ResumeSweep(sweep_id));
  *env.out << SweepSummary(sweep) << '\n';
  return kExitOk;
}

absl::StatusOr<int> RerunCommand(SweepClient& client, int64_t sweep_id, bool failed, bool cancelled,
                                 const CommandEnv& env) {
  if (!failed && !cancelled) {
    return absl::InvalidArgumentError(
        "rerun: say which trials to requeue: --failed and/or --cancelled");
  }
  ASSIGN_OR_RETURN(v1::RerunSweepResponse response, client.RerunSweep(sweep_id, failed, cancelled));
  *env.out << "sweep " << sweep_id << ": requeued " << Plural(response.requeued(), "trial") << '\n';
  return kExitOk;
}

absl::StatusOr<int> WorkersCommand(SweepClient& client, bool json_output, const CommandEnv& env) {
  ASSIGN_OR_RETURN(std::vector<v1::WorkerInfo> workers, client.ListWorkers());
  if (json_output) {
    json array = json::array();
    for (const v1::WorkerInfo& worker : workers) array.push_back(WorkerToJson(worker));
    PrintJson(array, env);
    return kExitOk;
  }
  const int64_t now_ms = env.clock->NowUnixMs();
  TextTable table({"id", "host", "slots", "running", "last heartbeat", "alive"});
  table.SetAlign(2, TextTable::Align::kRight);
  table.SetAlign(3, TextTable::Align::kRight);
  for (const v1::WorkerInfo& worker : workers) {
    table.AddRow({worker.worker_id(), worker.host(), absl::StrCat(worker.slots()),
                  absl::StrCat(worker.running()),
                  FormatAge(now_ms, worker.last_heartbeat_unix_ms()),
                  worker.alive() ? "yes" : "no"});
  }
  table.Render(*env.out, env.width);
  return kExitOk;
}

}  // namespace bitsweep::client

// --- export, logs ------------------------------------------------------------------------

namespace bitsweep::client {
namespace {

// Shortest text that reads back as the same double: exports feed other programs.
std::string ExactNumber(double value) {
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (ec != std::errc()) return absl::StrCat(value);
  return std::string(buffer, end);
}

// RFC 4180: quote fields holding a separator, quote or line break; double inner quotes.
std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  return absl::StrCat("\"", absl::StrReplaceAll(text, {{"\"", "\"\""}}), "\"");
}

// A table of cells that are JSON values; written as CSV (strings unquoted unless needed,
// null as empty) or as a JSON array of objects keyed by column.
struct ExportTable {
  std::vector<std::string> columns;
  std::vector<std::vector<json>> rows;

  std::string ToCsv() const {
    std::string out;
    for (size_t i = 0; i < columns.size(); ++i) {
      absl::StrAppend(&out, i > 0 ? "," : "", CsvField(columns[i]));
    }
    out += "\n";
    for (const std::vector<json>& row : rows) {
      for (size_t i = 0; i < row.size(); ++i) {
        std::string cell;
        if (row[i].is_string()) {
          cell = row[i].get<std::string>();
        } else if (row[i].is_number_float()) {
          cell = ExactNumber(row[i].get<double>());
        } else if (!row[i].is_null()) {
          cell = row[i].dump();
        }
        absl::StrAppend(&out, i > 0 ? "," : "", CsvField(cell));
      }
      out += "\n";
    }
    return out;
  }

  std::string ToJson() const {
    json array = json::array();
    for (const std::vector<json>& row : rows) {
      json object = json::object();
      for (size_t i = 0; i < row.size(); ++i) object[columns[i]] = row[i];
      array.push_back(std::move(object));
    }
    return array.dump(2) + "\n";
  }
};

std::vector<std::string> SweptPaths(const std::vector<v1::Trial>& trials) {
  std::vector<std::string> paths;
  for (const v1::Trial& trial : trials) {
    for (const v1::TrialParam& param : trial.params()) {
      if (std::find(paths.begin(), paths.end(), param.path()) == paths.end()) {
        paths.push_back(param.path());
      }
    }
  }
  return paths;
}

// The trial's id, swept values (as the server prints them) and seed: the key of every row.
std::vector<json> TrialKey(const v1::Trial& trial, const std::vector<std::string>& paths) {
  std::vector<json> cells{json(trial.id())};
  for (const std::string& path : paths) {
    json value = nullptr;
    for (const v1::TrialParam& param : trial.params()) {
      if (param.path() == path) value = param.value();
    }
    cells.push_back(std::move(value));
  }
  cells.push_back(json(trial.seed()));
  return cells;
}

json DurationSeconds(const v1::Trial& trial) {
  if (trial.started_unix_ms() <= 0 || trial.finished_unix_ms() < trial.started_unix_ms()) {
    return nullptr;
  }
  return static_cast<double>(trial.finished_unix_ms() - trial.started_unix_ms()) / 1000.0;
}

std::vector<json> TrialCells(const v1::Trial& trial) {
  const bool done = trial.state() == v1::TRIAL_STATE_DONE;
  const v1::TrialResult& result = trial.result();
  return {TrialStateName(trial.state()),
          trial.attempt(),
          done ? json(result.final_test_accuracy()) : json(nullptr),
          done ? json(result.best_test_accuracy()) : json(nullptr),
          done && result.iterations_to_target() >= 0 ? json(result.iterations_to_target())
                                                     : json(nullptr),
          done ? json(OutcomeName(result.outcome())) : json(nullptr),
          trial.worker_id().empty() ? json(nullptr) : json(trial.worker_id()),
          DurationSeconds(trial),
          trial.state() == v1::TRIAL_STATE_FAILED ? json(trial.error()) : json(nullptr)};
}

std::vector<json> CurvePointCells(const v1::CurvePoint& point) {
  return {point.iteration(), point.epoch(),         point.train_loss(),   point.train_accuracy(),
          point.test_loss(), point.test_accuracy(), point.learning_rate()};
}

// Writes through a temporary file and a rename, so a reader never sees half an export.
absl::Status WriteWholeFile(const std::string& path, const std::string& contents) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << contents;
    out.close();
    if (!out) return absl::InvalidArgumentError(absl::StrCat("-o ", path, ": cannot write ", temp));
  }
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  if (error) {
    std::filesystem::remove(temp, error);
    return absl::InvalidArgumentError(absl::StrCat("-o ", path, ": cannot create the file"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> ExportCommand(SweepClient& client, const ExportOptions& options,
                                  const CommandEnv& env) {
  if (options.format != "csv" && options.format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--format: expected csv or json, got '", options.format, "'"));
  }
  ASSIGN_OR_RETURN(std::vector<v1::Trial> trials, client.ListTrials(options.sweep_id));
  const std::vector<std::string> paths = SweptPaths(trials);
  ExportTable table;
  table.columns.push_back("trial_id");
  for (const std::string& path : paths) table.columns.push_back(path);
  table.columns.push_back("seed");
  if (options.curves) {
    for (const char* column : {"iteration", "epoch", "train_loss", "train_accuracy", "test_loss",
                               "test_accuracy", "learning_rate"}) {
      table.columns.push_back(column);
    }
    for (const v1::Trial& trial : trials) {
      ASSIGN_OR_RETURN(v1::GetTrialResponse detail,
                       client.GetTrial(trial.id(), /*include_curve=*/true));
      for (const v1::CurvePoint& point : detail.curve()) {
        std::vector<json> row = TrialKey(trial, paths);
        for (json& cell : CurvePointCells(point)) row.push_back(std::move(cell));
        table.rows.push_back(std::move(row));
      }
    }
  } else {
    for (const char* column :
         {"state", "attempt", "final_test_accuracy", "best_test_accuracy", "iterations_to_target",
          "outcome", "worker", "duration_seconds", "error"}) {
      table.columns.push_back(column);
    }
    for (const v1::Trial& trial : trials) {
      std::vector<json> row = TrialKey(trial, paths);
      for (json& cell : TrialCells(trial)) row.push_back(std::move(cell));
      table.rows.push_back(std::move(row));
    }
  }
  const std::string text = options.format == "csv" ? table.ToCsv() : table.ToJson();
  if (options.output_path.empty() || options.output_path == "-") {
    *env.out << text;
  } else {
    RETURN_IF_ERROR(WriteWholeFile(options.output_path, text));
  }
  const bool any_failed = std::any_of(trials.begin(), trials.end(), [](const v1::Trial& trial) {
    return trial.state() == v1::TRIAL_STATE_FAILED;
  });
  return any_failed ? kExitTrialsFailed : kExitOk;
}

absl::StatusOr<int> LogsCommand(SweepClient& client, int64_t trial_id, int tail, bool json_output,
                                const CommandEnv& env) {
  ASSIGN_OR_RETURN(v1::GetTrialResponse detail, client.GetTrial(trial_id, /*include_curve=*/true));
  const v1::Trial& trial = detail.trial();
  const int exit_code = trial.state() == v1::TRIAL_STATE_FAILED ? kExitTrialsFailed : kExitOk;
  std::ostream& out = *env.out;
  if (json_output) {
    json object = TrialToJson(trial);
    object["worker"] = trial.worker_id().empty() ? json(nullptr) : json(trial.worker_id());
    object["started_unix_ms"] =
        trial.started_unix_ms() > 0 ? json(trial.started_unix_ms()) : json(nullptr);
    object["finished_unix_ms"] =
        trial.finished_unix_ms() > 0 ? json(trial.finished_unix_ms()) : json(nullptr);
    object["duration_seconds"] = DurationSeconds(trial);
    object["error"] = trial.error().empty() ? json(nullptr) : json(trial.error());
    static const std::vector<std::string> kCurveColumns = {
        "iteration", "epoch",         "train_loss",   "train_accuracy",
        "test_loss", "test_accuracy", "learning_rate"};
    json curve = json::array();
    const int total = detail.curve_size();
    for (int i = total - std::min(total, std::max(tail, 0)); i < total; ++i) {
      const std::vector<json> cells = CurvePointCells(detail.curve(i));
      json point = json::object();
      for (size_t c = 0; c < cells.size(); ++c) point[kCurveColumns[c]] = cells[c];
      curve.push_back(std::move(point));
    }
    object["curve_points"] = total;
    object["curve"] = std::move(curve);
    PrintJson(object, env);
    return exit_code;
  }
  out << "trial " << trial.id() << " (sweep " << trial.sweep_id()
      << "): " << TrialStateName(trial.state()) << ", attempt " << trial.attempt() << '\n';
  std::string params;
  for (const v1::TrialParam& param : trial.params()) {
    absl::StrAppend(&params, param.path(), "=", param.value(), " ");
  }
  out << "params:   " << params << "seed=" << trial.seed() << '\n';
  out << "worker:   " << (trial.worker_id().empty() ? "-" : trial.worker_id()) << '\n';
  out << "started:  " << FormatUnixMs(trial.started_unix_ms())
      << (trial.started_unix_ms() > 0 ? " UTC" : "") << '\n';
  if (trial.finished_unix_ms() > 0) {
    out << "finished: " << FormatUnixMs(trial.finished_unix_ms()) << " UTC";
    if (json duration = DurationSeconds(trial); !duration.is_null()) {
      out << absl::StrFormat(" (%.1f s)", duration.get<double>());
    }
    out << '\n';
  }
  if (trial.state() == v1::TRIAL_STATE_DONE) {
    out << "result:   " << OutcomeName(trial.result().outcome()) << ", final "
        << Percent(trial.result().final_test_accuracy()) << "%, best "
        << Percent(trial.result().best_test_accuracy()) << "%\n";
  }
  if (!trial.error().empty()) out << "error:    " << trial.error() << '\n';

  const int total = detail.curve_size();
  const int shown = std::min(total, std::max(tail, 0));
  if (total == 0) {
    out << "no curve points yet\n";
  } else if (shown > 0) {
    out << "last " << shown << " of " << Plural(total, "curve point") << ":\n";
    TextTable table({"iteration", "epoch", "train loss", "train %", "test loss", "test %", "lr"});
    for (size_t column = 0; column < 7; ++column) {
      table.SetAlign(column, TextTable::Align::kRight);
    }
    for (int i = total - shown; i < total; ++i) {
      const v1::CurvePoint& point = detail.curve(i);
      table.AddRow({absl::StrCat(point.iteration()), absl::StrFormat("%.2f", point.epoch()),
                    absl::StrFormat("%.4f", point.train_loss()), Percent(point.train_accuracy()),
                    absl::StrFormat("%.4f", point.test_loss()), Percent(point.test_accuracy()),
                    absl::StrFormat("%.4g", point.learning_rate())});
    }
    table.Render(out, env.width);
  }
  return exit_code;
}

}  // namespace bitsweep::client
