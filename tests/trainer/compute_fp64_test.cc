// train.compute fp64 (seeds/004's 64-bit case): a double network trained by the same loop, so
// float32 can be judged against it. Close to the fp32 run but not equal; bitwise reproducible
// for any thread count and across checkpoint/resume; quantised sites round through float32.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "tests/trainer/train_run.h"
#include "worker/trainer/network.h"
#include "worker/trainer/quant/format.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;

// train_run.h's two-conv network, 12 iterations, in `compute`.
v1::TrialConfig SmallConfig(const char* compute) {
  v1::TrialConfig c = TwoConvTwoDenseConfig(12);
  c.mutable_train()->set_compute(compute);
  return c;
}

// Adam with master weights and stateful, stochastic precision: every part of a checkpoint.
v1::TrialConfig StatefulConfig(const char* compute) {
  v1::TrialConfig c = SmallConfig(compute);
  c.mutable_train()->set_optimizer("adam");
  c.mutable_train()->set_lr(0.01);
  c.mutable_train()->set_iterations(20);
  c.mutable_train()->set_eval_every(5);
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format("dps:8,8");
  p->mutable_default_()->set_rounding("stochastic");
  p->add_sites("gradients");
  p->add_sites("optimizer");
  p->mutable_optimizer()->set_format("dynfixed:16");
  p->set_master_weights("fp32");
  return c;
}

TEST(ComputeFp64Test, DiffersFromFp32ButAgreesWithinAThousandthInLoss) {
  const TrainRun single = MustTrain(SmallConfig("fp32"));
  const TrainRun dbl = MustTrain(SmallConfig("fp64"));
  ASSERT_EQ(single.curve.size(), 3u);
  ASSERT_EQ(dbl.curve.size(), single.curve.size());
  EXPECT_NE(ComparableBytes(dbl), ComparableBytes(single));
  bool any_loss_differs = false;
  for (size_t i = 0; i < single.curve.size(); ++i) {
    const v1::CurvePoint& a = single.curve[i];
    const v1::CurvePoint& b = dbl.curve[i];
    EXPECT_EQ(a.iteration(), b.iteration());
    EXPECT_NEAR(a.train_loss(), b.train_loss(), 1e-3) << "at iteration " << a.iteration();
    EXPECT_NEAR(a.test_loss(), b.test_loss(), 1e-3) << "at iteration " << a.iteration();
    any_loss_differs = any_loss_differs || a.train_loss() != b.train_loss();
  }
  EXPECT_TRUE(any_loss_differs);
  // The listed sites at fp32 (weights, activations, errors): float32 words, or unrounded doubles.
  ASSERT_EQ(dbl.curve.back().sites_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(single.curve.back().sites(i).effective_bits(), 32);
    EXPECT_EQ(dbl.curve.back().sites(i).effective_bits(), 64);
    EXPECT_EQ(dbl.curve.back().sites(i).quantization_error_percent(), 0);
  }
  EXPECT_GT(dbl.result.images_per_second(), 0);
  EXPECT_EQ(dbl.result.iterations(), 12);
}

TEST(ComputeFp64Test, IsBitwiseTheSameForOneTwoAndThreeThreads) {
  for (const v1::TrialConfig& config : {SmallConfig("fp64"), StatefulConfig("fp64")}) {
    TrainOptions one;
    const std::string want = ComparableBytes(MustTrain(config, one));
    for (int threads : {2, 3}) {
      TrainOptions options;
      options.threads = threads;
      EXPECT_EQ(ComparableBytes(MustTrain(config, options)), want) << threads << " threads";
    }
  }
}

TEST(ComputeFp64Test, ResumeFromEveryCheckpoint_GivesTheUninterruptedRun) {
  const v1::TrialConfig config = StatefulConfig("fp64");
  TrainOptions options;
  options.checkpoint_every = 1;
  const TrainRun full = MustTrain(config, options);
  ASSERT_EQ(full.checkpoints.size(), 4u);
  for (size_t i = 0; i + 1 < full.checkpoints.size(); ++i) {
    TrainOptions resume;
    resume.resume_from = full.checkpoints[i].second;
    resume.threads = 2;
    const TrainRun rest = MustTrain(config, resume);
    SCOPED_TRACE(testing::Message() << "resumed from " << full.checkpoints[i].first);
    ASSERT_EQ(rest.curve.size(), full.curve.size() - i - 1);
    for (size_t j = 0; j < rest.curve.size(); ++j) {
      EXPECT_EQ(rest.curve[j].SerializeAsString(), full.curve[i + 1 + j].SerializeAsString());
    }
    TrainRun tail = full;
    tail.curve.clear();
    TrainRun rest_tail = rest;
    rest_tail.curve.clear();
    EXPECT_EQ(ComparableBytes(rest_tail), ComparableBytes(tail));
  }
}

