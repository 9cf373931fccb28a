// `bitsweep predict` (seed 001): the bound against the measured mismatch on a trained model, the
// verifying sweep file, and the weights of a trainer checkpoint, on the synthetic dataset.
#include "client/predict_command.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "client/sweep_file.h"
#include "client/train_command.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/client/fake_sweep_service.h"
#include "worker/trainer/data/dataset.h"
#include "worker/trainer/trainer.h"

namespace bitsweep::client {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Two conv blocks (conv -> conv noise gains) and a hidden dense layer; trains in about a second.
constexpr char kModel[] = R"(
dataset: {name: synthetic, train_limit: 1000, test_limit: 300}
model: {conv: [4, 6], kernel: 3, pool: 2, dense: [16], activation: relu, init: he}
train: {iterations: 60, batch_size: 50, optimizer: momentum, lr: 0.05, momentum: 0.9,
        eval_every: 30}
precision: {default: {format: fp32, rounding: nearest}, sites: []}
)";

class PredictCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("bitsweep_predict_command_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    config_ = Write("model.yaml", kModel);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

  PredictRequest Request() const {
    PredictRequest r;
    r.config_path = config_;
    r.json = true;
    r.inputs = 40;
    r.min_vrr = 0.5;  // the seed 003 part is not under test here: keep it fast
    return r;
  }

  absl::StatusOr<json> Run(const PredictRequest& r) {
    std::ostringstream out, err;
    absl::Status s = RunPredict(r, out, err);
    if (!s.ok()) return s;
    return json::parse(out.str());
  }

  fs::path dir_;
  std::string config_;
};

TEST_F(PredictCommandTest, BoundFallsFourTimesPerBitAndMeasuredMismatchFallsWithoutAFloor) {
  absl::StatusOr<json> result = Run(Request());
  ASSERT_TRUE(result.ok()) << result.status();
  const json& r = *result;
  EXPECT_GT(r["fp32_test_accuracy"].get<double>(), 0.5);
  ASSERT_EQ(r["layers"].size(), 4u);  // conv0, conv1, dense0, output
  for (const json& l : r["layers"]) {
    EXPECT_GT(l["E_A"].get<double>(), 0) << l.dump();  // conv0's goes through conv1
    EXPECT_GT(l["E_W"].get<double>(), 0) << l.dump();
  }
  const json& bounds = r["bounds"];
  ASSERT_GE(bounds.size(), 5u);
  for (size_t i = 1; i < bounds.size(); ++i) {
    EXPECT_DOUBLE_EQ(bounds[i - 1]["bound"].get<double>() / bounds[i]["bound"].get<double>(), 4);
  }
  // Each quantity on its own range: no saturation floor, so enough bits match float32 exactly
  // and few bits mismatch more.
  const int widest = bounds.back()["bits"].get<int>();
  PredictRequest wide = Request();
  wide.target_pm = 1e-9;  // predicts a wide B, so the table reaches it
  absl::StatusOr<json> fine = Run(wide);
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_GT(fine->at("bounds").back()["bits"].get<int>(), widest);
  EXPECT_EQ(fine->at("bounds").back()["measured"].get<double>(), 0.0);
  EXPECT_GE(bounds.front()["measured"].get<double>(), bounds.back()["measured"].get<double>());

  // Seed 003 on the model's GEMMs: every mantissa, both roundings, one entry per layer; the
  // conv0 weight gradient (the longest sums) keeps more with more bits.
  const json& retention = r["gradient_retention"];
  ASSERT_EQ(retention.size(), 20u);  // m = 4..22 step 2, truncate and nearest
  for (const json& e : retention) ASSERT_EQ(e["layers"].size(), 4u) << e.dump();
  EXPECT_EQ(retention[0]["mantissa"], 4);
  EXPECT_EQ(retention[0]["rounding"], "truncate");
  EXPECT_LT(retention[0]["layers"][0]["cosine"].get<double>(),
            retention[18]["layers"][0]["cosine"].get<double>());
  EXPECT_GT(retention[18]["layers"][0]["retention"].get<double>(), 0.99);  // m = 22 truncate
}

