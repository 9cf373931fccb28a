// The operator-facing CLI commands over real gRPC on loopback against the fake SweepService:
// export, logs, completion, and the config file's place in the --server precedence.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "client/cli.h"
#include "client/cli_config.h"
#include "tests/client/fake_sweep_service.h"

namespace bitsweep::client {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

v1::Trial Trial(int64_t id, const std::string& format, v1::TrialState state) {
  v1::Trial trial;
  trial.set_id(id);
  trial.set_sweep_id(7);
  trial.set_state(state);
  trial.set_seed(1);
  trial.set_attempt(1);
  v1::TrialParam* param = trial.add_params();
  param->set_path("precision.default.format");
  param->set_value(format);
  return trial;
}

struct CliResult {
  int exit_code;
  std::string out;
  std::string err;
};

class OperatorCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServeOnLoopback(&service_, &address_);
    ASSERT_NE(server_, nullptr);
    std::string pattern =
        (std::filesystem::temp_directory_path() / "operator_commands_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;

    v1::Sweep sweep;
    sweep.set_id(7);
    sweep.set_name("export me");
    sweep.set_state(v1::SWEEP_STATE_DONE);
    service_.AddSweep(sweep);
    v1::Trial done = Trial(11, "mask:12", v1::TRIAL_STATE_DONE);
    done.set_worker_id("host-a-42");
    done.set_started_unix_ms(1'700'000'000'000);
    done.set_finished_unix_ms(1'700'000'002'500);
    done.mutable_result()->set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
    done.mutable_result()->set_final_test_accuracy(0.875);
    done.mutable_result()->set_best_test_accuracy(0.9);
    done.mutable_result()->set_iterations_to_target(300);
    service_.AddTrial(done);
    v1::Trial failed = Trial(12, "fixed:8,4", v1::TRIAL_STATE_FAILED);
    failed.set_attempt(3);
    failed.set_error("lease expired 3 times (worker lost), \"really\"");
    service_.AddTrial(failed);
    for (int i = 1; i <= 3; ++i) {
      v1::CurvePoint point;
      point.set_iteration(100 * i);
      point.set_test_accuracy(0.25 * i);
      point.set_train_loss(1.0 / i);
      service_.AddCurvePoint(11, point);
    }
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  CliResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"bitsweep", "--server", address_});
    return RunRaw(args, CliEnvironment());
  }

  CliResult RunRaw(const std::vector<std::string>& args, CliEnvironment env) {
    std::ostringstream out;
    std::ostringstream err;
    env.out = &out;
    env.err = &err;
    env.connect_timeout = absl::Seconds(2);
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
};

TEST_F(OperatorCommandsTest, ExportCsv_OneRowPerTrialWithEveryColumn) {
  CliResult result = Run({"export", "7"});
  EXPECT_EQ(result.exit_code, 1) << "a failed trial makes the exit code 1: " << result.err;
  EXPECT_THAT(
      Lines(result.out),
      ElementsAre("trial_id,precision.default.format,seed,state,attempt,final_test_accuracy,"
                  "best_test_accuracy,iterations_to_target,outcome,worker,duration_seconds,error",
                  "11,mask:12,1,done,1,0.875,0.9,300,completed,host-a-42,2.5,",
                  "12,\"fixed:8,4\",1,failed,3,,,,,,,\"lease expired 3 times (worker lost), "
                  "\"\"really\"\"\""));
}

