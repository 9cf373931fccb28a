// Bitwise reproducibility across thread counts, and the trainer features whose results must not
// depend on the partition: the accumulator site, per-layer precision, precision schedules,
// per-layer kernels and the per-layer gradient measurements.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/trainer/train_run.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;

// train_run.h's two-conv network (every op, every per-example / per-group split), 30 iterations.
v1::TrialConfig SmallConfig() { return TwoConvTwoDenseConfig(30); }

v1::TrialConfig QuantizedConfig() {
  v1::TrialConfig c = SmallConfig();
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format("mask:12");
  p->mutable_default_()->set_rounding("stochastic");
  p->add_sites("gradients");
  return c;
}

void ExpectSameForAnyThreadCount(const v1::TrialConfig& config) {
  const TrainRun one = MustTrain(config, WithThreads(1));
  ASSERT_EQ(one.curve.size(), 3u);
  for (int threads : {2, 3}) {
    EXPECT_EQ(ComparableBytes(MustTrain(config, WithThreads(threads))), ComparableBytes(one))
        << threads << " threads";
  }
}

TEST(DeterminismTest, Fp32IsBitwiseTheSameForOneTwoAndThreeThreads) {
  ExpectSameForAnyThreadCount(SmallConfig());
}

TEST(DeterminismTest, StochasticQuantisationIsBitwiseTheSameForAnyThreadCount) {
  ExpectSameForAnyThreadCount(QuantizedConfig());
}

TEST(DeterminismTest, AccumulatorEmulationIsBitwiseTheSameForAnyThreadCount) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_train()->set_iterations(6);
  c.mutable_train()->set_eval_every(2);
  c.mutable_dataset()->set_test_limit(20);
  c.mutable_precision()->add_sites("accumulator");
  c.mutable_precision()->mutable_accumulator()->set_format("fp16");
  c.mutable_precision()->mutable_accumulator()->set_rounding("stochastic");
  c.mutable_precision()->set_accumulator_chunk(16);
  ExpectSameForAnyThreadCount(c);
}

TEST(AccumulatorTest, Fp32AccumulatorIsThePlainKernel) {
  v1::TrialConfig with = SmallConfig();
  with.mutable_precision()->add_sites("accumulator");
  with.mutable_precision()->mutable_accumulator()->set_format("fp32");
  EXPECT_EQ(ComparableBytes(MustTrain(with, WithThreads(1))),
            ComparableBytes(MustTrain(SmallConfig(), WithThreads(1))));
}

TEST(AccumulatorTest, Bf16AccumulatorChangesTheCurveButStillLearns) {
  v1::TrialConfig c = SmallConfig();
  c.mutable_train()->set_iterations(10);
  c.mutable_train()->set_eval_every(10);
  c.mutable_precision()->add_sites("accumulator");
  c.mutable_precision()->mutable_accumulator()->set_format("float:8,10");
  v1::TrialConfig plain = SmallConfig();
  plain.mutable_train()->set_iterations(10);
  plain.mutable_train()->set_eval_every(10);
  const TrainRun a = MustTrain(c, WithThreads(2)), b = MustTrain(plain, WithThreads(2));
  EXPECT_NE(a.curve.back().train_loss(), b.curve.back().train_loss());
  EXPECT_NEAR(a.curve.back().train_loss(), b.curve.back().train_loss(), 0.5);
}

TEST(LayerStatsTest, EveryPointHasOneEntryPerParameterLayer) {
  const TrainRun run = MustTrain(QuantizedConfig(), WithThreads(1));
  ASSERT_FALSE(run.curve.empty());
  for (const v1::CurvePoint& p : run.curve) {
    ASSERT_EQ(p.layers_size(), 5);
    EXPECT_EQ(p.layers(0).layer(), "conv0");
    EXPECT_EQ(p.layers(1).layer(), "conv1");
    EXPECT_EQ(p.layers(2).layer(), "dense0");
    EXPECT_EQ(p.layers(3).layer(), "dense1");
    EXPECT_EQ(p.layers(4).layer(), "output");
    for (const v1::LayerStats& l : p.layers()) {
      EXPECT_GT(l.gradient_norm(), 0) << l.layer();
      EXPECT_GE(l.flushed_to_zero(), 0) << l.layer();
      EXPECT_LE(l.flushed_to_zero(), 1) << l.layer();
    }
  }
  // fp32 gradients: nothing is flushed.
  const TrainRun fp32 = MustTrain(SmallConfig(), WithThreads(1));
  for (const v1::LayerStats& l : fp32.curve[0].layers()) {
    EXPECT_EQ(l.flushed_to_zero(), 0) << l.layer();
  }
  // A coarse fixed-point gradient format flushes most small gradients to zero.
  v1::TrialConfig coarse = QuantizedConfig();
  coarse.mutable_precision()->mutable_gradients()->set_format("fixed:8,1");
  coarse.mutable_precision()->mutable_gradients()->set_rounding("nearest");
  const TrainRun c = MustTrain(coarse, WithThreads(1));
  EXPECT_GT(c.curve[0].layers(0).flushed_to_zero(), 0.5);
}

