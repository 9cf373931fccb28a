// The int:B quantiser, the statistics of ApplyMeasured, and the update rules of the dynamic
// formats (dynfixed: Courbariaux et al. 2014; dps: seeds/002_a5ea6972c7539976.txt Algorithm 1)
// on synthetic tensors with known overflow and error rates.
#include "worker/trainer/quant/sites.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "worker/trainer/quant/rng.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;

Quantizer Q(const char* spec, Rounding r = Rounding::kNearest) {
  return Quantizer(*ParseFormat(spec), r);
}

TEST(IntQuantizerTest, OneScalePerTensorFromItsLargestMagnitude) {
  // int:3: q in [-3, 3], s = 1/3. 0.26·3 = 0.78 -> 1; -0.5·3 = -1.5 -> -2 (ties to even).
  std::vector<float> x = {1.0f, -0.5f, 0.26f, 0.0f, -0.0f};
  Q("int:3").Apply(x.data(), 5, 0);
  EXPECT_EQ(x[0], 1.0f);
  EXPECT_EQ(x[1], static_cast<float>(-2.0 / 3));
  EXPECT_EQ(x[2], static_cast<float>(1.0 / 3));
  EXPECT_EQ(x[3], 0.0f);
  EXPECT_TRUE(std::signbit(x[4]));
}

TEST(IntQuantizerTest, EveryValueIsAnIntegerMultipleOfTheScaleForEveryRounding) {
  for (Rounding r : {Rounding::kTruncate, Rounding::kNearest, Rounding::kStochastic}) {
    CounterRng rng(11);
    std::vector<float> x(257);
    for (float& v : x) v = static_cast<float>(rng.Uniform() * 6 - 3);
    double max = 0;
    for (float v : x) max = std::max(max, std::fabs(double{v}));
    Q("int:5", r).Apply(x.data(), static_cast<int64_t>(x.size()), 3);
    const double scale = max / 15;
    for (float v : x) {
      const double k = v / scale;
      EXPECT_NEAR(k, std::round(k), 1e-4) << v;
      EXPECT_LE(std::fabs(k), 15 + 1e-4);
    }
  }
}

TEST(IntQuantizerTest, InfSaturatesNanStaysAndZeroTensorIsUnchanged) {
  std::vector<float> x = {std::numeric_limits<float>::infinity(), 2.0f,
                          std::numeric_limits<float>::quiet_NaN()};
  Q("int:8").Apply(x.data(), 3, 0);
  EXPECT_EQ(x[0], 2.0f);
  EXPECT_EQ(x[1], 2.0f);
  EXPECT_TRUE(std::isnan(x[2]));
  std::vector<float> z = {0.0f, 0.0f};
  Q("int:8").Apply(z.data(), 2, 0);
  EXPECT_EQ(z, (std::vector<float>{0.0f, 0.0f}));
}

TEST(ApplyMeasuredTest, GivesBitwiseTheResultOfApply) {
  for (const char* spec : {"fp16", "mask:12", "fixed:10,6", "int:6", "fp8e4m3"}) {
    for (Rounding r : {Rounding::kTruncate, Rounding::kNearest, Rounding::kStochastic}) {
      CounterRng rng(7);
      std::vector<float> a(301);
      for (float& v : a) v = static_cast<float>((rng.Uniform() - 0.5) * 40);
      std::vector<float> b = a;
      Q(spec, r).Apply(a.data(), 301, 99);
      QuantStats stats;
      Q(spec, r).ApplyMeasured(b.data(), 301, 99, &stats);
      EXPECT_EQ(a, b) << spec;
      EXPECT_EQ(stats.values, 301);
    }
  }
}

TEST(ApplyMeasuredTest, CountsOverflowsAndAveragePercentError) {
  // fixed:8,4: range [-8, 7.9375]; one integer bit fewer (fixed:8,5): [-4, 3.96875].
  std::vector<float> x = {10.0f, -9.0f, 1.0f, 0.5f, 5.0f, 0.0f};
  QuantStats s;
  Q("fixed:8,4").ApplyMeasured(x.data(), 6, 0, &s);
  EXPECT_EQ(s.values, 6);
  EXPECT_EQ(s.nonzero, 5);
  EXPECT_EQ(s.overflows, 2);
  EXPECT_EQ(s.overflows_one_less, 3);
  EXPECT_NEAR(s.error_percent(), (100 * 2.0625 / 10 + 100.0 / 9) / 5, 1e-9);
  EXPECT_DOUBLE_EQ(s.effective_bits(), 8);
}

