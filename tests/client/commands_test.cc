// The CLI end to end over real gRPC on loopback: RunCli against an in-process fake SweepService.
#include "client/commands.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "client/cli.h"
#include "client/text_table.h"
#include "common/clock.h"
#include "tests/client/fake_sweep_service.h"

namespace bitsweep::client {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

v1::TrialCounts Counts(int total, int queued, int running, int done, int failed, int diverged = 0) {
  v1::TrialCounts counts;
  counts.set_total(total);
  counts.set_queued(queued);
  counts.set_running(running);
  counts.set_done(done);
  counts.set_failed(failed);
  counts.set_diverged(diverged);
  return counts;
}

v1::Sweep MakeSweep(int64_t id, const std::string& name, v1::SweepState state,
                    const v1::TrialCounts& counts) {
  v1::Sweep sweep;
  sweep.set_id(id);
  sweep.set_name(name);
  sweep.set_state(state);
  *sweep.mutable_counts() = counts;
  sweep.set_created_unix_ms(1'700'000'000'000);  // 2023-11-14 22:13:20 UTC
  sweep.mutable_spec()->set_name(name);
  return sweep;
}

v1::Trial MakeTrial(int64_t id, const std::string& format, const std::string& batch_size,
                    uint64_t seed, v1::TrialState state) {
  v1::Trial trial;
  trial.set_id(id);
  trial.set_sweep_id(7);
  trial.set_state(state);
  trial.set_seed(seed);
  v1::TrialParam* param = trial.add_params();
  param->set_path("precision.default.format");
  param->set_value(format);
  param = trial.add_params();
  param->set_path("train.batch_size");
  param->set_value(batch_size);
  return trial;
}

v1::Trial DoneTrial(int64_t id, const std::string& format, v1::TrialOutcome outcome, double final,
                    double best, int64_t iterations_to_target) {
  v1::Trial trial = MakeTrial(id, format, "128", 0, v1::TRIAL_STATE_DONE);
  v1::TrialResult* result = trial.mutable_result();
  result->set_outcome(outcome);
  result->set_final_test_accuracy(final);
  result->set_best_test_accuracy(best);
  result->set_iterations_to_target(iterations_to_target);
  result->set_iterations(1000);
  return trial;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A loopback port with nothing listening: bound, then closed.
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  close(fd);
  return ntohs(address.sin_port);
}

struct CliResult {
  int exit_code;
  std::string out;
  std::string err;
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServeOnLoopback(&service_, &address_);
    ASSERT_NE(server_, nullptr);

    std::string pattern =
        (std::filesystem::temp_directory_path() / "commands_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  // Runs `bitsweep --server ADDRESS ARGS...`.
  CliResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"bitsweep", "--server", address_});
    return RunRaw(args);
  }

  CliResult RunRaw(const std::vector<std::string>& args) {
    std::ostringstream out;
    std::ostringstream err;
    CliEnvironment env;
    env.out = &out;
    env.err = &err;
    env.interactive = interactive_;
    env.width = width_;
    env.clock = &clock_;
    env.connect_timeout = connect_timeout_;
    const int exit_code = RunCli(args, env);
    return {exit_code, out.str(), err.str()};
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  FakeSweepService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::filesystem::path dir_;
  common::FakeClock clock_{1'700'000'100'000};
  bool interactive_ = false;
  int width_ = 0;
  absl::Duration connect_timeout_ = absl::Seconds(3);
};

constexpr char kSweepYaml[] = R"yaml(name: bits
base:
  train: {epochs: 1, lr: 0.05}
sweep:
  seeds: 2
  parameters:
    precision.default.format: ["mask:12", fp32]
    train.batch_size: [32, 128]
)yaml";

TEST_F(CommandsTest, Submit_PrintsSweepIdAndTrialCount) {
  const CliResult result = Run({"submit", WriteFile("s.yaml", kSweepYaml)});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "submitted sweep 7 (36 trials)\n");
  EXPECT_EQ(result.err, "");
  const std::vector<v1::SubmitSweepRequest> submits = service_.submits();
  ASSERT_EQ(submits.size(), 1u);
  EXPECT_FALSE(submits[0].dry_run());
  EXPECT_EQ(submits[0].spec().name(), "bits");
  EXPECT_EQ(submits[0].spec().seeds(), 2);
  ASSERT_EQ(submits[0].spec().parameters_size(), 2);
  EXPECT_EQ(submits[0].spec().parameters(1).values().values(0).number_value(), 32);
}

