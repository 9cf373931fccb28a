// End to end over real processes: a bitsweep-server on loopback port 0, two bitsweep-workers
// with one slot each, sweeps submitted through gRPC and through the `bitsweep` CLI, and the
// results checked through SweepService and `bitsweep results --json`.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "tests/e2e/child_process.h"

namespace bitsweep::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kStartupTimeout = seconds(30);
constexpr auto kSweepTimeout = seconds(200);

// --- building a SweepSpec in code --------------------------------------------------------

google::protobuf::Value Str(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  return v;
}
google::protobuf::Value Num(double d) {
  google::protobuf::Value v;
  v.set_number_value(d);
  return v;
}
google::protobuf::Value List(std::initializer_list<google::protobuf::Value> items) {
  google::protobuf::Value v;
  for (const auto& item : items) *v.mutable_list_value()->add_values() = item;
  return v;
}
google::protobuf::Value Map(
    std::initializer_list<std::pair<const std::string, google::protobuf::Value>> fields) {
  google::protobuf::Value v;
  for (const auto& [key, value] : fields)
    (*v.mutable_struct_value()->mutable_fields())[key] = value;
  return v;
}

// Shared by the gRPC and the YAML sweep: tiny CNN, synthetic data, a few hundred iterations.
constexpr int kIterations = 300;
constexpr int kEvalEvery = 50;

v1::SweepSpec SmallSweep(const std::string& name) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.set_method("grid");
  spec.set_seeds(2);
  *spec.mutable_base() =
      Map({{"dataset", Map({{"name", Str("synthetic")},
                            {"train_limit", Num(2000)},
                            {"test_limit", Num(500)}})},
           {"model", Map({{"conv", List({Num(4)})},
                          {"kernel", Num(3)},
                          {"pool", Num(2)},
                          {"dense", List({Num(16)})},
                          {"activation", Str("relu")},
                          {"init", Str("he")}})},
           {"train", Map({{"iterations", Num(kIterations)},
                          {"batch_size", Num(16)},
                          {"optimizer", Str("sgd")},
                          {"lr", Num(0.05)},
                          {"eval_every", Num(kEvalEvery)}})},
           {"precision",
            Map({{"default", Map({{"format", Str("fp32")}, {"rounding", Str("nearest")}})},
                 {"sites", List({Str("weights"), Str("activations"), Str("errors")})}})}})
          .struct_value();
  v1::SweepParameter* format = spec.add_parameters();
  format->set_path("precision.default.format");
  *format->mutable_values() = List({Str("fp32"), Str("mask:12"), Str("mask:16")}).list_value();
  v1::SweepParameter* rounding = spec.add_parameters();
  rounding->set_path("precision.default.rounding");
  *rounding->mutable_values() = List({Str("truncate"), Str("stochastic")}).list_value();
  return spec;
}

constexpr int kSmallSweepTrials = 3 * 2 * 2;

std::string SmallSweepYaml(const std::string& name) {
  return "name: " + name + R"(
base:
  dataset: {name: synthetic, train_limit: 2000, test_limit: 500}
  model: {conv: [4], kernel: 3, pool: 2, dense: [16], activation: relu, init: he}
  train: {iterations: 300, batch_size: 16, optimizer: sgd, lr: 0.05, eval_every: 50}
  precision:
    default: {format: fp32, rounding: nearest}
    sites: [weights, activations, errors]
sweep:
  method: grid
  seeds: 2
  parameters:
    precision.default.format: [fp32, "mask:12", "mask:16"]
    precision.default.rounding: [truncate, stochastic]
)";
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

int CountLines(const std::string& text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  if (!text.empty() && text.back() != '\n') ++lines;
  return lines;
}

// --- the fixture: one server and two workers per test ------------------------------------

