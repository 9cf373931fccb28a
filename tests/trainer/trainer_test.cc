#include "worker/trainer/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "tests/trainer/train_run.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;

// A small CNN on the synthetic set: a few hundred milliseconds per run.
v1::TrialConfig SmallConfig() {
  v1::TrialConfig c = DefaultTrialConfig();
  c.mutable_dataset()->set_name("synthetic");
  v1::ModelConfig* m = c.mutable_model();
  m->clear_conv();
  m->add_conv(8);
  m->set_kernel(3);
  m->set_pool(2);
  m->clear_dense();
  m->add_dense(32);
  c.mutable_train()->set_batch_size(32);
  c.mutable_train()->set_iterations(250);
  c.mutable_train()->set_eval_every(100);
  c.mutable_train()->set_target_accuracy(0.8);
  c.set_seed(3);
  return c;
}

TEST(TrainerTest, LearnsTheSyntheticSetInFp32) {
  const TrainRun run = MustTrain(SmallConfig());
  const v1::TrialResult& r = run.result;
  EXPECT_EQ(r.outcome(), v1::TRIAL_OUTCOME_COMPLETED);
  EXPECT_GT(r.final_test_accuracy(), 0.9);
  EXPECT_GE(r.best_test_accuracy(), r.final_test_accuracy());
  EXPECT_EQ(r.iterations(), 250);
  EXPECT_EQ(r.num_classes(), 10);
  ASSERT_EQ(run.curve.size(), 3u);  // iterations 100, 200 and the end
  EXPECT_EQ(run.curve[0].iteration(), 100);
  EXPECT_EQ(run.curve[2].iteration(), 250);
  EXPECT_DOUBLE_EQ(run.curve[2].epoch(), 250.0 / 125);  // 4000 / 32 = 125 per epoch
  EXPECT_DOUBLE_EQ(run.curve[2].learning_rate(), 0.05);
  EXPECT_LT(run.curve[2].train_loss(), run.curve[0].train_loss() + 0.2);
  EXPECT_GT(run.curve[2].train_accuracy(), 0.8);
  EXPECT_DOUBLE_EQ(run.curve[2].test_accuracy(), r.final_test_accuracy());
  EXPECT_DOUBLE_EQ(run.curve[2].test_loss(), r.final_test_loss());
  EXPECT_EQ(r.iterations_to_target(), run.curve[0].test_accuracy() >= 0.8 ? 100 : 200);
  ASSERT_EQ(r.confusion_size(), 100);
  EXPECT_EQ(std::accumulate(r.confusion().begin(), r.confusion().end(), int64_t{0}),
            kSyntheticTest);
  int64_t diagonal = 0;
  for (int k = 0; k < 10; ++k) diagonal += r.confusion(k * 10 + k);
  EXPECT_DOUBLE_EQ(static_cast<double>(diagonal) / kSyntheticTest, r.final_test_accuracy());
  ASSERT_EQ(r.per_class_recall_size(), 10);
  for (double recall : r.per_class_recall()) EXPECT_GT(recall, 0.6);
  EXPECT_GT(r.kappa(), 0.85);
  EXPECT_GT(r.images_per_second(), 0);
  EXPECT_GT(r.train_seconds(), 0);
}

TEST(TrainerTest, QuantisedTrainingStillLearns) {
  for (const char* format : {"mask:12", "fixed:16,8", "bf16"}) {
    v1::TrialConfig c = SmallConfig();
    c.mutable_precision()->mutable_default_()->set_format(format);
    c.mutable_precision()->mutable_default_()->set_rounding("stochastic");
    const TrainRun run = MustTrain(c);
    EXPECT_EQ(run.result.outcome(), v1::TRIAL_OUTCOME_COMPLETED) << format;
    EXPECT_GT(run.result.final_test_accuracy(), 0.85) << format;
  }
}

TEST(TrainerTest, QuantisationChangesTheResult) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_train()->set_iterations(50);
  const TrainRun fp32 = MustTrain(c);
  c.mutable_precision()->mutable_default_()->set_format("mask:10");
  c.mutable_precision()->mutable_default_()->set_rounding("truncate");
  const TrainRun mask = MustTrain(c);
  EXPECT_NE(fp32.result.final_test_loss(), mask.result.final_test_loss());
}

// Everything but the wall-clock fields.
std::string Deterministic(v1::TrialResult r) {
  r.clear_images_per_second();
  r.clear_train_seconds();
  return r.SerializeAsString();
}