TEST_F(CommandsTest, SubmitDryRun_PrintsValidTrialCount) {
  const CliResult result = Run({"submit", "--dry-run", WriteFile("s.yaml", kSweepYaml)});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "valid: 36 trials\n");
  ASSERT_EQ(service_.submits().size(), 1u);
  EXPECT_TRUE(service_.submits()[0].dry_run());
}

TEST_F(CommandsTest, SubmitRejectedByServer_ExitsTwoWithTheServersMessage) {
  service_.FailSubmitWith(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                       "sweep.parameters.train.lrr: unknown config path"));
  const std::string path = WriteFile("s.yaml", kSweepYaml);
  const CliResult result = Run({"submit", path});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err,
            "bitsweep: error: " + path + ": sweep.parameters.train.lrr: unknown config path\n");
}

TEST_F(CommandsTest, MultiLineServerError_IsPrintedOnOneLine) {
  service_.FailSubmitWith(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "train.lr: must be > 0\nseeds: too many\n"));
  const CliResult rejected = Run({"submit", WriteFile("s.yaml", kSweepYaml)});
  EXPECT_EQ(rejected.exit_code, 2);
  EXPECT_THAT(rejected.err, HasSubstr("train.lr: must be > 0; seeds: too many\n"));
  EXPECT_EQ(Lines(rejected.err).size(), 1u);
}

TEST_F(CommandsTest, SubmitMalformedFile_ExitsTwoWithoutContactingTheServer) {
  const std::string path = WriteFile("bad.yaml", "name: x\nsweep: [\n");
  const CliResult result = Run({"submit", path});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, StartsWith("bitsweep: error: " + path + ":3:1: "));
  EXPECT_EQ(Lines(result.err).size(), 1u);
  EXPECT_TRUE(service_.submits().empty());
}

TEST_F(CommandsTest, SubmitMissingFile_ExitsTwoNamingIt) {
  const std::string path = (dir_ / "nope.yaml").string();
  const CliResult result = Run({"submit", path});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err,
            "bitsweep: error: cannot read sweep file " + path + ": No such file or directory\n");
}

TEST_F(CommandsTest, SubmitAndWatch_PrintsIdThenProgress) {
  service_.AddSweep(MakeSweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(2, 0, 0, 2, 0)));
  v1::SweepEvent event;
  *event.mutable_sweep() = MakeSweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(2, 0, 0, 2, 0));
  service_.AddEvent(event);
  const CliResult result = Run({"submit", "--watch", WriteFile("s.yaml", kSweepYaml)});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "submitted sweep 7 (36 trials)\n"
            "[####################] 2/2 done, 0 running, 0 failed\n"
            "sweep  name  state  done/total  diverged  pruned  failed  cancelled  took\n"
            "    7  bits  done          2/2         0       0       0          0     -\n");
}

class ResultsTest : public CommandsTest {
 protected:
  void SetUp() override {
    CommandsTest::SetUp();
    service_.AddSweep(MakeSweep(7, "bits", v1::SWEEP_STATE_RUNNING, Counts(4, 1, 0, 2, 1, 1)));
    service_.AddTrial(DoneTrial(1, "mask:12", v1::TRIAL_OUTCOME_COMPLETED, 0.97126, 0.9801, 300));
    service_.AddTrial(DoneTrial(2, "fp32", v1::TRIAL_OUTCOME_DIVERGED, 0.1, 0.25, -1));
    v1::Trial failed = MakeTrial(3, "mask:10", "32", 1, v1::TRIAL_STATE_FAILED);
    failed.set_error("dataset file missing: train-images-idx3-ubyte");
    service_.AddTrial(failed);
    service_.AddTrial(MakeTrial(4, "mask:10", "128", 1, v1::TRIAL_STATE_QUEUED));
  }
};

TEST_F(ResultsTest, Table_HasOneRowPerTrialWithShortParameterHeaders) {
  const CliResult result = Run({"results", "7"});
  EXPECT_EQ(result.exit_code, 1) << "a failed trial makes results exit 1";
  EXPECT_EQ(result.err, "");
  EXPECT_EQ(result.out,
            "id  format   batch_size  seed  state   final %  best %  iters to target  outcome\n"
            " 1  mask:12  128            0  done      97.13   98.01              300  completed\n"
            " 2  fp32     128            0  done      10.00   25.00                -  diverged\n"
            " 3  mask:10  32             1  failed        -       -                -  failed\n"
            " 4  mask:10  128            1  queued        -       -                -  -\n"
            "trial 3 failed: dataset file missing: train-images-idx3-ubyte\n");
}