DynamicOptions Options() {
  DynamicOptions o;
  o.max_overflow_rate = 1e-4;  // 0.01%
  o.max_error_percent = 0.01;
  o.min_integer_bits = 2;
  o.max_integer_bits = 12;
  o.min_frac_bits = 2;
  o.max_frac_bits = 20;
  return o;
}

TEST(DynFixedTest, FirstUseFitsTheMaxThenFollowsCourbariauxRule) {
  SiteQuantizer q(*ParseFormat("dynfixed:8"), Rounding::kNearest, Options());
  std::vector<float> x = {3.0f, 1.1f, -0.7f, 0.01f};
  q.Apply(0, x.data(), 4, 0);
  // max 3 < 2^2: IL = 3 (sign included), FL = 5.
  EXPECT_EQ(q.dynfixed_frac_bits(0), 5);
  for (float v : x) EXPECT_EQ(v * 32, std::round(v * 32)) << v;
  // No overflow at IL 3, but IL 2 ([-2, 2)) would overflow 3.0: kept.
  q.EndIteration();
  EXPECT_EQ(q.dynfixed_frac_bits(0), 5);
  // Small values: IL 2 would hold them too: IL lowered, FL raised.
  std::vector<float> small = {0.5f, -0.25f, 1.0f};
  q.Apply(0, small.data(), 3, 0);
  q.EndIteration();
  EXPECT_EQ(q.dynfixed_frac_bits(0), 6);
  // 1 value in 100 overflows (1% > 0.01%): IL raised.
  std::vector<float> big(100, 0.1f);
  big[7] = 100.0f;
  q.Apply(0, big.data(), 100, 0);
  q.EndIteration();
  EXPECT_EQ(q.dynfixed_frac_bits(0), 5);
  // Another tensor of the same site has its own state.
  std::vector<float> other = {0.001f};
  q.Apply(1, other.data(), 1, 0);
  EXPECT_EQ(q.dynfixed_frac_bits(1), 8 - (-8));  // 0.001 < 2^-9: IL = -8
  EXPECT_EQ(q.dynfixed_frac_bits(0), 5);
}

TEST(DpsTest, AlgorithmOneMovesIlByOverflowAndFlByError) {
  SiteQuantizer q(*ParseFormat("dps:4,8"), Rounding::kNearest, Options());
  // Overflow (20 > 8) and error above 0.01% (0.001 is not a multiple of 2^-8): IL+1, FL+1.
  std::vector<float> x = {20.0f, 0.001f, 0.5f};
  q.Apply(0, x.data(), 3, 0);
  EXPECT_EQ(x[0], 8.0f - 1.0f / 256);  // saturated to the range of ⟨4, 8⟩
  q.EndIteration();
  EXPECT_EQ(q.dps_integer_bits(), 5);
  EXPECT_EQ(q.dps_frac_bits(), 9);
  // Values exactly on the grid, all tensors of the site pooled: no overflow, no error: IL-1,
  // FL-1.
  std::vector<float> a = {0.5f, 1.25f}, b = {-2.0f};
  q.Apply(0, a.data(), 2, 0);
  q.Apply(3, b.data(), 1, 0);
  q.EndIteration();
  EXPECT_EQ(q.dps_integer_bits(), 4);
  EXPECT_EQ(q.dps_frac_bits(), 8);
  EXPECT_DOUBLE_EQ(q.last_iteration().effective_bits(), 14);  // ⟨5, 9⟩ during that iteration
  // An iteration without applications changes nothing; bounds clamp.
  q.EndIteration();
  EXPECT_EQ(q.dps_integer_bits(), 4);
  for (int i = 0; i < 10; ++i) {
    std::vector<float> zero = {0.0f};
    q.Apply(0, zero.data(), 1, 0);
    q.EndIteration();
  }
  EXPECT_EQ(q.dps_integer_bits(), 2);
  EXPECT_EQ(q.dps_frac_bits(), 2);
}

TEST(DpsTest, ASiteQuantizerBuiltFromAQuantizerStartsAtTheSpec) {
  SiteQuantizer q(Q("dps:3,5"));
  EXPECT_EQ(q.dps_integer_bits(), 3);
  EXPECT_EQ(q.dps_frac_bits(), 5);
  std::vector<float> x = {1.0f / 64};  // below half a step of 2^-5: rounds to 0
  q.Apply(0, x.data(), 1, 0);
  EXPECT_EQ(x[0], 0.0f);
}