TEST_F(PredictCommandTest, VerifySweep_IsASubmittableSweepOverTheAssignments) {
  PredictRequest r = Request();
  r.verify_sweep = (dir_ / "verify.yaml").string();
  absl::StatusOr<json> result = Run(r);
  ASSERT_TRUE(result.ok()) << result.status();
  absl::StatusOr<v1::SweepSpec> spec = ParseSweepFile(r.verify_sweep);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "verify");
  ASSERT_EQ(spec->parameters_size(), 1);
  const v1::SweepParameter& axis = spec->parameters(0);
  EXPECT_EQ(axis.path(), "precision.layers");
  ASSERT_EQ(axis.values().values_size(), 7);  // fp32, uniform B-2..B+2, per-layer
  EXPECT_EQ(axis.values().values(0).list_value().values_size(), 0);
  const int b = (*result)["uniform"]["min_bits"].get<int>();
  const json& layers = (*result)["layers"];
  for (int v = 1; v < 7; ++v) {
    const auto& list = axis.values().values(v).list_value();
    ASSERT_EQ(list.values_size(), 4) << v;
    for (int l = 0; l < 4; ++l) {
      const auto& fields = list.values(l).struct_value().fields();
      const std::string weights =
          fields.at("weights").struct_value().fields().at("format").string_value();
      const std::string activations =
          fields.at("activations").struct_value().fields().at("format").string_value();
      const int iw = layers[l]["I_W"].get<int>(), ia = layers[l]["I_A"].get<int>();
      const int bw = v < 6 ? std::max(b - 3 + v, iw + 1) : layers[l]["B_W"].get<int>();
      const int ba = v < 6 ? std::max(b - 3 + v, ia + 1) : layers[l]["B_A"].get<int>();
      EXPECT_EQ(weights, absl::StrCat("fixed:", bw, ",", bw - 1 - iw)) << v << " " << l;
      EXPECT_EQ(activations, absl::StrCat("fixed:", ba, ",", ba - 1 - ia)) << v << " " << l;
    }
  }
  // The base is the config, made to quantise weights and activations (master weights fp32).
  absl::StatusOr<v1::TrialConfig> base = LoadTrainConfig(r.verify_sweep, {});
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->model().conv_size(), 2);
  EXPECT_EQ(base->precision().master_weights(), "fp32");
  EXPECT_EQ(base->dataset().train_limit(), 1000);
  ASSERT_EQ(base->precision().sites_size(), 2);
}

TEST_F(PredictCommandTest, Checkpoint_TakesTheTrainedWeightsInsteadOfTraining) {
  absl::StatusOr<v1::TrialConfig> config = LoadTrainConfig(config_, {});
  ASSERT_TRUE(config.ok()) << config.status();
  auto data = trainer::LoadDataset("synthetic", "unused");
  ASSERT_TRUE(data.ok());
  trainer::TrainOptions options;
  options.checkpoint_every = 1;
  std::string last;
  options.on_checkpoint = [&](int64_t, std::string state) { last = std::move(state); };
  auto trial = trainer::Train(*config, **data, nullptr, options);
  ASSERT_TRUE(trial.ok()) << trial.status();
  ASSERT_FALSE(last.empty());

  PredictRequest r = Request();
  r.checkpoint = Write("trial.ckpt", last);
  absl::StatusOr<json> result = Run(r);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NEAR((*result)["fp32_test_accuracy"].get<double>(), trial->final_test_accuracy(),
              1.0 / 300);

  r.checkpoint = Write("bad.ckpt", "not a checkpoint");
  EXPECT_EQ(Run(r).status().code(), absl::StatusCode::kInvalidArgument);
  r.checkpoint = Write("trial.ckpt", last);
  r.sets = {"model.dense=[20]"};  // another model
  absl::StatusOr<json> other = Run(r);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(other.status().message().find("parameter tensor"), std::string::npos) << other.status();
  r.checkpoint = (dir_ / "missing.ckpt").string();
  EXPECT_EQ(Run(r).status().code(), absl::StatusCode::kNotFound);
}

// --- predict TRIAL and --record, against the fake server ---------------------------------------