TEST_F(ResultsTest, NarrowTerminal_TruncatesWithEllipsis) {
  width_ = 60;
  const CliResult result = Run({"results", "7"});
  for (const std::string& line : Lines(result.out)) {
    if (line.starts_with("trial ")) continue;  // Failure details are not part of the table.
    EXPECT_LE(DisplayWidth(line), 60) << line;
  }
  EXPECT_THAT(result.out, HasSubstr("…"));
}

TEST_F(ResultsTest, Json_IsAnArrayOfTrialsWithParamsSeedStateAndResult) {
  const CliResult result = Run({"results", "7", "--json"});
  EXPECT_EQ(result.exit_code, 1);
  const nlohmann::json trials = nlohmann::json::parse(result.out);
  ASSERT_TRUE(trials.is_array());
  ASSERT_EQ(trials.size(), 4u);
  EXPECT_EQ(trials[0]["id"], 1);
  EXPECT_EQ(trials[0]["params"]["precision.default.format"], "mask:12");
  EXPECT_EQ(trials[0]["params"]["train.batch_size"], "128");
  EXPECT_EQ(trials[0]["seed"], 0);
  EXPECT_EQ(trials[0]["state"], "done");
  EXPECT_EQ(trials[0]["result"]["outcome"], "completed");
  EXPECT_DOUBLE_EQ(trials[0]["result"]["final_test_accuracy"].get<double>(), 0.97126);
  EXPECT_EQ(trials[0]["result"]["iterations_to_target"], 300);
  EXPECT_TRUE(trials[1]["result"]["iterations_to_target"].is_null());
  EXPECT_EQ(trials[2]["state"], "failed");
  EXPECT_EQ(trials[2]["error"], "dataset file missing: train-images-idx3-ubyte");
  EXPECT_TRUE(trials[3]["result"].is_null());
}

