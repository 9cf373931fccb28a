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
#include "client/sweep_file.h"
#include "client/train_command.h"
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

}  // namespace
}  // namespace bitsweep::client
