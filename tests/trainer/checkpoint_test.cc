// Trainer checkpoints: a run resumed from any checkpoint ends bitwise like the uninterrupted run;
// bad checkpoints are rejected with a clear error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/trainer/train_run.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;

// Small and short: every checkpoint of the run can be resumed from within a second or two.
v1::TrialConfig ShortConfig() {
  v1::TrialConfig c = DefaultTrialConfig();
  c.mutable_dataset()->set_name("synthetic");
  c.mutable_dataset()->set_train_limit(200);
  c.mutable_dataset()->set_test_limit(100);
  v1::ModelConfig* m = c.mutable_model();
  m->clear_conv();
  m->add_conv(4);
  m->set_kernel(3);
  m->set_pool(2);
  m->clear_dense();
  m->add_dense(16);
  c.mutable_train()->set_batch_size(16);  // 13 iterations per epoch: resumes land mid-epoch
  c.mutable_train()->set_iterations(40);
  c.mutable_train()->set_eval_every(5);
  c.mutable_train()->set_target_accuracy(0.5);
  c.set_seed(11);
  return c;
}

// Adam with fp32 master weights and every stateful precision: dps (per-site IL/FL), dynfixed
// (per-tensor FL) and stochastic rounding.
v1::TrialConfig StatefulConfig() {
  v1::TrialConfig c = ShortConfig();
  c.mutable_train()->set_optimizer("adam");
  c.mutable_train()->set_lr(0.01);
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format("dps:8,8");
  p->mutable_default_()->set_rounding("stochastic");
  p->clear_sites();
  for (const char* site : {"weights", "activations", "errors", "gradients", "optimizer"}) {
    p->add_sites(site);
  }
  p->mutable_gradients()->set_format("dynfixed:16");
  p->mutable_optimizer()->set_format("dynfixed:16");
  p->set_master_weights("fp32");
  return c;
}

void ExpectResumesMatch(const v1::TrialConfig& config) {
  TrainOptions options;
  options.checkpoint_every = 1;
  const TrainRun full = MustTrain(config, options);
  ASSERT_EQ(full.curve.size(), 8u);
  ASSERT_EQ(full.checkpoints.size(), 8u);  // one per evaluation, the last one included
  for (size_t i = 0; i < full.checkpoints.size(); ++i) {
    const auto& [iteration, state] = full.checkpoints[i];
    EXPECT_EQ(iteration, full.curve[i].iteration());
    auto at = CheckpointIteration(state);
    ASSERT_TRUE(at.ok()) << at.status();
    EXPECT_EQ(*at, iteration);

    TrainOptions resume;
    resume.resume_from = state;
    resume.checkpoint_every = 1;
    const TrainRun rest = MustTrain(config, resume);
    SCOPED_TRACE(testing::Message() << "resumed from iteration " << iteration);
    ASSERT_EQ(rest.curve.size(), full.curve.size() - i - 1);
    for (size_t j = 0; j < rest.curve.size(); ++j) {
      EXPECT_EQ(rest.curve[j].SerializeAsString(), full.curve[i + 1 + j].SerializeAsString())
          << "point at iteration " << rest.curve[j].iteration();
    }
    EXPECT_EQ(ComparableResult(rest.result), ComparableResult(full.result));
    // The resumed run's own checkpoints are those of the uninterrupted run.
    ASSERT_EQ(rest.checkpoints.size(), full.checkpoints.size() - i - 1);
    for (size_t j = 0; j < rest.checkpoints.size(); ++j) {
      EXPECT_EQ(rest.checkpoints[j].first, full.checkpoints[i + 1 + j].first);
    }
  }
}

TEST(CheckpointTest, ResumeFromEveryCheckpoint_GivesTheUninterruptedRunFp32Momentum) {
  ExpectResumesMatch(ShortConfig());
}

TEST(CheckpointTest, ResumeFromEveryCheckpoint_GivesTheUninterruptedRunWithDynamicPrecision) {
  ExpectResumesMatch(StatefulConfig());
}

TEST(CheckpointTest, CheckpointEveryN_TakesEveryNthEvaluation) {
  TrainOptions options;
  options.checkpoint_every = 3;
  const TrainRun run = MustTrain(ShortConfig(), options);
  ASSERT_EQ(run.checkpoints.size(), 2u);
  EXPECT_EQ(run.checkpoints[0].first, 15);
  EXPECT_EQ(run.checkpoints[1].first, 30);
}

TEST(CheckpointTest, ResumeWithAnotherConfig_IsInvalidArgument) {
  TrainOptions options;
  options.checkpoint_every = 1;
  const TrainRun run = MustTrain(ShortConfig(), options);
  ASSERT_FALSE(run.checkpoints.empty());
  v1::TrialConfig other = ShortConfig();
  other.set_seed(12);
  TrainOptions resume;
  resume.resume_from = run.checkpoints[0].second;
  auto result = Train(other, Synthetic(), nullptr, resume);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("another trial config"));
}

TEST(CheckpointTest, TruncatedCorruptOrForeignCheckpoints_AreRejectedClearly) {
  TrainOptions options;
  options.checkpoint_every = 1;
  const TrainRun run = MustTrain(ShortConfig(), options);
  ASSERT_FALSE(run.checkpoints.empty());
  const std::string& good = run.checkpoints[0].second;

  auto expect_rejected = [](const std::string& state, const std::string& why) {
    auto at = CheckpointIteration(state);
    EXPECT_EQ(at.status().code(), absl::StatusCode::kInvalidArgument) << why;
    EXPECT_THAT(at.status().message(), HasSubstr("checkpoint: ")) << why;
    TrainOptions resume;
    resume.resume_from = state;
    auto result = Train(ShortConfig(), Synthetic(), nullptr, resume);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << why;
  };
  expect_rejected("hello", "garbage");
  expect_rejected(std::string(1000, '\0'), "zeros");
  for (size_t cut : {size_t{1}, size_t{8}, good.size() / 2, good.size() - 8}) {
    expect_rejected(good.substr(0, good.size() - cut), "truncated");
  }
  expect_rejected(good + "x", "padded");
  for (size_t pos : {size_t{3}, size_t{9}, size_t{14}, good.size() / 3, good.size() - 1}) {
    std::string flipped = good;
    flipped[pos] = static_cast<char>(flipped[pos] ^ 0x10);
    expect_rejected(flipped, "flipped byte");
  }
  auto truncated = CheckpointIteration(good.substr(0, good.size() - 100));
  EXPECT_THAT(truncated.status().message(), HasSubstr("truncated"));
  std::string flipped = good;
  flipped[good.size() / 2] ^= 1;
  EXPECT_THAT(CheckpointIteration(flipped).status().message(), HasSubstr("corrupt"));
  EXPECT_THAT(CheckpointIteration("not a checkpoint at all, really").status().message(),
              HasSubstr("not a bitsweep trainer checkpoint"));
}

TEST(CheckpointTest, ShouldStop_CancelsWithinAnIteration) {
  TrainOptions options;
  int polls = 0;
  options.should_stop = [&polls] { return ++polls > 7; };
  std::vector<v1::CurvePoint> curve;
  auto result = Train(
      ShortConfig(), Synthetic(),
      [&curve](const v1::CurvePoint& p) {
        curve.push_back(p);
        return true;
      },
      options);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(result.status().message(), HasSubstr("iteration 7"));
  EXPECT_EQ(curve.size(), 1u);  // the point at iteration 5
}

}  // namespace
}  // namespace bitsweep::trainer
