// The sweep-control commands (rerun, pause, resume, cancel --trial, submit --resume), watching
// several sweeps with rate and ETA, `logs --json`, and the shared state names, over real gRPC on
// loopback against the fake SweepService.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "client/cli.h"
#include "client/commands.h"
#include "common/clock.h"
#include "proto/state_names.h"
#include "tests/client/fake_sweep_service.h"

namespace bitsweep::client {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

v1::TrialCounts Counts(int total, int queued, int running, int done, int failed,
                       int cancelled = 0) {
  v1::TrialCounts counts;
  counts.set_total(total);
  counts.set_queued(queued);
  counts.set_running(running);
  counts.set_done(done);
  counts.set_failed(failed);
  counts.set_cancelled(cancelled);
  return counts;
}

v1::Sweep Sweep(int64_t id, const std::string& name, v1::SweepState state,
                const v1::TrialCounts& counts) {
  v1::Sweep sweep;
  sweep.set_id(id);
  sweep.set_name(name);
  sweep.set_state(state);
  *sweep.mutable_counts() = counts;
  sweep.set_created_unix_ms(1'700'000'000'000);
  return sweep;
}

v1::Trial Trial(int64_t id, v1::TrialState state) {
  v1::Trial trial;
  trial.set_id(id);
  trial.set_sweep_id(7);
  trial.set_state(state);
  trial.set_attempt(1);
  v1::TrialParam* param = trial.add_params();
  param->set_path("precision.default.format");
  param->set_value("mask:12");
  return trial;
}

v1::SweepEvent Event(const v1::Sweep& sweep) {
  v1::SweepEvent event;
  *event.mutable_sweep() = sweep;
  return event;
}

constexpr char kSweepYaml[] = R"(name: bits
base:
  dataset: {name: synthetic}
sweep:
  method: grid
  seeds: 1
  parameters:
    precision.default.format: [fp32, "mask:12"]
)";

// A clock that moves `step_ms` forward each time it is read: `watch` reads it once per event,
// so events appear to arrive `step_ms` apart however fast the stream delivers them.
class SteppingClock final : public common::Clock {
 public:
  int64_t NowUnixMs() const override { return now_ms_ += step_ms_; }
  void set_step_ms(int64_t step_ms) { step_ms_ = step_ms; }

 private:
  mutable std::atomic<int64_t> now_ms_{1'700'000'100'000};
  std::atomic<int64_t> step_ms_{0};
};

struct CliResult {
  int exit_code;
  std::string out;
  std::string err;
};

class ControlCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServeOnLoopback(&service_, &address_);
    ASSERT_NE(server_, nullptr);
    std::string pattern =
        (std::filesystem::temp_directory_path() / "control_commands_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    service_.AddSweep(Sweep(7, "bits", v1::SWEEP_STATE_RUNNING, Counts(4, 1, 1, 1, 1)));
    service_.AddTrial(Trial(11, v1::TRIAL_STATE_DONE));
    service_.AddTrial(Trial(12, v1::TRIAL_STATE_FAILED));
    service_.AddTrial(Trial(13, v1::TRIAL_STATE_CANCELLED));
    service_.AddTrial(Trial(14, v1::TRIAL_STATE_RUNNING));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  CliResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"bitsweep", "--server", address_});
    std::ostringstream out;
    std::ostringstream err;
    CliEnvironment env;
    env.out = &out;
    env.err = &err;
    env.interactive = interactive_;
    env.width = width_;
    env.clock = &clock_;
    env.connect_timeout = absl::Seconds(3);
    const int exit_code = RunCli(args, env);
    return {exit_code, out.str(), err.str()};
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  SteppingClock clock_;
  FakeSweepService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::filesystem::path dir_;
  bool interactive_ = false;
  int width_ = 0;
};