TEST(TrainerTest, RunsAreBitwiseDeterministic) {
  for (const char* rounding : {"stochastic", "nearest"}) {
    v1::TrialConfig c = SmallConfig();
    c.mutable_train()->set_iterations(120);
    c.mutable_train()->set_eval_every(40);
    c.mutable_precision()->mutable_default_()->set_format("mask:11");
    c.mutable_precision()->mutable_default_()->set_rounding(rounding);
    const TrainRun a = MustTrain(c);
    const TrainRun b = MustTrain(c);
    EXPECT_EQ(Deterministic(a.result), Deterministic(b.result)) << rounding;
    ASSERT_EQ(a.curve.size(), b.curve.size());
    for (size_t i = 0; i < a.curve.size(); ++i) {
      EXPECT_EQ(a.curve[i].SerializeAsString(), b.curve[i].SerializeAsString()) << i;
    }
    c.set_seed(4);
    const TrainRun other = MustTrain(c);
    EXPECT_NE(other.curve[0].train_loss(), a.curve[0].train_loss()) << rounding;
  }
}

TEST(TrainerTest, EveryOptimizerLearnsAndTheCurveReportsTheScheduledLr) {
  struct Case {
    const char* optimizer;
    double lr;
    const char* schedule;
  };
  for (const Case& k :
       {Case{"sgd", 0.1, "step"}, Case{"momentum", 0.05, "inv"}, Case{"adam", 0.003, "cosine"},
        Case{"adagrad", 0.03, "const"}, Case{"rmsprop", 0.002, "step"}}) {
    v1::TrialConfig c = SmallConfig();
    c.mutable_train()->set_iterations(150);
    c.mutable_train()->set_eval_every(50);
    c.mutable_train()->set_optimizer(k.optimizer);
    c.mutable_train()->set_lr(k.lr);
    c.mutable_train()->set_lr_schedule(k.schedule);
    c.mutable_train()->set_lr_gamma(0.5);
    c.mutable_train()->set_lr_step_size(60);
    c.mutable_train()->set_weight_decay(1e-4);
    const TrainRun run = MustTrain(c);
    EXPECT_EQ(run.result.outcome(), v1::TRIAL_OUTCOME_COMPLETED) << k.optimizer;
    EXPECT_GT(run.result.final_test_accuracy(), 0.6) << k.optimizer;
    ASSERT_EQ(run.curve.size(), 3u);
    // The point at iteration 100 reports the lr of its last update (0-based iteration 99).
    const double t = 99;
    double want = k.lr;
    if (std::string(k.schedule) == "step") want = k.lr * 0.5;  // 0.5^floor(99 / 60)
    if (std::string(k.schedule) == "inv") want = k.lr * std::pow(1 + 0.5 * t, -0.75);
    if (std::string(k.schedule) == "cosine") want = k.lr * 0.5 * (1 + std::cos(M_PI * t / 150));
    EXPECT_NEAR(run.curve[1].learning_rate(), want, 1e-15) << k.optimizer;
  }
}

TEST(TrainerTest, DynamicFormatsOnEverySiteAreDeterministicAndMeasured) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_train()->set_iterations(120);
  c.mutable_train()->set_eval_every(60);
  // Not adam: fixed point flushes its tiny second moments to 0 and m/ε explodes (README).
  c.mutable_train()->set_optimizer("momentum");
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format("dps:4,10");
  p->mutable_default_()->set_rounding("stochastic");
  p->add_sites("gradients");
  p->add_sites("optimizer");
  p->mutable_errors()->set_format("dynfixed:16");
  p->mutable_optimizer()->set_format("int:12");
  p->set_master_weights("fp32");
  const TrainRun a = MustTrain(c);
  const TrainRun b = MustTrain(c);
  EXPECT_EQ(Deterministic(a.result), Deterministic(b.result));
  ASSERT_EQ(a.curve.size(), b.curve.size());
  for (size_t i = 0; i < a.curve.size(); ++i) {
    EXPECT_EQ(a.curve[i].SerializeAsString(), b.curve[i].SerializeAsString()) << i;
  }
  EXPECT_GT(a.result.final_test_accuracy(), 0.5);
  ASSERT_EQ(a.curve[1].sites_size(), 5);
  const char* names[] = {"weights", "activations", "errors", "gradients", "optimizer"};
  for (int i = 0; i < 5; ++i) {
    const v1::SiteStats& s = a.curve[1].sites(i);
    EXPECT_EQ(s.site(), names[i]);
    EXPECT_GT(s.effective_bits(), 0) << names[i];
    EXPECT_GE(s.quantization_error_percent(), 0) << names[i];
    EXPECT_GE(s.overflow_percent(), 0) << names[i];
  }
  EXPECT_EQ(a.curve[1].sites(2).effective_bits(), 16);  // dynfixed:16
  EXPECT_EQ(a.curve[1].sites(4).effective_bits(), 12);  // int:12
  // dps moved away from ⟨4, 10⟩ for at least one site (E_max = 0.01% pushes FL up).
  EXPECT_NE(a.curve[1].sites(0).effective_bits(), 14);
}