TEST(DpsTest, ErrorRateJustAboveAndBelowEmax) {
  // FL = 8 (step 1/256): x = 1 + 1/1024 rounds to 1: error 0.0976% > 0.01% -> FL+1.
  // With E_max = 0.1%, the same error lowers FL.
  for (double emax : {0.01, 0.1}) {
    DynamicOptions o = Options();
    o.max_error_percent = emax;
    SiteQuantizer q(*ParseFormat("dps:4,8"), Rounding::kNearest, o);
    std::vector<float> x = {1.0f + 1.0f / 1024};
    q.Apply(0, x.data(), 1, 0);
    q.EndIteration();
    EXPECT_EQ(q.dps_frac_bits(), emax == 0.01 ? 9 : 7) << emax;
  }
}

TEST(SaturationMaskTest, MarksExactlyTheValuesOutsideTheRangeOfTheFormatInUse) {
  // fixed:8,4: [-8, 8 - 1/16]. 7.9375 is the top of the range (kept), 7.97 lies above it (it
  // rounds to the top: saturated, as QuantStats counts it); -8 is representable.
  SiteQuantizer fixed(Q("fixed:8,4"));
  std::vector<float> x = {7.9375f,
                          7.97f,
                          -8.0f,
                          -8.01f,
                          100.0f,
                          0.3f,
                          std::numeric_limits<float>::quiet_NaN(),
                          -std::numeric_limits<float>::infinity()};
  std::vector<uint8_t> sat(x.size(), 7);
  fixed.Apply(0, x.data(), static_cast<int64_t>(x.size()), 0, sat.data());
  EXPECT_THAT(sat, ::testing::ElementsAre(0, 1, 0, 1, 1, 0, 0, 1));
  EXPECT_EQ(x[4], 7.9375f);

  // dps: the range of the current ⟨IL, FL⟩, which moves with Algorithm 1.
  SiteQuantizer dps(*ParseFormat("dps:3,4"), Rounding::kNearest, Options());
  std::vector<float> y = {3.0f, 5.0f};  // ⟨3, 4⟩: [-4, 4 - 1/16]
  std::vector<uint8_t> s2(2);
  dps.Apply(0, y.data(), 2, 0, s2.data());
  EXPECT_THAT(s2, ::testing::ElementsAre(0, 1));
  dps.EndIteration();  // overflow: IL 4, range [-8, 8)
  y = {3.0f, 5.0f};
  dps.Apply(0, y.data(), 2, 0, s2.data());
  EXPECT_THAT(s2, ::testing::ElementsAre(0, 0));

  // Floats saturate only beyond max finite (fp16: 65504); fp32 and int:B never.
  for (const char* spec : {"fp16", "fp32", "int:4"}) {
    SiteQuantizer q(Q(spec));
    std::vector<float> z = {65504.0f, 70000.0f, -1e30f};
    std::vector<uint8_t> s3(3);
    q.Apply(0, z.data(), 3, 0, s3.data());
    const bool fp16 = std::string(spec) == "fp16";
    EXPECT_THAT(s3, ::testing::ElementsAre(0, fp16, fp16)) << spec;
  }
}

TEST(SitePrecisionTest, OverridesReplaceTheDefaultPerSite) {
  v1::PrecisionConfig p = DefaultTrialConfig().precision();
  p.mutable_default_()->set_format("fp16");
  p.add_sites("gradients");
  p.add_sites("optimizer");
  p.mutable_gradients()->set_format("fixed:16,12");
  p.mutable_optimizer()->set_rounding("stochastic");
  auto sites = MakeSitePrecision(p);
  ASSERT_TRUE(sites.ok()) << sites.status();
  EXPECT_EQ(sites->weights.format().ToString(), "float:5,10");
  EXPECT_EQ(sites->gradients.format().ToString(), "fixed:16,12");
  EXPECT_EQ(sites->optimizer.format().ToString(), "float:5,10");
  EXPECT_EQ(sites->listed.size(), 5u);
  p.clear_sites();
  auto bad = MakeSitePrecision(p);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("not listed in precision.sites"));
}

TEST(SitePrecisionTest, AccumulatorTakesStaticFormatsOnly) {
  v1::PrecisionConfig p = DefaultTrialConfig().precision();
  p.add_sites("accumulator");
  p.mutable_accumulator()->set_format("fp16");
  p.set_accumulator_chunk(64);
  auto s = MakeSitePrecision(p);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_NE(s->AccumulatorFor(0), nullptr);
  EXPECT_EQ(s->AccumulatorFor(0)->format().ToString(), "float:5,10");
  EXPECT_EQ(s->accumulator_chunk, 64);
  p.mutable_accumulator()->set_format("dps:8,8");
  s = MakeSitePrecision(p);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("precision.accumulator.format: 'dps:8,8' cannot be an accumulator"));
  p.mutable_accumulator()->set_format("fp32");
  s = MakeSitePrecision(p);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->AccumulatorFor(0), nullptr);  // fp32: the plain GEMM
  p.set_accumulator_chunk(-1);
  EXPECT_THAT(std::string(MakeSitePrecision(p).status().message()),
              HasSubstr("precision.accumulator_chunk"));
}