class PredictTrialTest : public PredictCommandTest {
 protected:
  void SetUp() override {
    PredictCommandTest::SetUp();
    server_ = ServeOnLoopback(&service_, &address_);
    ASSERT_NE(server_, nullptr);
    v1::Sweep sweep;
    sweep.set_id(3);
    service_.AddSweep(sweep);
  }
  void TearDown() override {
    server_->Shutdown();
    PredictCommandTest::TearDown();
  }

  // Trains the config's model as a worker would, keeping the final checkpoint; serves it as
  // trial 5 of sweep 3. Returns the checkpoint bytes.
  std::string AddTrainedTrial() {
    absl::StatusOr<v1::TrialConfig> config = LoadTrainConfig(config_, {});
    EXPECT_TRUE(config.ok()) << config.status();
    auto data = trainer::LoadDataset("synthetic", "unused");
    EXPECT_TRUE(data.ok());
    trainer::TrainOptions options;
    options.final_checkpoint = true;
    v1::GetTrialCheckpointResponse checkpoint;
    options.on_checkpoint = [&](int64_t iteration, std::string state) {
      checkpoint.set_iteration(iteration);
      checkpoint.set_state(std::move(state));
    };
    EXPECT_TRUE(trainer::Train(*config, **data, nullptr, options).ok());
    v1::Trial trial;
    trial.set_id(5);
    trial.set_sweep_id(3);
    trial.set_state(v1::TRIAL_STATE_DONE);
    *trial.mutable_config() = *config;
    service_.AddTrial(trial);
    checkpoint.set_trial_id(5);
    checkpoint.set_trial_state(v1::TRIAL_STATE_DONE);
    checkpoint.set_attempt(1);
    service_.AddCheckpoint(checkpoint);
    return checkpoint.state();
  }

  // `bitsweep --server ADDR predict ARGS... --json` with the test's fast settings.
  int Cli(std::vector<std::string> args, std::string* out, std::string* err) {
    std::vector<std::string> argv = {"bitsweep", "--server", address_, "predict"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const char* arg : {"--json", "--inputs", "40", "--min-vrr", "0.5"}) argv.push_back(arg);
    std::ostringstream o, e;
    CliEnvironment env;
    env.out = &o;
    env.err = &e;
    const int code = RunCli(argv, env);
    *out = o.str();
    *err = e.str();
    return code;
  }

  // The prediction without its timings (they differ run to run).
  static json Untimed(json j) {
    for (const char* key : {"train_seconds", "measure_seconds", "seconds"}) j.erase(key);
    return j;
  }

  FakeSweepService service_;
  std::string address_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(PredictTrialTest, TrialId_PredictsFromItsConfigAndKeptCheckpoint_SameAsConfigAndFile) {
  const std::string bytes = AddTrainedTrial();
  std::string out, err;
  ASSERT_EQ(Cli({"5"}, &out, &err), 0) << err;
  EXPECT_NE(err.find("weights from trial 5's checkpoint (done, after iteration 60)"),
            std::string::npos)
      << err;
  const json remote = json::parse(out);

  PredictRequest local = Request();
  local.checkpoint = Write("trial5.ckpt", bytes);
  absl::StatusOr<json> expected = Run(local);
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(Untimed(remote), Untimed(*expected));
  // The assignments are the verifying sweep's values, fp32 baseline first.
  ASSERT_EQ(remote["assignments"].size(), 7u);
  EXPECT_TRUE(remote["assignments"][0]["precision_layers"].empty());
  EXPECT_EQ(remote["assignments"][3]["bits"], remote["uniform"]["min_bits"]);
  EXPECT_TRUE(service_.predictions().empty());  // nothing recorded without --record
}

TEST_F(PredictTrialTest, Record_StoresThePrintedJsonOnTheTrialsSweep_OrTheNamedOne) {
  AddTrainedTrial();
  std::string out, err;
  ASSERT_EQ(Cli({"5", "--record"}, &out, &err), 0) << err;
  ASSERT_EQ(service_.predictions().size(), 1u);
  v1::RecordPredictionRequest recorded = service_.predictions()[0];
  EXPECT_EQ(recorded.sweep_id(), 3);
  EXPECT_EQ(recorded.source_trial_id(), 5);
  EXPECT_EQ(recorded.source(), "trial 5");
  EXPECT_EQ(json::parse(recorded.json()), json::parse(out));
  EXPECT_NE(err.find("prediction 1 recorded on sweep 3"), std::string::npos) << err;

  // A config trained here, recorded on a named sweep; an unknown sweep is refused.
  ASSERT_EQ(Cli({config_, "--sweep", "3"}, &out, &err), 0) << err;
  ASSERT_EQ(service_.predictions().size(), 2u);
  EXPECT_EQ(service_.predictions()[1].source_trial_id(), 0);
  EXPECT_NE(service_.predictions()[1].source().find("trained in fp32"), std::string::npos);
  EXPECT_EQ(Cli({"5", "--sweep", "44"}, &out, &err), 2);
  EXPECT_NE(err.find("sweep 44 not found"), std::string::npos) << err;
}

TEST_F(PredictTrialTest, Submit_SubmitsTheVerifyingSweepAndRecordsOnIt) {
  AddTrainedTrial();
  const std::string verify = (dir_ / "verify.yaml").string();
  std::string out, err;
  ASSERT_EQ(Cli({"5", "--verify-sweep", verify, "--submit"}, &out, &err), 0) << err;
  ASSERT_EQ(service_.submits().size(), 1u);
  absl::StatusOr<v1::SweepSpec> written = ParseSweepFile(verify);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(service_.submits()[0].spec(), *written));
  ASSERT_EQ(service_.predictions().size(), 1u);
  EXPECT_EQ(service_.predictions()[0].sweep_id(), 7);  // the submitted sweep, not the trial's
  EXPECT_EQ(service_.predictions()[0].source_trial_id(), 5);
}

