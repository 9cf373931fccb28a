// The update rules of the dynamic formats (quant/sites.h) on synthetic tensors whose overflow
// rate and quantisation error are known in advance:
//   dps:IL,FL   seeds/002_a5ea6972c7539976.txt, Algorithm 1 (IL by R vs R_max, FL by E vs E_max)
//   dynfixed:WL Courbariaux et al. 2014 (IL up on overflow, kept if one fewer would overflow,
//               else down).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "worker/trainer/quant/sites.h"

namespace bitsweep::trainer {
namespace {

Format F(const char* spec) {
  auto f = ParseFormat(spec);
  EXPECT_TRUE(f.ok()) << spec;
  return *f;
}

DynamicOptions Options() {
  DynamicOptions o;
  o.max_overflow_rate = 1e-4;  // seed 002: R_max = 0.01%
  o.max_error_percent = 0.01;  // E_max = 0.01%
  return o;
}

// n values equal to `value`, of which the first `outliers` are `outlier` instead.
std::vector<float> Tensor(int n, float value, int outliers, float outlier) {
  std::vector<float> v(n, value);
  for (int i = 0; i < outliers; ++i) v[i] = outlier;
  return v;
}

void Apply(SiteQuantizer& q, int tensor, std::vector<float> v) {
  q.Apply(tensor, v.data(), static_cast<int64_t>(v.size()), 1);
}

// --- dps ------------------------------------------------------------------------------------

TEST(DpsRuleTest, OverflowRateAboveRmaxAddsAnIntegerBit) {
  // dps:4,4: range [-8, 8 - 1/16]. 2 of 10000 values overflow: R = 0.02% > 0.01%.
  SiteQuantizer q(F("dps:4,4"), Rounding::kNearest, Options());
  Apply(q, 0, Tensor(10000, 1.0f, 2, 100.0f));
  q.EndIteration();
  EXPECT_EQ(q.dps_integer_bits(), 5);
  EXPECT_EQ(q.last_iteration().overflows, 2);
  EXPECT_DOUBLE_EQ(q.last_iteration().overflow_rate(), 2e-4);
}

TEST(DpsRuleTest, OverflowRateAtOrBelowRmaxRemovesAnIntegerBit) {
  // R = 1/10000 = R_max exactly: Algorithm 1 tests R > R_max, so IL goes down.
  SiteQuantizer q(F("dps:4,4"), Rounding::kNearest, Options());
  Apply(q, 0, Tensor(10000, 1.0f, 1, 100.0f));
  q.EndIteration();
  EXPECT_EQ(q.dps_integer_bits(), 3);
  SiteQuantizer none(F("dps:4,4"), Rounding::kNearest, Options());
  Apply(none, 0, Tensor(10000, 1.0f, 0, 0.0f));
  none.EndIteration();
  EXPECT_EQ(none.dps_integer_bits(), 3);
}

TEST(DpsRuleTest, ErrorAboveEmaxAddsAFractionalBitAndExactValuesRemoveOne) {
  // 1 + 1/32 with FL 4 (step 1/16) is a tie: error 1/33 = 3% > 0.01%: FL + 1.
  SiteQuantizer coarse(F("dps:4,4"), Rounding::kNearest, Options());
  Apply(coarse, 0, Tensor(1000, 1.03125f, 0, 0.0f));
  coarse.EndIteration();
  EXPECT_EQ(coarse.dps_frac_bits(), 5);
  EXPECT_NEAR(coarse.last_iteration().error_percent(), 100.0 / 33, 1e-9);
  // Values on the grid: E = 0 <= E_max: FL - 1.
  SiteQuantizer exact(F("dps:4,4"), Rounding::kNearest, Options());
  Apply(exact, 0, Tensor(1000, 1.0625f, 0, 0.0f));
  exact.EndIteration();
  EXPECT_EQ(exact.dps_frac_bits(), 3);
  EXPECT_EQ(exact.last_iteration().error_percent(), 0.0);
}

TEST(DpsRuleTest, ErrorIsTheAverageOverAllTensorsOfTheSite) {
  // One tensor with 1% error on 10 of 100000 values, another exact: the site's E is the mean
  // over every non-zero value, 0.001% < E_max, so FL goes down although one tensor is coarse.
  SiteQuantizer q(F("dps:8,4"), Rounding::kNearest, Options());
  Apply(q, 0, Tensor(50000, 1.0f, 10, 1.03125f));  // 10 values with error 1/33
  Apply(q, 1, Tensor(50000, 2.0f, 0, 0.0f));
  q.EndIteration();
  EXPECT_NEAR(q.last_iteration().error_percent(), 10 * (100.0 / 33) / 100000, 1e-12);
  EXPECT_EQ(q.dps_frac_bits(), 3);
  EXPECT_EQ(q.last_iteration().values, 100000);
}

TEST(DpsRuleTest, NewLengthsApplyFromTheNextIteration) {
  // After FL drops from 4 to 3 the step is 1/8, so 1.0625 (on the old grid) now rounds.
  SiteQuantizer q(F("dps:4,4"), Rounding::kTruncate, Options());
  std::vector<float> v = Tensor(100, 1.0625f, 0, 0.0f);
  q.Apply(0, v.data(), 100, 1);
  EXPECT_EQ(v[0], 1.0625f);
  q.EndIteration();
  ASSERT_EQ(q.dps_frac_bits(), 3);
  v = Tensor(100, 1.0625f, 0, 0.0f);
  q.Apply(0, v.data(), 100, 1);
  EXPECT_EQ(v[0], 1.0f);
  // And the range follows IL: IL 3 holds [-4, 4 - 1/8].
  v = Tensor(10, 100.0f, 0, 0.0f);
  q.Apply(0, v.data(), 10, 1);
  EXPECT_EQ(v[0], 3.875f);
}

TEST(DpsRuleTest, LengthsStayWithinTheConfiguredBounds) {
  DynamicOptions o = Options();
  o.min_integer_bits = 2;
  o.max_integer_bits = 5;
  o.min_frac_bits = 3;
  o.max_frac_bits = 6;
  SiteQuantizer up(F("dps:4,5"), Rounding::kNearest, o);
  for (int i = 0; i < 10; ++i) {
    Apply(up, 0, Tensor(100, 1e-3f, 50, 1000.0f));  // overflowing and inexact
    up.EndIteration();
  }
  EXPECT_EQ(up.dps_integer_bits(), 5);
  EXPECT_EQ(up.dps_frac_bits(), 6);
  SiteQuantizer down(F("dps:4,5"), Rounding::kNearest, o);
  for (int i = 0; i < 10; ++i) {
    Apply(down, 0, Tensor(100, 0.0f, 0, 0.0f));  // zeros: no overflow, no error
    down.EndIteration();
  }
  EXPECT_EQ(down.dps_integer_bits(), 2);
  EXPECT_EQ(down.dps_frac_bits(), 3);
}

TEST(DpsRuleTest, AnIterationWithoutValuesChangesNothing) {
  SiteQuantizer q(F("dps:6,7"), Rounding::kNearest, Options());
  q.EndIteration();
  EXPECT_EQ(q.dps_integer_bits(), 6);
  EXPECT_EQ(q.dps_frac_bits(), 7);
  // NaN and Inf are not values either.
  Apply(q, 0, {std::nanf(""), std::numeric_limits<float>::infinity()});
  q.EndIteration();
  EXPECT_EQ(q.dps_integer_bits(), 6);
  EXPECT_EQ(q.dps_frac_bits(), 7);
}

TEST(DpsRuleTest, ConvergesToTheSmallestIntegerLengthThatHoldsTheData) {
  // Data in [-3, 3] with no outliers: IL walks down to 3 (range [-4, 4)), then oscillates
  // between 2 and 3 (IL 2 overflows, so it goes back up): the rule's steady state.
  SiteQuantizer q(F("dps:10,8"), Rounding::kNearest, Options());
  std::vector<float> data(1000);
  for (int i = 0; i < 1000; ++i) data[i] = -3.0f + 6.0f * static_cast<float>(i) / 999;
  std::vector<int> il;
  for (int it = 0; it < 12; ++it) {
    Apply(q, 0, data);
    q.EndIteration();
    il.push_back(q.dps_integer_bits());
  }
  EXPECT_EQ(il[6], 3);  // 10 -> 3 in 7 steps
  EXPECT_EQ(il[7], 2);  // IL 3 had no overflow: down
  EXPECT_EQ(il[8], 3);  // IL 2 overflowed: up
  EXPECT_EQ(il[9], 2);
}

// --- dynfixed -------------------------------------------------------------------------------

TEST(DynFixedRuleTest, FirstApplicationPicksTheSmallestIntegerLengthHoldingTheMaximum) {
  struct Case {
    float max;
    int frac_bits;  // WL 16 minus the smallest IL with max < 2^(IL-1)
  };
  for (const Case& c : {Case{5.0f, 12}, Case{4.0f, 12}, Case{3.99f, 13}, Case{0.3f, 16},
                        Case{1000.0f, 5}, Case{0.0f, 15}}) {
    SiteQuantizer q(F("dynfixed:16"), Rounding::kNearest, Options());
    Apply(q, 7, Tensor(100, 0.0f, 1, c.max));
    EXPECT_EQ(q.dynfixed_frac_bits(7), c.frac_bits) << "max " << c.max;
    EXPECT_EQ(q.last_iteration().overflows, 0);
    q.EndIteration();
    EXPECT_EQ(q.last_iteration().overflows, 0) << "max " << c.max;
  }
}

TEST(DynFixedRuleTest, OverflowAboveTheMaximumRateAddsAnIntegerBit) {
  SiteQuantizer q(F("dynfixed:8"), Rounding::kNearest, Options());
  // IL 2 (range [-2, 2)): FL 6, kept since 2 of 10000 values would overflow IL 1.
  Apply(q, 0, Tensor(10000, 0.5f, 2, 1.5f));
  q.EndIteration();
  ASSERT_EQ(q.dynfixed_frac_bits(0), 6);
  // Now 3 of 10000 values (0.03% > 0.01%) are beyond 2: IL 3, FL 5.
  const int before = q.dynfixed_frac_bits(0);
  Apply(q, 0, Tensor(10000, 0.5f, 3, 3.0f));
  q.EndIteration();
  EXPECT_EQ(q.last_iteration().overflows, 3);
  EXPECT_EQ(q.dynfixed_frac_bits(0), before - 1);
}

TEST(DynFixedRuleTest, KeepsTheLengthWhenOneBitFewerWouldOverflow) {
  SiteQuantizer q(F("dynfixed:8"), Rounding::kNearest, Options());
  Apply(q, 0, Tensor(10000, 0.25f, 2, 1.5f));  // FL 6, range [-2, 2)
  q.EndIteration();
  const int fl = q.dynfixed_frac_bits(0);
  // No overflow at IL 2, but 1.5 would overflow IL 1 (range [-1, 1)) in 2 of 10000 values.
  Apply(q, 0, Tensor(10000, 0.25f, 2, 1.5f));
  q.EndIteration();
  EXPECT_EQ(q.last_iteration().overflows, 0);
  EXPECT_EQ(q.last_iteration().overflows_one_less, 2);
  EXPECT_EQ(q.dynfixed_frac_bits(0), fl);
}

TEST(DynFixedRuleTest, RemovesAnIntegerBitWhenOneFewerWouldStillHoldTheData) {
  SiteQuantizer q(F("dynfixed:8"), Rounding::kNearest, Options());
  Apply(q, 0, Tensor(10000, 0.25f, 2, 1.5f));  // FL 6
  q.EndIteration();
  const int fl = q.dynfixed_frac_bits(0);
  Apply(q, 0, Tensor(10000, 0.25f, 1, 0.75f));  // fits IL 1 ([-1, 1))
  q.EndIteration();
  EXPECT_EQ(q.last_iteration().overflows_one_less, 0);
  EXPECT_EQ(q.dynfixed_frac_bits(0), fl + 1);
}

TEST(DynFixedRuleTest, TensorsAdaptIndependently) {
  SiteQuantizer q(F("dynfixed:12"), Rounding::kNearest, Options());
  Apply(q, 0, Tensor(1000, 0.1f, 1, 1.0f));    // IL 2: FL 10
  Apply(q, 1, Tensor(1000, 10.0f, 1, 40.0f));  // IL 7: FL 5
  EXPECT_EQ(q.dynfixed_frac_bits(0), 10);
  EXPECT_EQ(q.dynfixed_frac_bits(1), 5);
  EXPECT_EQ(q.dynfixed_frac_bits(2), -1000);  // not seen
  q.EndIteration();
  // 1.0 would overflow IL 1 ([-1, 1)) in 0.1% of tensor 0, 40 would overflow IL 6 ([-32, 32))
  // in 0.1% of tensor 1: both keep their lengths.
  EXPECT_EQ(q.dynfixed_frac_bits(0), 10);
  EXPECT_EQ(q.dynfixed_frac_bits(1), 5);
  // Only tensor 0 is applied next: only it may change.
  Apply(q, 0, Tensor(1000, 0.1f, 0, 0.0f));
  q.EndIteration();
  EXPECT_EQ(q.dynfixed_frac_bits(0), 11);
  EXPECT_EQ(q.dynfixed_frac_bits(1), 5);
}

TEST(DynFixedRuleTest, ShrinkingDataRaisesTheFractionalLengthOneBitPerIteration) {
  SiteQuantizer q(F("dynfixed:16"), Rounding::kNearest, Options());
  Apply(q, 0, Tensor(100, 0.0f, 1, 100.0f));  // IL 8: FL 8
  q.EndIteration();
  for (int it = 1; it <= 5; ++it) {
    Apply(q, 0, Tensor(100, 0.01f, 0, 0.0f));
    q.EndIteration();
    EXPECT_EQ(q.dynfixed_frac_bits(0), 8 + it);
  }
}

}  // namespace
}  // namespace bitsweep::trainer