TEST_F(OperatorCommandsTest, ExportJsonToFile_HasNumbersAndNulls) {
  const std::string path = (dir_ / "out.json").string();
  CliResult result = Run({"export", "7", "--format", "json", "-o", path});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_EQ(result.out, "");
  std::ifstream in(path);
  json rows = json::parse(in);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["trial_id"], 11);
  EXPECT_EQ(rows[0]["precision.default.format"], "mask:12");
  EXPECT_DOUBLE_EQ(rows[0]["final_test_accuracy"].get<double>(), 0.875);
  EXPECT_EQ(rows[0]["worker"], "host-a-42");
  EXPECT_TRUE(rows[1]["final_test_accuracy"].is_null());
  EXPECT_EQ(rows[1]["state"], "failed");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_F(OperatorCommandsTest, ExportCurves_OneRowPerCurvePoint) {
  CliResult result = Run({"export", "7", "--curves"});
  std::vector<std::string> lines = Lines(result.out);
  ASSERT_EQ(lines.size(), 4u) << result.out << result.err;
  EXPECT_EQ(lines[0],
            "trial_id,precision.default.format,seed,iteration,epoch,train_loss,train_accuracy,"
            "test_loss,test_accuracy,learning_rate");
  EXPECT_EQ(lines[1], "11,mask:12,1,100,0,1,0,0,0.25,0");
  EXPECT_EQ(lines[3], "11,mask:12,1,300,0,0.3333333333333333,0,0,0.75,0");
}