class SweepE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* bin : {BITSWEEP_SERVER_BIN, BITSWEEP_WORKER_BIN, BITSWEEP_CLI_BIN}) {
      ASSERT_TRUE(fs::exists(bin)) << bin << " is not built";
    }
    std::string pattern = (fs::temp_directory_path() / "bitsweep-e2e-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;

    StartServer();
    if (HasFatalFailure()) return;
    for (int i = 1; i <= 2; ++i) StartWorker("e2e-worker-" + std::to_string(i));
    if (HasFatalFailure()) return;

    Connect();
  }

  void Connect() {
    channel_ = grpc::CreateChannel(server_address_, grpc::InsecureChannelCredentials());
    stub_ = v1::SweepService::NewStub(channel_);
  }

  void TearDown() override {
    stub_.reset();
    channel_.reset();
    // Workers first, so that they do not spin on a dead server; every child is reaped.
    for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
      const int code = it->Stop(seconds(10));
      if (it->name() == "bitsweep-worker") {
        EXPECT_EQ(code, 0) << it->name() << " did not exit cleanly on SIGTERM";
      }
    }
    // BITSWEEP_E2E_KEEP=1 keeps the logs and database of a passing run too.
    const bool keep = HasFailure() || std::getenv("BITSWEEP_E2E_KEEP") != nullptr;
    if (keep) std::cerr << "---- e2e temp dir kept: " << dir_ << "\n";
    if (HasFailure()) {
      for (ChildProcess& child : children_) {
        std::cerr << "---- stderr of " << child.name() << " (pid " << child.pid() << "):\n"
                  << ReadFile(child.stderr_path()) << "\n";
      }
    }
    children_.clear();
    if (!keep && !dir_.empty()) fs::remove_all(dir_);
  }

  ChildProcess* Spawn(const std::vector<std::string>& argv, const std::string& label) {
    std::string error;
    std::optional<ChildProcess> child =
        ChildProcess::Start(argv, dir_ / (label + ".out"), dir_ / (label + ".err"), &error);
    if (!child) {
      ADD_FAILURE() << error;
      return nullptr;
    }
    children_.push_back(std::move(*child));
    return &children_.back();
  }

  // Starts bitsweep-server on `listen` (port 0 on the first start; the same port on a restart,
  // so that the workers find it again) and waits for its port file.
  void StartServer(const std::string& listen = "127.0.0.1:0",
                   const std::string& port_file_name = "ports.json") {
    const fs::path port_file = dir_ / port_file_name;
    // Watch before starting, so that the rename cannot slip by unseen.
    const int inotify = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    ASSERT_GE(inotify, 0);
    ASSERT_GE(inotify_add_watch(inotify, dir_.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE), 0);
    server_index_ = children_.size();
    ChildProcess* server = Spawn(
        {BITSWEEP_SERVER_BIN, "--listen", listen, "--http", "127.0.0.1:0", "--db",
         (dir_ / "bitsweep.db").string(), "--port-file", port_file.string(), "--log-level", "info",
         // Short, so that a lease lost in a crash is requeued quickly.
         "--lease-timeout-ms", "5000"},
        "server");
    ASSERT_NE(server, nullptr);

    // Bounded wait for the port file: woken by inotify or by the server's exit.
    const auto deadline = std::chrono::steady_clock::now() + kStartupTimeout;
    while (!fs::exists(port_file)) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      ASSERT_GT(left.count(), 0) << "bitsweep-server wrote no " << port_file << " within "
                                 << kStartupTimeout.count() << "s";
      pollfd fds[2] = {{inotify, POLLIN, 0}, {server->exit_fd(), POLLIN, 0}};
      poll(fds, server->exit_fd() >= 0 ? 2 : 1, static_cast<int>(left.count()));
      char buffer[4096];
      while (read(inotify, buffer, sizeof(buffer)) > 0) {
      }
      ASSERT_FALSE(server->Exited()) << "bitsweep-server exited during start-up";
    }
    close(inotify);

    const nlohmann::json ports = nlohmann::json::parse(ReadFile(port_file), nullptr, false);
    ASSERT_FALSE(ports.is_discarded()) << "port file is not JSON: " << ReadFile(port_file);
    ASSERT_TRUE(ports.contains("grpc_port")) << ports.dump();
    grpc_port_ = ports["grpc_port"].get<int>();
    ASSERT_GT(grpc_port_, 0);
    server_address_ = "127.0.0.1:" + std::to_string(grpc_port_);
  }

  void StartWorker(const std::string& worker_id) {
    ASSERT_NE(Spawn({BITSWEEP_WORKER_BIN, "--server", server_address_, "--slots", "1", "--data-dir",
                     dir_.string(), "--worker-id", worker_id, "--log-level", "debug"},
                    worker_id),
              nullptr);
    worker_ids_.push_back(worker_id);
  }

  CommandResult Cli(std::vector<std::string> args, const std::string& label) {
    args.insert(args.begin(), {BITSWEEP_CLI_BIN, "--server", server_address_});
    return RunCommand(args, dir_, label);
  }

  std::unique_ptr<grpc::ClientContext> Context(seconds timeout = seconds(10)) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + timeout);
    // The server may have just (re)started: wait for the connection within the deadline.
    context->set_wait_for_ready(true);
    return context;
  }

  // Consumes WatchSweep until the stream ends (the sweep is DONE or CANCELLED); returns the
  // last sweep state seen.
  v1::Sweep WatchUntilFinished(int64_t sweep_id) {
    auto context = Context(std::chrono::duration_cast<seconds>(kSweepTimeout));
    v1::WatchSweepRequest request;
    request.set_sweep_id(sweep_id);
    std::unique_ptr<grpc::ClientReader<v1::SweepEvent>> reader =
        stub_->WatchSweep(context.get(), request);
    v1::Sweep last;
    v1::SweepEvent event;
    int events = 0;
    while (reader->Read(&event)) {
      last = event.sweep();
      ++events;
    }
    const grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << "WatchSweep: " << status.error_code() << " "
                             << status.error_message() << " after " << events << " events";
    EXPECT_GT(events, 0);
    return last;
  }

  std::vector<v1::Trial> ListTrials(int64_t sweep_id) {
    v1::ListTrialsRequest request;
    request.set_sweep_id(sweep_id);
    v1::ListTrialsResponse response;
    const grpc::Status status = stub_->ListTrials(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.trials().begin(), response.trials().end()};
  }

  int SweepCount() {
    v1::ListSweepsResponse response;
    const grpc::Status status =
        stub_->ListSweeps(Context().get(), v1::ListSweepsRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.sweeps_size();
  }

  // Every trial DONE with a sane result and a clean curve; returns the worker ids that ran them.
  std::set<std::string> CheckFinishedSweep(int64_t sweep_id, int expected_trials) {
    std::set<std::string> workers;
    const std::vector<v1::Trial> trials = ListTrials(sweep_id);
    EXPECT_EQ(static_cast<int>(trials.size()), expected_trials);
    double fp32_accuracy_sum = 0;
    int fp32_trials = 0;
    for (const v1::Trial& listed : trials) {
      SCOPED_TRACE("trial " + std::to_string(listed.id()));
      v1::GetTrialRequest request;
      request.set_trial_id(listed.id());
      request.set_include_curve(true);
      v1::GetTrialResponse response;
      const grpc::Status status = stub_->GetTrial(Context().get(), request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      const v1::Trial& trial = response.trial();
      EXPECT_EQ(trial.state(), v1::TRIAL_STATE_DONE) << trial.error();
      EXPECT_GE(trial.attempt(), 1);
      EXPECT_TRUE(trial.has_result());
      const v1::TrialResult& result = trial.result();
      EXPECT_GE(result.final_test_accuracy(), 0.0);
      EXPECT_LE(result.final_test_accuracy(), 1.0);
      EXPECT_EQ(result.num_classes(), 10);
      EXPECT_FALSE(trial.worker_id().empty());
      workers.insert(trial.worker_id());

      EXPECT_FALSE(response.curve().empty());
      for (int i = 1; i < response.curve_size(); ++i) {
        EXPECT_LT(response.curve(i - 1).iteration(), response.curve(i).iteration())
            << "curve iterations must increase without duplicates (point " << i << ")";
      }
      if (!response.curve().empty() && result.outcome() == v1::TRIAL_OUTCOME_COMPLETED) {
        EXPECT_EQ(response.curve(response.curve_size() - 1).iteration(), kIterations);
      }
      if (trial.config().precision().default_().format() == "fp32") {
        fp32_accuracy_sum += result.final_test_accuracy();
        ++fp32_trials;
      }
    }
    EXPECT_GT(fp32_trials, 0);
    if (fp32_trials > 0) {
      // Chance is 0.1 on ten classes; the synthetic set is easy for even a tiny CNN.
      EXPECT_GE(fp32_accuracy_sum / fp32_trials, 0.5) << "fp32 trials did not learn";
    }
    return workers;
  }

  fs::path dir_;
  std::vector<ChildProcess> children_;
  size_t server_index_ = 0;
  std::vector<std::string> worker_ids_;
  int grpc_port_ = 0;
  std::string server_address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SweepService::Stub> stub_;
};

TEST_F(SweepE2ETest, GrpcSubmittedSweep_EveryTrialDoneOnBothWorkersWithCleanCurves) {
  const auto start = std::chrono::steady_clock::now();
  v1::SubmitSweepRequest request;
  *request.mutable_spec() = SmallSweep("e2e-grpc");
  v1::SubmitSweepResponse submitted;
  const grpc::Status status = stub_->SubmitSweep(Context().get(), request, &submitted);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  ASSERT_EQ(submitted.trial_count(), kSmallSweepTrials);

  const v1::Sweep sweep = WatchUntilFinished(submitted.sweep_id());
  EXPECT_EQ(sweep.state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(sweep.counts().done(), kSmallSweepTrials);
  EXPECT_EQ(sweep.counts().failed(), 0);

  const std::set<std::string> ran_on = CheckFinishedSweep(submitted.sweep_id(), kSmallSweepTrials);
  EXPECT_EQ(ran_on, std::set<std::string>(worker_ids_.begin(), worker_ids_.end()))
      << "both workers should have run trials";

  v1::ListWorkersResponse workers;
  ASSERT_TRUE(stub_->ListWorkers(Context().get(), v1::ListWorkersRequest(), &workers).ok());
  std::map<std::string, v1::WorkerInfo> by_id;
  for (const v1::WorkerInfo& w : workers.workers()) by_id[w.worker_id()] = w;
  for (const std::string& id : worker_ids_) {
    ASSERT_TRUE(by_id.count(id)) << id << " missing from ListWorkers";
    EXPECT_EQ(by_id[id].slots(), 1);
    EXPECT_GT(by_id[id].trials_done(), 0) << id;
    EXPECT_FALSE(by_id[id].incarnation().empty());
  }
  std::cerr << "gRPC sweep of " << kSmallSweepTrials << " trials took "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << "s\n";
}

TEST_F(SweepE2ETest, CliSubmittedSweep_RunsAndResultsJsonParses) {
  const fs::path yaml = dir_ / "sweep.yaml";
  std::ofstream(yaml) << SmallSweepYaml("e2e-cli");

  const CommandResult submit = Cli({"submit", yaml.string()}, "cli-submit");
  ASSERT_EQ(submit.exit_code, 0) << submit.out << submit.err;
  // "submitted sweep N (...)"
  const std::string marker = "submitted sweep ";
  const size_t at = submit.out.find(marker);
  ASSERT_NE(at, std::string::npos) << submit.out;
  const int64_t sweep_id = std::atoll(submit.out.c_str() + at + marker.size());
  ASSERT_GT(sweep_id, 0) << submit.out;

  const v1::Sweep sweep = WatchUntilFinished(sweep_id);
  EXPECT_EQ(sweep.state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(sweep.name(), "e2e-cli");
  CheckFinishedSweep(sweep_id, kSmallSweepTrials);

  const CommandResult results = Cli({"results", std::to_string(sweep_id), "--json"}, "cli-results");
  EXPECT_EQ(results.exit_code, 0) << results.err;
  const nlohmann::json json = nlohmann::json::parse(results.out, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << "not JSON:\n" << results.out;
  EXPECT_FALSE(json.empty());
}

// Issue 8 end to end: a worker uploads the final weights of a trial that keeps them, the server
// keeps them past completion, and `bitsweep predict TRIAL --record` predicts from them and records
// the prediction on the trial's sweep.
TEST_F(SweepE2ETest, KeptFinalCheckpoint_PredictTrialUsesTheTrainedWeightsAndRecords) {
  const fs::path yaml = dir_ / "keep.yaml";
  std::ofstream(yaml) << R"(name: e2e-keep
base:
  dataset: {name: synthetic, train_limit: 2000, test_limit: 500}
  model: {conv: [4], kernel: 3, pool: 2, dense: [16], activation: relu, init: he}
  train: {iterations: 300, batch_size: 16, optimizer: sgd, lr: 0.05, eval_every: 50,
          keep_final_checkpoint: true}
  precision: {default: {format: fp32, rounding: nearest}, sites: []}
sweep: {method: grid, seeds: 1, parameters: {train.batch_size: [16]}}
)";
  const CommandResult submit = Cli({"submit", yaml.string()}, "cli-keep-submit");
  ASSERT_EQ(submit.exit_code, 0) << submit.out << submit.err;
  const size_t at = submit.out.find("submitted sweep ");
  ASSERT_NE(at, std::string::npos) << submit.out;
  const int64_t sweep_id = std::atoll(submit.out.c_str() + at + 16);
  EXPECT_EQ(WatchUntilFinished(sweep_id).state(), v1::SWEEP_STATE_DONE);
  v1::ListTrialsRequest list;
  list.set_sweep_id(sweep_id);
  v1::ListTrialsResponse trials;
  ASSERT_TRUE(stub_->ListTrials(Context().get(), list, &trials).ok());
  ASSERT_EQ(trials.trials_size(), 1);
  const v1::Trial& trial = trials.trials(0);
  ASSERT_EQ(trial.state(), v1::TRIAL_STATE_DONE);

  v1::GetTrialCheckpointRequest request;
  request.set_trial_id(trial.id());
  v1::GetTrialCheckpointResponse checkpoint;
  ASSERT_TRUE(stub_->GetTrialCheckpoint(Context().get(), request, &checkpoint).ok());
  EXPECT_EQ(checkpoint.iteration(), 300);  // the final weights, not a periodic checkpoint

  const CommandResult predict = Cli({"predict", std::to_string(trial.id()), "--json", "--inputs",
                                     "40", "--min-vrr", "0.5", "--record"},
                                    "cli-predict-trial");
  ASSERT_EQ(predict.exit_code, 0) << predict.err;
  const nlohmann::json prediction = nlohmann::json::parse(predict.out, nullptr, false);
  ASSERT_FALSE(prediction.is_discarded()) << predict.out;
  // The trained trial's weights: its fp32 accuracy on the same 500 test images (evaluated in
  // other batch sizes: allow a tie broken differently).
  EXPECT_NEAR(prediction["fp32_test_accuracy"].get<double>(), trial.result().final_test_accuracy(),
              2.0 / 500);
  EXPECT_NE(predict.err.find("recorded on sweep " + std::to_string(sweep_id)), std::string::npos)
      << predict.err;
}

TEST_F(SweepE2ETest, MalformedSweep_CliExitsNonZeroWithOneLineErrorAndStoresNothing) {
  const int sweeps_before = SweepCount();
  const fs::path yaml = dir_ / "bad.yaml";
  std::string text = SmallSweepYaml("e2e-bad");
  // An unknown swept path: only the server knows the config schema.
  text.replace(text.find("precision.default.rounding"), 26, "precision.default.roundng");
  std::ofstream(yaml) << text;

  const CommandResult submit = Cli({"submit", yaml.string()}, "cli-bad-submit");
  EXPECT_NE(submit.exit_code, 0) << submit.out;
  EXPECT_NE(submit.exit_code, -1) << "CLI hung";
  EXPECT_EQ(CountLines(submit.err), 1) << submit.err;
  EXPECT_NE(submit.err.find("roundng"), std::string::npos)
      << "error should name the path: " << submit.err;

  // YAML that does not even parse.
  const fs::path broken = dir_ / "broken.yaml";
  std::ofstream(broken) << "name: [unclosed\nbase: {\n";
  const CommandResult parse = Cli({"submit", broken.string()}, "cli-broken-submit");
  EXPECT_NE(parse.exit_code, 0);
  EXPECT_NE(parse.exit_code, -1) << "CLI hung";
  EXPECT_EQ(CountLines(parse.err), 1) << parse.err;

  EXPECT_EQ(SweepCount(), sweeps_before);
}

TEST_F(SweepE2ETest, ServerCrashAndRestart_WorkersReconnectAndTheSweepCompletes) {
  v1::SweepSpec spec = SmallSweep("e2e-restart");
  // Longer trials, so that the crash lands while both workers are busy.
  (*(*spec.mutable_base()->mutable_fields())["train"]
        .mutable_struct_value()
        ->mutable_fields())["iterations"] = Num(kIterations * 5);
  spec.mutable_parameters()->RemoveLast();  // formats x seeds: 6 trials
  v1::SubmitSweepRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitSweepResponse submitted;
  ASSERT_TRUE(stub_->SubmitSweep(Context().get(), request, &submitted).ok());
  const int trials = submitted.trial_count();
  ASSERT_EQ(trials, 6);

  {
    // Wait until both workers are running a trial.
    auto context = Context(seconds(60));
    v1::WatchSweepRequest watch;
    watch.set_sweep_id(submitted.sweep_id());
    auto reader = stub_->WatchSweep(context.get(), watch);
    v1::SweepEvent event;
    bool busy = false;
    while (!busy && reader->Read(&event)) busy = event.sweep().counts().running() >= 2;
    ASSERT_TRUE(busy) << "both workers never ran at once";
    context->TryCancel();
    reader->Finish();
  }

  // Crash: no chance to flush or say goodbye.
  ChildProcess& server = children_[server_index_];
  kill(server.pid(), SIGKILL);
  ASSERT_TRUE(server.Wait(seconds(10)).has_value());
  StartServer("127.0.0.1:" + std::to_string(grpc_port_), "ports-restarted.json");
  ASSERT_FALSE(HasFatalFailure());
  Connect();

  const v1::Sweep sweep = WatchUntilFinished(submitted.sweep_id());
  EXPECT_EQ(sweep.state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(sweep.counts().done(), trials);
  // CheckFinishedSweep expects the base iteration count at the end of each curve.
  for (const v1::Trial& trial : ListTrials(submitted.sweep_id())) {
    v1::GetTrialRequest get;
    get.set_trial_id(trial.id());
    get.set_include_curve(true);
    v1::GetTrialResponse response;
    ASSERT_TRUE(stub_->GetTrial(Context().get(), get, &response).ok());
    EXPECT_EQ(response.trial().state(), v1::TRIAL_STATE_DONE) << response.trial().error();
    EXPECT_FALSE(response.curve().empty());
    for (int i = 1; i < response.curve_size(); ++i) {
      EXPECT_LT(response.curve(i - 1).iteration(), response.curve(i).iteration())
          << "trial " << trial.id() << " point " << i;
    }
  }
  for (const ChildProcess& child : children_) {
    if (child.name() == "bitsweep-worker") {
      EXPECT_FALSE(const_cast<ChildProcess&>(child).Exited()) << "a worker died with the server";
    }
  }
}

TEST(SweepE2ECliTest, DeadServer_CliExits3) {
  const int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  std::string pattern = (fs::temp_directory_path() / "bitsweep-e2e-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  const CommandResult ls =
      RunCommand({BITSWEEP_CLI_BIN, "--server", "127.0.0.1:" + std::to_string(port), "ls"}, pattern,
                 "cli-dead", seconds(60));
  EXPECT_EQ(ls.exit_code, 3) << ls.out << ls.err;
  EXPECT_EQ(CountLines(ls.err), 1) << ls.err;
  fs::remove_all(pattern);
}

}  // namespace
}  // namespace bitsweep::e2e