TEST_F(PredictTrialTest, BadRequests_AreClearErrorsBeforeAnyWork) {
  std::string out, err;
  // No checkpoint kept: the server's message, naming the trial and the option.
  v1::Trial trial;
  trial.set_id(6);
  trial.set_sweep_id(3);
  *trial.mutable_config() = *LoadTrainConfig(config_, {});
  service_.AddTrial(trial);
  EXPECT_EQ(Cli({"6"}, &out, &err), 2);
  EXPECT_NE(err.find("trial 6 (done) kept no checkpoint: set train.keep_final_checkpoint: true"),
            std::string::npos)
      << err;
  EXPECT_EQ(Cli({"99"}, &out, &err), 2);
  EXPECT_NE(err.find("trial 99 not found"), std::string::npos) << err;
  EXPECT_EQ(Cli({config_, "--record"}, &out, &err), 2);
  EXPECT_NE(err.find("--record: on which sweep?"), std::string::npos) << err;
  EXPECT_EQ(Cli({"6", "--submit"}, &out, &err), 2);
  EXPECT_NE(err.find("--submit submits the verifying sweep: give --verify-sweep FILE"),
            std::string::npos)
      << err;
  EXPECT_EQ(Cli({"6", "--verify-sweep", "v.yaml", "--submit", "--sweep", "3"}, &out, &err), 2);
  EXPECT_NE(err.find("--sweep cannot name another"), std::string::npos) << err;
  EXPECT_EQ(Cli({"6", "--checkpoint", "c.bin"}, &out, &err), 2);
  EXPECT_NE(err.find("--checkpoint FILE goes with a CONFIG file"), std::string::npos) << err;
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(service_.predictions().empty());
  EXPECT_TRUE(service_.submits().empty());
  // An unreachable server is exit code 3, as for every server command.
  std::ostringstream o, e;
  CliEnvironment env;
  env.out = &o;
  env.err = &e;
  env.connect_timeout = absl::Milliseconds(200);
  EXPECT_EQ(RunCli({"bitsweep", "--server", "127.0.0.1:1", "predict", "6"}, env), 3) << e.str();
}

TEST_F(PredictTrialTest, SetsApplyOverTheTrialsConfig) {
  AddTrainedTrial();
  std::string out, err;
  ASSERT_EQ(Cli({"5", "--set", "dataset.test_limit=100"}, &out, &err), 0) << err;
  EXPECT_EQ(json::parse(out)["mismatch_inputs"], 100);
  EXPECT_EQ(Cli({"5", "--set", "model.dense=[20]"}, &out, &err), 2);
  EXPECT_NE(err.find("trial 5's checkpoint"), std::string::npos) << err;
}

}  // namespace
}  // namespace bitsweep::client