TEST_F(OperatorCommandsTest, Export_BadFormatOrUnknownSweepIsUsageError) {
  EXPECT_EQ(Run({"export", "7", "--format", "xml"}).exit_code, 2);
  CliResult missing = Run({"export", "99"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("not found"));
}

TEST_F(OperatorCommandsTest, Logs_ShowsStateWorkerAndLastCurvePoints) {
  CliResult result = Run({"logs", "11", "--tail", "2"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("trial 11 (sweep 7): done, attempt 1"));
  EXPECT_THAT(result.out, HasSubstr("worker:   host-a-42"));
  EXPECT_THAT(result.out, HasSubstr("(2.5 s)"));
  EXPECT_THAT(result.out, HasSubstr("last 2 of 3 curve points"));
  EXPECT_THAT(result.out, HasSubstr("75.00"));
  EXPECT_THAT(result.out, Not(HasSubstr("25.00 ")));
}

TEST_F(OperatorCommandsTest, Logs_FailedTrialShowsErrorAndExitsOne) {
  CliResult result = Run({"logs", "12"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.out, HasSubstr("failed, attempt 3"));
  EXPECT_THAT(result.out, HasSubstr("error:    lease expired 3 times"));
  EXPECT_THAT(result.out, HasSubstr("no curve points yet"));
  EXPECT_EQ(Run({"logs", "999"}).exit_code, 2);
}

// Runs `script` with bash; returns its stdout. The child is reaped by pclose.
std::string RunBash(const std::string& script, int* exit_code) {
  FILE* pipe = popen(("bash -c '" + script + "'").c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  const int status = pclose(pipe);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

TEST_F(OperatorCommandsTest, CompletionBash_CompletesCommandsFlagsAndFormats) {
  CliResult result = RunRaw({"bitsweep", "completion", "bash"}, CliEnvironment());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string script = WriteFile("completion.bash", result.out);
  int exit_code = 0;
  RunBash("bash -n " + script, &exit_code);
  EXPECT_EQ(exit_code, 0) << "the script must be valid bash";

  auto complete = [&](const std::string& words, int cword) {
    int code = 0;
    std::string out = RunBash("source " + script + "; COMP_WORDS=(" + words + "); COMP_CWORD=" +
                                  std::to_string(cword) + "; _bitsweep; echo \"${COMPREPLY[*]}\"",
                              &code);
    EXPECT_EQ(code, 0);
    return out;
  };
  EXPECT_EQ(complete("bitsweep ex", 1), "export\n");
  EXPECT_EQ(complete("bitsweep --server h:1 lo", 3), "logs\n");
  EXPECT_EQ(complete("bitsweep export 3 --format \"\"", 4), "csv json\n");
  EXPECT_THAT(complete("bitsweep export 3 --c", 3), HasSubstr("--curves"));
  EXPECT_EQ(complete("bitsweep completion \"\"", 2), "bash\n");
  // Flags are offered once, and a flag's value is not taken for the command word.
  EXPECT_EQ(complete("bitsweep --server h:1 export 3 --he", 5), "--help\n");
  EXPECT_EQ(complete("bitsweep --json", 1), "\n") << "--json belongs to the commands";
  EXPECT_EQ(complete("bitsweep --token-file no-such-tok", 2), "\n") << "a path, not a command";
}

TEST_F(OperatorCommandsTest, ConfigFile_SuppliesServerBelowEnvAndFlag) {
  CliEnvironment env;
  env.config_path = WriteFile("config.yaml", "server: " + address_ + "\n");
  env.config_path_explicit = true;
  CliResult from_config = RunRaw({"bitsweep", "logs", "11"}, env);
  EXPECT_EQ(from_config.exit_code, 0) << from_config.err;

  // The environment variable wins over the file, and the flag over both.
  env.default_server = "127.0.0.1:1";
  EXPECT_EQ(RunRaw({"bitsweep", "logs", "11"}, env).exit_code, 3);
  EXPECT_EQ(RunRaw({"bitsweep", "--server", address_, "logs", "11"}, env).exit_code, 0);
}

TEST_F(OperatorCommandsTest, ConfigFile_FoundThroughBitsweepConfigVariable) {
  const std::string path = WriteFile("env-config.yaml", "server: " + address_ + "\n");
  ASSERT_EQ(setenv("BITSWEEP_CONFIG", path.c_str(), 1), 0);
  ASSERT_EQ(unsetenv("BITSWEEP_SERVER"), 0);
  CliEnvironment env = DetectEnvironment();
  unsetenv("BITSWEEP_CONFIG");
  EXPECT_EQ(env.config_path, path);
  EXPECT_TRUE(env.config_path_explicit);
  CliResult result = RunRaw({"bitsweep", "logs", "11"}, env);
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST_F(OperatorCommandsTest, ConfigFile_ErrorsAreUsageErrorsNamingTheFile) {
  CliEnvironment env;
  env.config_path = WriteFile("typo.yaml", "sever: host:1\n");
  CliResult typo = RunRaw({"bitsweep", "ls"}, env);
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_THAT(typo.err, HasSubstr("unknown key 'sever'"));

  env.config_path = (dir_ / "missing.yaml").string();
  env.config_path_explicit = true;
  EXPECT_EQ(RunRaw({"bitsweep", "ls"}, env).exit_code, 2);
  // The default location may simply not exist: then the built-in default server is used
  // (reachable or not, depending on this machine), never a usage error.
  env.config_path_explicit = false;
  CliResult missing_default = RunRaw({"bitsweep", "ls"}, env);
  EXPECT_NE(missing_default.exit_code, 2) << missing_default.err;
  EXPECT_THAT(missing_default.err, Not(HasSubstr("config")));
  // Completion needs no server, so it never reads the file.
  env.config_path = (dir_ / "typo.yaml").string();
  env.default_server.clear();
  EXPECT_EQ(RunRaw({"bitsweep", "completion", "bash"}, env).exit_code, 0);
}

TEST_F(OperatorCommandsTest, ReadCliConfig_AcceptsEmptyFileAndRejectsNonMapping) {
  EXPECT_TRUE(ReadCliConfig(WriteFile("empty.yaml", "")).ok());
  EXPECT_EQ(ReadCliConfig(WriteFile("ok.yaml", "server: h:1\n"))->server, "h:1");
  EXPECT_TRUE(absl::IsInvalidArgument(ReadCliConfig(WriteFile("list.yaml", "- a\n")).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ReadCliConfig(WriteFile("bad.yaml", "a: [\n")).status()));
  EXPECT_TRUE(absl::IsNotFound(ReadCliConfig((dir_ / "none.yaml").string()).status()));
}

}  // namespace
}  // namespace bitsweep::client