TEST(SitePrecisionTest, LayerOverridesReplaceTheSiteFormatOfThatLayerOnly) {
  v1::PrecisionConfig p = DefaultTrialConfig().precision();  // weights, activations, errors
  p.mutable_default_()->set_format("fixed:16,8");
  p.add_layers();                                             // layer 0: inherits
  p.add_layers()->mutable_default_()->set_format("mask:12");  // layer 1: every listed site
  v1::LayerPrecision* l2 = p.add_layers();
  l2->mutable_default_()->set_format("mask:16");
  l2->mutable_weights()->set_format("fp16");  // the site's own beats the layer default
  l2->mutable_weights()->set_rounding("stochastic");
  auto s = MakeSitePrecision(p, 3);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->For(Site::kWeights, 0).format().ToString(), "fixed:16,8");
  EXPECT_EQ(s->For(Site::kActivations, 1).format().ToString(), "mask:12");
  EXPECT_EQ(s->For(Site::kErrors, 2).format().ToString(), "mask:16");
  EXPECT_EQ(s->For(Site::kWeights, 2).format().ToString(), "float:5,10");
  EXPECT_EQ(s->For(Site::kWeights, 2).format().ToString(), "float:5,10");
  EXPECT_EQ(s->For(Site::kWeights, 7).format().ToString(), "fixed:16,8");  // beyond: site-wide
  EXPECT_EQ(s->all().size(), 5u + 3 + 3);  // the sites, then layer 1's and layer 2's three

  auto too_many = MakeSitePrecision(p, 2);
  EXPECT_THAT(std::string(too_many.status().message()),
              HasSubstr("precision.layers: 3 entries but the model has 2 parameter layers"));
  l2->mutable_gradients()->set_format("fp16");
  EXPECT_THAT(std::string(MakeSitePrecision(p, 3).status().message()),
              HasSubstr("precision.layers[2].gradients: set, but 'gradients' is not listed"));
  l2->mutable_gradients()->clear_format();
  l2->mutable_errors()->set_format("mask:40");
  EXPECT_THAT(std::string(MakeSitePrecision(p, 3).status().message()),
              HasSubstr("precision.layers[2].errors.format: "));
}

TEST(SitePrecisionTest, ScheduleMergesSwitchesInOrderAndChecksThem) {
  v1::PrecisionConfig p = DefaultTrialConfig().precision();
  p.mutable_default_()->set_format("mask:12");
  v1::PrecisionSwitch* up = p.add_schedule();
  up->set_after_iteration(100);
  up->mutable_precision()->mutable_default_()->set_format("fp32");
  v1::PrecisionSwitch* down = p.add_schedule();
  down->set_after_iteration(200);
  down->mutable_precision()->mutable_default_()->set_format("mask:10");
  down->mutable_precision()->mutable_default_()->set_rounding("stochastic");
  auto schedule = PrecisionSchedule(p);
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  ASSERT_EQ(schedule->size(), 3u);
  EXPECT_EQ((*schedule)[0].from_iteration, 0);
  EXPECT_EQ((*schedule)[0].config.default_().format(), "mask:12");
  EXPECT_EQ((*schedule)[1].from_iteration, 100);
  EXPECT_EQ((*schedule)[1].config.default_().format(), "fp32");
  EXPECT_EQ((*schedule)[1].config.default_().rounding(), "nearest");
  EXPECT_EQ((*schedule)[2].config.default_().format(), "mask:10");
  EXPECT_EQ((*schedule)[2].config.default_().rounding(), "stochastic");
  EXPECT_EQ((*schedule)[2].config.sites_size(), 3);  // unset fields are kept

  down->set_after_iteration(100);
  EXPECT_THAT(std::string(PrecisionSchedule(p).status().message()),
              HasSubstr("precision.schedule[1].after_iteration: 100 must be greater"));
  down->set_after_iteration(200);
  down->mutable_precision()->mutable_default_()->set_format("mask:99");
  EXPECT_THAT(std::string(PrecisionSchedule(p).status().message()),
              HasSubstr("precision.schedule[1]: precision.default.format"));
}

}  // namespace
}  // namespace bitsweep::trainer