TEST_F(ControlCommandsTest, RerunFailed_RequeuesOnlyFailedTrials) {
  const CliResult result = Run({"rerun", "7", "--failed"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "sweep 7: requeued 1 trial\n");
  ASSERT_EQ(service_.reruns().size(), 1u);
  EXPECT_TRUE(service_.reruns()[0].failed());
  EXPECT_FALSE(service_.reruns()[0].cancelled());
  EXPECT_EQ(service_.trials()[1].state(), v1::TRIAL_STATE_QUEUED);
  EXPECT_EQ(service_.trials()[2].state(), v1::TRIAL_STATE_CANCELLED);
}

TEST_F(ControlCommandsTest, RerunFailedAndCancelled_RequeuesBoth) {
  const CliResult result = Run({"rerun", "7", "--failed", "--cancelled"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "sweep 7: requeued 2 trials\n");
}

TEST_F(ControlCommandsTest, RerunWithoutWhichTrials_IsAUsageErrorAndCallsNothing) {
  const CliResult result = Run({"rerun", "7"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err,
            "bitsweep: error: rerun: say which trials to requeue: --failed and/or --cancelled\n");
  EXPECT_TRUE(service_.reruns().empty());
}

TEST_F(ControlCommandsTest, RerunUnknownSweep_ExitsTwoNamingIt) {
  const CliResult result = Run({"rerun", "8", "--failed"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err, "bitsweep: error: sweep 8 not found\n");
}

TEST_F(ControlCommandsTest, PauseThenResume_PrintsTheNewState) {
  CliResult result = Run({"pause", "7"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, StartsWith("sweep 7 (bits) paused: 1/4 done"));
  result = Run({"ls"});
  EXPECT_THAT(result.out, HasSubstr("paused"));
  result = Run({"resume", "7"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, StartsWith("sweep 7 (bits) running: 1/4 done"));
}

TEST_F(ControlCommandsTest, PauseAnEndedSweep_ExitsTwoWithTheServersReason) {
  service_.AddSweep(Sweep(9, "old", v1::SWEEP_STATE_DONE, Counts(1, 0, 0, 1, 0)));
  const CliResult result = Run({"pause", "9"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err, "bitsweep: error: sweep 9 has ended: there is nothing to pause\n");
}

TEST_F(ControlCommandsTest, CancelTrial_CancelsOnlyThatTrial) {
  const CliResult result = Run({"cancel", "--trial", "14"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "trial 14 (sweep 7): cancelled\n");
  EXPECT_EQ(service_.trials()[3].state(), v1::TRIAL_STATE_CANCELLED);
  EXPECT_EQ(service_.trials()[0].state(), v1::TRIAL_STATE_DONE);
}

TEST_F(ControlCommandsTest, CancelUnknownTrial_ExitsTwo) {
  const CliResult result = Run({"cancel", "--trial", "99"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err, "bitsweep: error: trial 99 not found\n");
}

TEST_F(ControlCommandsTest, CancelNeedsExactlyOneOfSweepAndTrial) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"cancel"},
        std::vector<std::string>{"cancel", "7", "--trial", "14"}}) {
    const CliResult result = Run(args);
    EXPECT_EQ(result.exit_code, 2) << args.size();
    EXPECT_THAT(result.err, StartsWith("bitsweep: error: "));
    EXPECT_EQ(Lines(result.err).size(), 1u) << result.err;
  }
  EXPECT_EQ(service_.trials()[3].state(), v1::TRIAL_STATE_RUNNING);
}

TEST_F(ControlCommandsTest, SubmitResume_PrintsWhatWasRequeuedAndReused) {
  service_.SubmitsMatchExistingSweep(/*requeued=*/3);
  const CliResult result = Run({"submit", WriteFile("s.yaml", kSweepYaml), "--resume"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "existing sweep 7: requeued 3, reused 33\n");
  ASSERT_EQ(service_.submits().size(), 1u);
  EXPECT_TRUE(service_.submits()[0].resume());
}

TEST_F(ControlCommandsTest, SubmitAnExistingSpecWithoutResume_SaysItIsUnchanged) {
  service_.SubmitsMatchExistingSweep(/*requeued=*/3);
  const CliResult result = Run({"submit", WriteFile("s.yaml", kSweepYaml)});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, StartsWith("existing sweep 7 (36 trials), unchanged"));
  EXPECT_FALSE(service_.submits()[0].resume());
}

TEST_F(ControlCommandsTest, SubmitResumeWithDryRun_IsAUsageError) {
  const CliResult result =
      Run({"submit", WriteFile("s.yaml", kSweepYaml), "--resume", "--dry-run"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_TRUE(service_.submits().empty());
}

TEST_F(ControlCommandsTest, Watch_ShowsRateAndEtaOnceTrialsFinish) {
  clock_.set_step_ms(30'000);  // Each event half a minute after the one before.
  service_.AddEvent(Event(Sweep(7, "bits", v1::SWEEP_STATE_RUNNING, Counts(4, 2, 2, 0, 0))));
  service_.AddEvent(Event(Sweep(7, "bits", v1::SWEEP_STATE_RUNNING, Counts(4, 1, 2, 1, 0))));
  service_.AddEvent(Event(Sweep(7, "bits", v1::SWEEP_STATE_PAUSED, Counts(4, 0, 2, 2, 0))));
  v1::Sweep done = Sweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(4, 0, 0, 4, 0));
  done.set_finished_unix_ms(done.created_unix_ms() + 125'000);
  service_.AddEvent(Event(done));
  const CliResult result = Run({"watch", "7"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(
      Lines(result.out),
      ElementsAre("[....................] 0/4 done, 2 running, 0 failed",
                  // 1 trial in 30 s: 2.0/min, 3 left: 1m30s.
                  "[#####...............] 1/4 done, 2 running, 0 failed, 2.0 trials/min, ETA 1m30s",
                  "[##########..........] 2/4 done, 2 running, 0 failed, 2.0 trials/min, ETA 1m00s"
                  " (paused)",
                  "[####################] 4/4 done, 0 running, 0 failed, 2.7 trials/min",
                  "sweep  name  state  done/total  diverged  pruned  failed  cancelled   took",
                  "    7  bits  done          4/4         0       0       0          0  2m05s"));
}

TEST_F(ControlCommandsTest, WatchSeveralSweeps_OneLinePerSweepThenATableRowEach) {
  service_.AddSweep(Sweep(8, "other", v1::SWEEP_STATE_RUNNING, Counts(2, 0, 1, 0, 1)));
  service_.AddEvent(Event(Sweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(4, 0, 0, 4, 0))));
  service_.AddEvent(Event(Sweep(8, "other", v1::SWEEP_STATE_DONE, Counts(2, 0, 0, 1, 1))));
  const CliResult result = Run({"watch", "7", "8"});
  EXPECT_EQ(result.exit_code, 1) << "sweep 8 has a failed trial: " << result.err;
  const std::vector<std::string> lines = Lines(result.out);
  ASSERT_EQ(lines.size(), 5u) << result.out;
  // The two streams run at once: their lines may come in either order.
  EXPECT_THAT((std::vector<std::string>{lines[0], lines[1]}),
              ::testing::UnorderedElementsAre(
                  "sweep 7 [####################] 4/4 done, 0 running, 0 failed",
                  "sweep 8 [####################] 1/2 done, 0 running, 1 failed"));
  EXPECT_THAT(lines[3], StartsWith("    7  bits   done"));
  EXPECT_THAT(lines[4], StartsWith("    8  other  done"));
}

TEST_F(ControlCommandsTest, WatchSeveralOnATerminal_RedrawsTheBlockInPlace) {
  interactive_ = true;
  service_.AddEvent(Event(Sweep(7, "bits", v1::SWEEP_STATE_RUNNING, Counts(4, 0, 4, 0, 0))));
  service_.AddEvent(Event(Sweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(4, 0, 0, 4, 0))));
  const CliResult result = Run({"watch", "7"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out,
              StartsWith("\r[....................] 0/4 done, 4 running, 0 failed\033[K\n"
                         "\033[1A\r[####################] 4/4 done, 0 running, 0 failed\033[K\n"
                         "sweep  name"));
}

TEST_F(ControlCommandsTest, WatchUnknownAmongSeveral_ExitsTwoBeforeDrawing) {
  const CliResult result = Run({"watch", "7", "5"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err, "bitsweep: error: sweep 5 not found\n");
}

TEST_F(ControlCommandsTest, LogsJson_HasTheTrialWorkerAndLastCurvePoints) {
  for (int i = 1; i <= 4; ++i) {
    v1::CurvePoint point;
    point.set_iteration(50 * i);
    point.set_test_accuracy(0.2 * i);
    service_.AddCurvePoint(11, point);
  }
  const CliResult result = Run({"logs", "11", "--json", "--tail", "2"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const json object = json::parse(result.out, nullptr, false);
  ASSERT_TRUE(object.is_object()) << result.out;
  EXPECT_EQ(object["id"], 11);
  EXPECT_EQ(object["state"], "done");
  EXPECT_TRUE(object["worker"].is_null());
  EXPECT_EQ(object["curve_points"], 4);
  ASSERT_EQ(object["curve"].size(), 2u);
  EXPECT_EQ(object["curve"][0]["iteration"], 150);
  EXPECT_EQ(object["curve"][1]["iteration"], 200);
  EXPECT_DOUBLE_EQ(object["curve"][1]["test_accuracy"].get<double>(), 0.8);
}

TEST_F(ControlCommandsTest, LogsJsonOfAFailedTrial_ExitsOneWithTheError) {
  const CliResult result = Run({"logs", "12", "--json"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(json::parse(result.out)["state"], "failed");
}

TEST_F(ControlCommandsTest, EveryReadCommandHasJson) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"ls", "--json"},
                                             {"status", "7", "--json"},
                                             {"results", "7", "--json"},
                                             {"workers", "--json"},
                                             {"logs", "11", "--json"},
                                             {"export", "7", "--format", "json"}}) {
    const CliResult result = Run(args);
    EXPECT_NE(result.exit_code, 2) << args[0] << ": " << result.err;
    EXPECT_FALSE(json::parse(result.out, nullptr, false).is_discarded()) << args[0];
  }
}

TEST_F(ControlCommandsTest, Completion_KnowsTheNewCommandsAndFlags) {
  const CliResult result = Run({"completion", "bash"});
  EXPECT_EQ(result.exit_code, 0);
  for (const char* word :
       {"rerun", "pause", "resume", "--failed", "--cancelled", "--trial", "--resume"}) {
    EXPECT_THAT(result.out, HasSubstr(word)) << word;
  }
}

TEST(RateAndEtaTest, NeedsAFinishedTrialAndElapsedTime) {
  EXPECT_EQ(FormatRateAndEta(0, 1000, 0, 61'000, 10), "");
  EXPECT_EQ(FormatRateAndEta(2, 1000, 5, 1000, 10), "");
  // 3 trials in 90 s: 2.0/min; 5 left: 2m30s.
  EXPECT_EQ(FormatRateAndEta(2, 0, 5, 90'000, 10), ", 2.0 trials/min, ETA 2m30s");
  EXPECT_EQ(FormatRateAndEta(0, 0, 10, 60'000, 10), ", 10.0 trials/min");
  EXPECT_EQ(FormatRateAndEta(0, 0, 1, 3'600'000, 100), ", 0.0 trials/min, ETA 99h00m");
}

TEST(ShortDurationTest, SecondsMinutesHours) {
  EXPECT_EQ(FormatShortDuration(-3), "0s");
  EXPECT_EQ(FormatShortDuration(45), "45s");
  EXPECT_EQ(FormatShortDuration(185), "3m05s");
  EXPECT_EQ(FormatShortDuration(7800), "2h10m");
}

TEST(StateNamesTest, EveryStateHasALowerCaseName) {
  for (v1::SweepState state : v1::AllSweepStates()) {
    EXPECT_NE(v1::SweepStateName(state), "unknown") << state;
  }
  for (v1::TrialState state : v1::AllTrialStates()) {
    EXPECT_NE(v1::TrialStateName(state), "unknown") << state;
  }
  EXPECT_EQ(v1::SweepStateName(v1::SWEEP_STATE_PAUSED), "paused");
  EXPECT_EQ(v1::TrialOutcomeName(v1::TRIAL_OUTCOME_PRUNED), "pruned");
  EXPECT_EQ(v1::SweepStateName(static_cast<v1::SweepState>(99)), "unknown");
  // Every enum value but UNSPECIFIED is listed.
  EXPECT_EQ(v1::AllSweepStates().size(), static_cast<size_t>(v1::SweepState_ARRAYSIZE - 1));
  EXPECT_EQ(v1::AllTrialStates().size(), static_cast<size_t>(v1::TrialState_ARRAYSIZE - 1));
}

}  // namespace
}  // namespace bitsweep::client