TEST(ComputeFp64Test, CheckpointOfTheOtherComputeIsRefusedNamingBoth) {
  TrainOptions options;
  options.checkpoint_every = 1;
  const TrainRun single = MustTrain(SmallConfig("fp32"), options);
  const TrainRun dbl = MustTrain(SmallConfig("fp64"), options);
  ASSERT_FALSE(single.checkpoints.empty());
  ASSERT_FALSE(dbl.checkpoints.empty());
  // The fp64 checkpoint is twice the size: the parameters are stored as doubles.
  EXPECT_GT(dbl.checkpoints[0].second.size(), single.checkpoints[0].second.size() * 3 / 2);

  TrainOptions resume;
  resume.resume_from = single.checkpoints[0].second;
  auto as_fp64 = Train(SmallConfig("fp64"), Synthetic(), nullptr, resume);
  EXPECT_EQ(as_fp64.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(as_fp64.status().message(),
              HasSubstr("checkpoint: taken by a train.compute fp32 trial"));
  EXPECT_THAT(as_fp64.status().message(), HasSubstr("computes in fp64"));

  resume.resume_from = dbl.checkpoints[0].second;
  auto as_fp32 = Train(SmallConfig("fp32"), Synthetic(), nullptr, resume);
  EXPECT_EQ(as_fp32.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(as_fp32.status().message(),
              HasSubstr("checkpoint: taken by a train.compute fp64 trial"));
  EXPECT_EQ(*CheckpointIteration(dbl.checkpoints[0].second), 4);
}

TEST(ComputeFp64Test, QuantisedSitesTrainAndAreMeasured) {
  v1::TrialConfig c = SmallConfig("fp64");
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format("mask:12");
  p->mutable_default_()->set_rounding("stochastic");
  p->clear_sites();
  p->add_sites("gradients");
  p->add_sites("activations");
  const TrainRun run = MustTrain(c);
  ASSERT_EQ(run.curve.size(), 3u);
  ASSERT_EQ(run.curve.back().sites_size(), 2);
  for (const v1::SiteStats& s : run.curve.back().sites()) {
    EXPECT_GT(s.effective_bits(), 0) << s.site();
    EXPECT_LE(s.effective_bits(), 12) << s.site();
    EXPECT_GT(s.quantization_error_percent(), 0) << s.site();
  }
  EXPECT_NE(ComparableBytes(run), ComparableBytes(MustTrain(SmallConfig("fp64"))));
}

v1::ModelConfig TinyModel() {
  v1::ModelConfig m = DefaultTrialConfig().model();
  m.clear_conv();
  m.add_conv(3);
  m.set_kernel(3);
  m.set_pool(2);
  m.clear_dense();
  m.add_dense(8);
  return m;
}

TEST(ComputeFp64NetworkTest, StartsFromTheFloatNetworksWeightsAndComputesInDouble) {
  auto single = Network::Create(TinyModel(), 1, 8, 8, 4, 2, 42);
  auto dbl = BasicNetwork<double>::Create(TinyModel(), 1, 8, 8, 4, 2, 42);
  ASSERT_TRUE(single.ok() && dbl.ok());
  ASSERT_EQ((*dbl)->params().size(), (*single)->params().size());
  for (size_t i = 0; i < (*dbl)->params().size(); ++i) {
    const std::vector<float>& f = (*single)->params()[i].value;
    const std::vector<double>& d = (*dbl)->params()[i].value;
    ASSERT_EQ(d.size(), f.size());
    for (size_t j = 0; j < f.size(); ++j) ASSERT_EQ(d[j], static_cast<double>(f[j])) << i;
  }
  std::vector<float> xf(2 * 64);
  for (size_t i = 0; i < xf.size(); ++i) xf[i] = static_cast<float>((i * 37 % 64) / 64.0);
  const std::vector<double> xd(xf.begin(), xf.end());
  SitePrecision fp32;
  const float* lf = (*single)->Forward(xf.data(), 2, fp32, 1);
  const double* ld = (*dbl)->Forward(xd.data(), 2, fp32, 1);
  bool beyond_float = false;
  for (int i = 0; i < 8; ++i) {
    EXPECT_NEAR(ld[i], lf[i], 1e-5);
    beyond_float = beyond_float || ld[i] != static_cast<double>(static_cast<float>(ld[i]));
  }
  EXPECT_TRUE(beyond_float) << "the double network's logits are all float32 values";
}

TEST(ComputeFp64NetworkTest, Fp32SiteKeepsTheDoubleAndOtherFormatsRoundThroughFloat32) {
  const std::vector<double> x = {0.1, -1.0 / 3, 1e-300, 12345.678901234};
  std::vector<double> kept = x;
  SiteQuantizer none;
  ApplyQuantizer(none, 0, kept.data(), 4, 0);
  EXPECT_EQ(kept, x);

  SiteQuantizer mask(Quantizer(*ParseFormat("mask:12"), Rounding::kNearest));
  std::vector<double> rounded = x;
  ApplyQuantizer(mask, 0, rounded.data(), 4, 0);
  const Quantizer q(*ParseFormat("mask:12"), Rounding::kNearest);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(rounded[i], static_cast<double>(q.QuantizeOne(static_cast<float>(x[i]), 0))) << i;
  }
}

}  // namespace
}  // namespace bitsweep::trainer
