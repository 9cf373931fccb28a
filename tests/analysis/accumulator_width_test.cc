#include "analysis/accumulator_width.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace bitsweep::analysis {
namespace {

TEST(TruncateToMantissaTest, DropsBitsBelowTheLastPlace) {
  EXPECT_EQ(TruncateToMantissa(1.0 + 3.0 / 32, 4), 1.0625);  // 1.0001|1 -> 1.0001
  EXPECT_EQ(TruncateToMantissa(1.0 + 1.0 / 16, 4), 1.0625);  // representable
  EXPECT_EQ(TruncateToMantissa(1.75, 1), 1.5);
  EXPECT_EQ(TruncateToMantissa(-1.75, 1), -1.5);  // toward zero
  EXPECT_EQ(TruncateToMantissa(-3.0, 1), -3.0);
  EXPECT_EQ(TruncateToMantissa(0.0, 3), 0.0);
}

TEST(MonteCarloVrrTest, IncreasesWithMantissaBits) {
  const VrrOptions options{400, 7};
  double previous = 0;
  for (int m : {3, 6, 10, 16}) {
    const double vrr = *MonteCarloVrr(m, 1024, options);
    EXPECT_GT(vrr, previous) << "m = " << m;
    previous = vrr;
  }
  EXPECT_NEAR(*MonteCarloVrr(40, 1024, options), 1.0, 1e-6);
}

TEST(MonteCarloVrrTest, FallsWithAccumulationLength) {
  const VrrOptions options{300, 7};
  double previous = 2;
  for (int64_t n : {16, 256, 4096}) {
    const double vrr = *MonteCarloVrr(5, n, options);
    EXPECT_LT(vrr, previous) << "n = " << n;
    previous = vrr;
  }
  EXPECT_LT(previous, 0.9);  // 4096 sums in a 5-bit mantissa swamp
}

TEST(MinAccumulatorMantissaTest, GrowsWithLength) {
  const VrrOptions options{200, 3};
  const int short_sum = *MinAccumulatorMantissa(16, 0.99, options);
  const int long_sum = *MinAccumulatorMantissa(4096, 0.99, options);
  EXPECT_LT(short_sum, long_sum);
  EXPECT_GE(*MonteCarloVrr(long_sum, 4096, options), 0.99);
  EXPECT_LT(*MonteCarloVrr(long_sum - 1, 4096, options), 0.99);
}

TEST(MonteCarloVrrTest, BadInput_IsAnError) {
  EXPECT_FALSE(MonteCarloVrr(0, 10, {}).ok());
  EXPECT_FALSE(MonteCarloVrr(53, 10, {}).ok());
  EXPECT_FALSE(MonteCarloVrr(4, 0, {}).ok());
  EXPECT_FALSE(MinAccumulatorMantissa(10, 1.0, {}).ok());
}

TEST(AccumulationLengthsTest, TheTrainersChainsPerLayer) {
  v1::ModelConfig model;
  model.add_conv(8);
  model.set_kernel(5);
  model.set_pool(2);
  model.add_dense(100);
  auto layers = AccumulationLengths(model, 1, 28, 28, 10, 128, 8);
  ASSERT_TRUE(layers.ok()) << layers.status();
  ASSERT_EQ(layers->size(), 3u);
  const LayerAccumulation& conv = (*layers)[0];
  EXPECT_EQ(conv.layer, "conv0");
  EXPECT_EQ(conv.forward.chain, 25);  // 1 channel · 5 · 5
  EXPECT_EQ(conv.forward.groups, 1);
  EXPECT_EQ(conv.backward.chain, 8);            // Wᵀ·dout over the 8 filters
  EXPECT_EQ(conv.gradient.chain, 8 * 24 * 24);  // 8 examples' positions per group
  EXPECT_EQ(conv.gradient.groups, 16);          // 128 / 8 group sums
  EXPECT_EQ(conv.gradient.products(), conv.gradient_dot_product);
  EXPECT_EQ(conv.gradient_dot_product, 128 * 24 * 24);
  EXPECT_EQ((*layers)[1].layer, "dense0");
  EXPECT_EQ((*layers)[1].forward.chain, 8 * 12 * 12);
  EXPECT_EQ((*layers)[1].backward.chain, 100);
  EXPECT_EQ((*layers)[1].gradient.chain, 128);
  EXPECT_EQ((*layers)[1].gradient.groups, 1);
  EXPECT_EQ((*layers)[2].layer, "output");
  EXPECT_EQ((*layers)[2].forward.chain, 100);
  EXPECT_EQ((*layers)[2].backward.chain, 10);
  // A batch smaller than a group is one chain; a ragged last group still counts.
  layers = AccumulationLengths(model, 1, 28, 28, 10, 5, 8);
  ASSERT_TRUE(layers.ok());
  EXPECT_EQ((*layers)[0].gradient.chain, 5 * 24 * 24);
  EXPECT_EQ((*layers)[0].gradient.groups, 1);
  layers = AccumulationLengths(model, 1, 28, 28, 10, 20, 8);
  ASSERT_TRUE(layers.ok());
  EXPECT_EQ((*layers)[0].gradient.groups, 3);
  EXPECT_FALSE(AccumulationLengths(model, 1, 28, 28, 10, 128, 0).ok());
  model.set_kernel(29);
  EXPECT_FALSE(AccumulationLengths(model, 1, 28, 28, 10, 128, 8).ok());
}

// Grouping keeps every partial sum short: G chains of n/G products lose less variance than
// one chain of n, and one group is exactly the ungrouped sum.
TEST(MonteCarloVrrTest, GroupedSumsRetainMoreThanOneLongChain) {
  VrrOptions options;
  options.samples = 300;
  const double one_chain = *MonteCarloVrr(8, Accumulation{4096, 1}, options);
  const double grouped = *MonteCarloVrr(8, Accumulation{512, 8}, options);
  EXPECT_GT(grouped, one_chain);
  EXPECT_EQ(*MonteCarloVrr(8, Accumulation{4096, 1}, options), *MonteCarloVrr(8, 4096, options));
  EXPECT_LE(*MinAccumulatorMantissa(Accumulation{512, 8}, 0.99, options),
            *MinAccumulatorMantissa(Accumulation{4096, 1}, 0.99, options));
  EXPECT_FALSE(MonteCarloVrr(8, Accumulation{16, 0}, options).ok());
}

}  // namespace
}  // namespace bitsweep::analysis