TEST_F(CommandsTest, Results_AmbiguousParameterNames_UseFullPaths) {
  service_.AddSweep(MakeSweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(1, 0, 0, 1, 0)));
  v1::Trial trial = DoneTrial(1, "mask:12", v1::TRIAL_OUTCOME_COMPLETED, 0.5, 0.5, 10);
  trial.mutable_params(1)->set_path("precision.layers.format");
  trial.mutable_params(1)->set_value("fp16");
  service_.AddTrial(trial);
  const CliResult result = Run({"results", "7"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(Lines(result.out)[0],
              StartsWith("id  precision.default.format  precision.layers.format  seed"));
}

TEST_F(CommandsTest, Results_UnknownSweep_ExitsTwoWithNotFound) {
  const CliResult result = Run({"results", "99"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err, "bitsweep: error: sweep 99 not found\n");
}

TEST_F(CommandsTest, Ls_PrintsATableOfSweeps) {
  service_.AddSweep(MakeSweep(1, "first", v1::SWEEP_STATE_DONE, Counts(4, 0, 0, 3, 1)));
  service_.AddSweep(MakeSweep(2, "second", v1::SWEEP_STATE_RUNNING, Counts(10, 6, 2, 2, 0)));
  const CliResult result = Run({"ls"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "id  name    state    done/total  running  failed  created (UTC)\n"
            " 1  first   done            3/4        0       1  2023-11-14 22:13:20\n"
            " 2  second  running        2/10        2       0  2023-11-14 22:13:20\n");
}

TEST_F(CommandsTest, LsJson_IsAnArrayOfSweeps) {
  service_.AddSweep(MakeSweep(1, "first", v1::SWEEP_STATE_DONE, Counts(4, 0, 0, 3, 1)));
  const CliResult result = Run({"ls", "--json"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json sweeps = nlohmann::json::parse(result.out);
  ASSERT_EQ(sweeps.size(), 1u);
  EXPECT_EQ(sweeps[0]["name"], "first");
  EXPECT_EQ(sweeps[0]["state"], "done");
  EXPECT_EQ(sweeps[0]["counts"]["failed"], 1);
  EXPECT_EQ(sweeps[0]["created_unix_ms"], 1'700'000'000'000);
}

TEST_F(CommandsTest, Status_PrintsStateAndCounts) {
  service_.AddSweep(MakeSweep(2, "second", v1::SWEEP_STATE_RUNNING, Counts(10, 6, 2, 2, 0)));
  const CliResult result = Run({"status", "2"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "sweep 2 (second): running, priority 0\n"
            "trials:   10 total, 6 queued, 2 running, 2 done (0 diverged), 0 failed, 0 cancelled\n"
            "progress: [####................] 2/10 done, 2 running, 0 failed\n"
            "created:  2023-11-14 22:13:20 UTC\n");
}

TEST_F(CommandsTest, StatusJson_IncludesTheSpec) {
  v1::Sweep sweep = MakeSweep(2, "second", v1::SWEEP_STATE_RUNNING, Counts(10, 6, 2, 2, 0));
  (*sweep.mutable_spec()->mutable_base()->mutable_fields())["seed"].set_number_value(3);
  service_.AddSweep(sweep);
  const CliResult result = Run({"status", "2", "--json"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const nlohmann::json object = nlohmann::json::parse(result.out);
  EXPECT_EQ(object["id"], 2);
  EXPECT_EQ(object["counts"]["running"], 2);
  EXPECT_EQ(object["spec"]["base"]["seed"], 3);
}

TEST_F(CommandsTest, Watch_PrintsOneLinePerChangeAndExitsOneOnFailure) {
  service_.AddSweep(MakeSweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(3, 0, 0, 2, 1)));
  auto add_event = [&](v1::SweepState state, const v1::TrialCounts& counts,
                       std::vector<v1::Trial> trials) {
    v1::SweepEvent event;
    *event.mutable_sweep() = MakeSweep(7, "bits", state, counts);
    for (const v1::Trial& trial : trials) *event.add_trials() = trial;
    service_.AddEvent(event);
  };
  v1::Trial failed = MakeTrial(3, "mask:10", "32", 0, v1::TRIAL_STATE_FAILED);
  failed.set_error("out of memory");
  add_event(v1::SWEEP_STATE_RUNNING, Counts(3, 1, 2, 0, 0), {});
  add_event(v1::SWEEP_STATE_RUNNING, Counts(3, 0, 2, 1, 0), {});
  add_event(v1::SWEEP_STATE_RUNNING, Counts(3, 0, 2, 1, 0), {});  // No change: no new line.
  add_event(v1::SWEEP_STATE_RUNNING, Counts(3, 0, 1, 1, 1), {failed});
  add_event(v1::SWEEP_STATE_DONE, Counts(3, 0, 0, 2, 1, 1), {});
  const CliResult result = Run({"watch", "7"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_EQ(result.out,
            "[....................] 0/3 done, 2 running, 0 failed\n"
            "[######..............] 1/3 done, 2 running, 0 failed\n"
            "trial 3 failed: out of memory\n"
            "[#############.......] 1/3 done, 1 running, 1 failed\n"
            "[####################] 2/3 done, 0 running, 1 failed, 1 diverged\n"
            "sweep  name  state  done/total  diverged  pruned  failed  cancelled  took\n"
            "    7  bits  done          2/3         1       0       1          0     -\n");
}

TEST_F(CommandsTest, WatchOnATerminal_RedrawsTheProgressLineInPlace) {
  interactive_ = true;
  service_.AddSweep(MakeSweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(2, 0, 0, 2, 0)));
  v1::SweepEvent event;
  *event.mutable_sweep() = MakeSweep(7, "bits", v1::SWEEP_STATE_RUNNING, Counts(2, 1, 1, 0, 0));
  service_.AddEvent(event);
  *event.mutable_sweep() = MakeSweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(2, 0, 0, 2, 0));
  service_.AddEvent(event);
  const CliResult result = Run({"watch", "7"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "\r[....................] 0/2 done, 1 running, 0 failed\033[K\n"
            "\033[1A\r[####################] 2/2 done, 0 running, 0 failed\033[K\n"
            "sweep  name  state  done/total  diverged  pruned  failed  cancelled  took\n"
            "    7  bits  done          2/2         0       0       0          0     -\n");
}

TEST_F(CommandsTest, WatchOnANarrowTerminal_KeepsTheProgressLineWithinTheWidth) {
  interactive_ = true;
  width_ = 30;
  service_.AddSweep(MakeSweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(2, 0, 0, 2, 0)));
  v1::SweepEvent event;
  *event.mutable_sweep() = MakeSweep(7, "bits", v1::SWEEP_STATE_DONE, Counts(2, 0, 0, 2, 0));
  service_.AddEvent(event);
  const CliResult result = Run({"watch", "7"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, StartsWith("\r[####################] 2/2 d…\033[K\n"));
}

TEST_F(CommandsTest, Watch_UnknownSweep_ExitsTwo) {
  const CliResult result = Run({"watch", "5"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.err, "bitsweep: error: sweep 5 not found\n");
}

TEST_F(CommandsTest, Cancel_PrintsTheCancelledSweep) {
  service_.AddSweep(MakeSweep(2, "second", v1::SWEEP_STATE_RUNNING, Counts(10, 6, 2, 2, 0)));
  const CliResult result = Run({"cancel", "2"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "sweep 2 (second) cancelled: 2/10 done, 0 failed, 6 cancelled, 2 running\n");
}

TEST_F(CommandsTest, Workers_TableShowsHeartbeatAgeAndJsonIsValid) {
  v1::WorkerInfo worker;
  worker.set_worker_id("w-1");
  worker.set_host("node7");
  worker.set_slots(4);
  worker.set_running(3);
  worker.set_last_heartbeat_unix_ms(clock_.NowUnixMs() - 2'500);
  worker.set_alive(true);
  service_.AddWorker(worker);
  worker.set_worker_id("w-2");
  worker.set_running(0);
  worker.set_last_heartbeat_unix_ms(clock_.NowUnixMs() - 600'000);
  worker.set_alive(false);
  service_.AddWorker(worker);

  const CliResult table = Run({"workers"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out,
            "id   host   slots  running  last heartbeat  alive\n"
            "w-1  node7      4        3  2s ago          yes\n"
            "w-2  node7      4        0  10m ago         no\n");

  const CliResult json = Run({"workers", "--json"});
  EXPECT_EQ(json.exit_code, 0);
  const nlohmann::json workers = nlohmann::json::parse(json.out);
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0]["id"], "w-1");
  EXPECT_EQ(workers[1]["alive"], false);
}

TEST_F(CommandsTest, UnreachableServer_ExitsThreeWithOneLine) {
  const std::string address = "127.0.0.1:" + std::to_string(UnusedPort());
  const CliResult result = RunRaw({"bitsweep", "ls", "--server", address});
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.out, "");
  EXPECT_THAT(result.err,
              StartsWith("bitsweep: error: cannot reach bitsweep server at " + address + ": "));
  EXPECT_EQ(Lines(result.err).size(), 1u);
}

TEST_F(CommandsTest, ServerShutDown_ExitsThree) {
  server_->Shutdown();
  server_.reset();
  const CliResult result = Run({"status", "1"});
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_THAT(result.err,
              StartsWith("bitsweep: error: cannot reach bitsweep server at " + address_));
}

TEST_F(CommandsTest, ServerThatNeverCompletesTheHandshake_FailsAtTheConnectTimeout) {
  // A listening socket nobody accepts on: TCP connects (the kernel's backlog) but HTTP/2 never
  // starts, so only the connect timeout ends the wait.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string target = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  connect_timeout_ = absl::Milliseconds(300);
  const CliResult result = RunRaw({"bitsweep", "--server", target, "ls"});
  close(fd);
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.err, "bitsweep: error: cannot reach bitsweep server at " + target +
                            ": no connection within 300ms\n");
}

TEST_F(CommandsTest, UsageErrors_ExitTwoWithOneLine) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"bitsweep"},
           {"bitsweep", "frobnicate"},
           {"bitsweep", "status"},
           {"bitsweep", "status", "abc"},
           {"bitsweep", "ls", "--bogus"},
           {"bitsweep", "submit", "s.yaml", "--dry-run", "--watch"}}) {
    const CliResult result = RunRaw(args);
    EXPECT_EQ(result.exit_code, 2) << args.back();
    EXPECT_THAT(result.err, StartsWith("bitsweep: error: ")) << args.back();
    EXPECT_EQ(Lines(result.err).size(), 1u) << result.err;
  }
}

TEST_F(CommandsTest, EveryCommandHasHelpWithAnExample) {
  for (const char* command : {"submit", "ls", "status", "watch", "results", "export", "logs",
                              "completion", "cancel", "workers", "rerun", "pause", "resume"}) {
    const CliResult result = RunRaw({"bitsweep", command, "--help"});
    EXPECT_EQ(result.exit_code, 0) << command;
    EXPECT_THAT(result.out, HasSubstr("Example:\n  bitsweep " + std::string(command))) << command;
  }
  const CliResult top = RunRaw({"bitsweep", "--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_THAT(top.out, HasSubstr("--server"));
}

TEST(ProgressLineTest, BarCountsFinishedTrials) {
  EXPECT_EQ(FormatProgressLine(Counts(10, 3, 2, 5, 0), 10),
            "[#####.....] 5/10 done, 2 running, 0 failed");
  EXPECT_EQ(FormatProgressLine(Counts(0, 0, 0, 0, 0), 4), "[....] 0/0 done, 0 running, 0 failed");
}

}  // namespace
}  // namespace bitsweep::client