TEST(ScheduleTest, SwitchingToFp32AfterAnIterationMatchesFp32FromThereOnlyInPrecision) {
  // mask:9 truncation throughout vs. switching to fp32 after 10 iterations and back to mask:9
  // after 20: the switched run differs from both constant runs.
  v1::TrialConfig low = SmallConfig();
  low.mutable_precision()->mutable_default_()->set_format("mask:9");
  low.mutable_precision()->mutable_default_()->set_rounding("truncate");
  v1::TrialConfig switched = low;
  v1::PrecisionSwitch* up = switched.mutable_precision()->add_schedule();
  up->set_after_iteration(10);
  up->mutable_precision()->mutable_default_()->set_format("fp32");
  v1::PrecisionSwitch* down = switched.mutable_precision()->add_schedule();
  down->set_after_iteration(20);
  down->mutable_precision()->mutable_default_()->set_format("mask:9");
  const TrainRun a = MustTrain(low, WithThreads(1)), s = MustTrain(switched, WithThreads(2));
  ASSERT_EQ(a.curve.size(), 3u);
  ASSERT_EQ(s.curve.size(), 3u);
  // Identical until the switch (the point at iteration 10 is measured before it applies).
  EXPECT_EQ(a.curve[0].SerializeAsString(), s.curve[0].SerializeAsString());
  EXPECT_NE(a.curve[1].train_loss(), s.curve[1].train_loss());
  // Iterations 10..19 ran in fp32: their weights-site effective bits report 32.
  ASSERT_GT(s.curve[1].sites_size(), 0);
  EXPECT_EQ(s.curve[1].sites(0).effective_bits(), 32);
  EXPECT_EQ(s.curve[2].sites(0).effective_bits(), 9);
  EXPECT_EQ(ComparableBytes(MustTrain(switched, WithThreads(1))), ComparableBytes(s));
}

TEST(LayerPrecisionTest, OverridingEveryLayerToFp32GivesTheFp32Run) {
  // mask:10 truncation site-wide, but every parameter layer overridden back to fp32: every
  // application must use its layer's quantiser, so the losses are exactly the fp32 run's.
  v1::TrialConfig c = SmallConfig();
  c.mutable_precision()->mutable_default_()->set_format("mask:10");
  c.mutable_precision()->mutable_default_()->set_rounding("truncate");
  c.mutable_precision()->add_sites("gradients");
  c.mutable_precision()->add_sites("optimizer");
  for (int l = 0; l < 5; ++l)
    c.mutable_precision()->add_layers()->mutable_default_()->set_format("fp32");
  const TrainRun overridden = MustTrain(c, WithThreads(2)),
                 fp32 = MustTrain(SmallConfig(), WithThreads(1));
  ASSERT_EQ(overridden.curve.size(), fp32.curve.size());
  for (size_t i = 0; i < fp32.curve.size(); ++i) {
    EXPECT_EQ(overridden.curve[i].train_loss(), fp32.curve[i].train_loss());
    EXPECT_EQ(overridden.curve[i].test_loss(), fp32.curve[i].test_loss());
  }
  // Only the output layer overridden: the curve differs from both.
  c.mutable_precision()->clear_layers();
  for (int l = 0; l < 4; ++l) c.mutable_precision()->add_layers();
  c.mutable_precision()->add_layers()->mutable_default_()->set_format("fp32");
  const TrainRun output_only = MustTrain(c, WithThreads(1));
  EXPECT_NE(output_only.curve.back().train_loss(), fp32.curve.back().train_loss());
}

TEST(TrainerKindTest, SimulatedTrialsAreNotTrainedHere) {
  v1::TrialConfig c = SmallConfig();
  c.set_kind("simulated");
  c.mutable_simulation()->set_points(3);
  auto result = Train(c, Synthetic(), nullptr);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("simulated"));
}

}  // namespace
}  // namespace bitsweep::trainer