TEST(TrainerTest, Fp32MasterWeightsKeepUpdatesTooSmallForTheWeightFormat) {
  // With steps of 2^-4 and lr·g far below half of that, rounding-to-nearest stored weights never
  // move; a float32 master copy accumulates the updates (seeds/002 and Gupta et al. 2015).
  v1::TrialConfig c = SmallConfig();
  c.mutable_train()->set_iterations(100);
  c.mutable_train()->set_eval_every(100);
  c.mutable_train()->set_optimizer("sgd");
  c.mutable_train()->set_lr(0.02);
  v1::PrecisionConfig* p = c.mutable_precision();
  p->clear_sites();
  p->add_sites("weights");
  p->mutable_default_()->set_format("fixed:12,4");
  const TrainRun none = MustTrain(c);
  p->set_master_weights("fp32");
  const TrainRun master = MustTrain(c);
  EXPECT_GT(master.result.final_test_accuracy(), none.result.final_test_accuracy() + 0.1);
}

TEST(TrainerTest, ConcurrentTrialsMatchSequentialOnes) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_train()->set_iterations(60);
  c.mutable_train()->set_eval_every(30);
  c.mutable_precision()->mutable_default_()->set_format("fp8e5m2");
  c.mutable_precision()->mutable_default_()->set_rounding("stochastic");
  const TrainRun serial = MustTrain(c);
  TrainRun parallel[2];
  {
    std::thread a([&] { parallel[0] = MustTrain(c); });
    std::thread b([&] { parallel[1] = MustTrain(c); });
    a.join();
    b.join();
  }
  for (const TrainRun& run : parallel) {
    EXPECT_EQ(Deterministic(run.result), Deterministic(serial.result));
  }
}

TEST(TrainerTest, HugeLearningRateDivergesAsAResult) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_train()->set_lr(1e4);
  c.mutable_train()->set_optimizer("sgd");
  int points = 0;
  auto result = Train(c, Synthetic(), [&points](const v1::CurvePoint&) {
    ++points;
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->outcome(), v1::TRIAL_OUTCOME_DIVERGED);
  EXPECT_THAT(result->detail(), HasSubstr("training loss"));
  EXPECT_LT(result->iterations(), 250);
  EXPECT_EQ(result->confusion_size(), 100);
  EXPECT_EQ(points, 0);
}

TEST(TrainerTest, CallbackReturningFalseCancels) {
  int calls = 0;
  auto result = Train(SmallConfig(), Synthetic(), [&calls](const v1::CurvePoint&) {
    ++calls;
    return false;
  });
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

TEST(TrainerTest, EpochsModeKeepsTheLastPartialBatch) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_train()->set_iterations(0);
  c.mutable_train()->set_epochs(1);
  c.mutable_train()->set_batch_size(128);  // 4000 / 128 = 31.25 -> 32 iterations
  const TrainRun run = MustTrain(c);
  EXPECT_EQ(run.result.iterations(), 32);
  ASSERT_EQ(run.curve.size(), 1u);
  EXPECT_DOUBLE_EQ(run.curve[0].epoch(), 1.0);
}

TEST(TrainerTest, LimitsRestrictTheExamplesUsed) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_dataset()->set_train_limit(500);
  c.mutable_dataset()->set_test_limit(200);
  c.mutable_train()->set_iterations(32);
  c.mutable_train()->set_eval_every(16);
  const TrainRun run = MustTrain(c);
  EXPECT_EQ(
      std::accumulate(run.result.confusion().begin(), run.result.confusion().end(), int64_t{0}),
      200);
  ASSERT_EQ(run.curve.size(), 2u);
  EXPECT_DOUBLE_EQ(run.curve[1].epoch(), 2.0);  // 500 / 32 -> 16 iterations per epoch
}

TEST(TrainerTest, LogisticRegressionAndSquaredErrorLearn) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_model()->clear_conv();
  c.mutable_model()->clear_dense();
  EXPECT_GT(MustTrain(c).result.final_test_accuracy(), 0.85);
  c = SmallConfig();
  c.mutable_train()->set_loss("squared_error");
  c.mutable_model()->set_activation("tanh");
  c.mutable_train()->set_lr(0.02);
  EXPECT_GT(MustTrain(c).result.final_test_accuracy(), 0.85);
}

TEST(TrainerTest, ModelTooDeepForTheImageIsInvalidArgument) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_model()->add_conv(8);
  c.mutable_model()->add_conv(8);
  c.mutable_model()->set_kernel(5);
  auto result = Train(c, Synthetic(), nullptr);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("model.conv"));
}

TEST(TrainerTest, MalformedDatasetIsInvalidArgumentNotACrash) {
  Dataset empty;
  EXPECT_EQ(Train(SmallConfig(), empty, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  Dataset mismatched = Synthetic();
  mismatched.train_images.resize(10);
  EXPECT_EQ(Train(SmallConfig(), mismatched, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TrainerTest, InvalidConfigIsRejectedBeforeTraining) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_precision()->mutable_default_()->set_format("mask:40");
  auto result = Train(c, Synthetic(), nullptr);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("precision.default.format"));
}

}  // namespace
}  // namespace bitsweep::trainer
