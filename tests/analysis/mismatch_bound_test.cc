#include "analysis/mismatch_bound.h"

#include <vector>

#include "gtest/gtest.h"

namespace bitsweep::analysis {
namespace {

// E_min = 1: activations of `output`. log2 √(E/E_min) = 2, 3, 0, 1 exactly.
const std::vector<LayerNoiseGain> kGains = {{"dense0", 16, 64}, {"output", 1, 4}};

TEST(MismatchBoundTest, FallsExactlyFourTimesPerAddedBit) {
  for (int b = 1; b < 30; ++b) {
    EXPECT_DOUBLE_EQ(UniformMismatchBound(kGains, b) / UniformMismatchBound(kGains, b + 1), 4.0);
  }
  // B = 1: Δ = 1, the bound is the total gain.
  EXPECT_DOUBLE_EQ(UniformMismatchBound(kGains, 1), 85.0);
}

TEST(MismatchBoundTest, PerQuantityWidths) {
  // 16·4^(1-3) + 64·4^(1-4) + 1·4^(1-1) + 4·4^(1-2) = 1 + 1 + 1 + 1
  EXPECT_DOUBLE_EQ(*MismatchBound(kGains, {3, 1}, {4, 2}), 4.0);
  EXPECT_FALSE(MismatchBound(kGains, {3}, {4, 2}).ok());
}

TEST(MinUniformPrecisionTest, FewestBitsMeetingTheTarget) {
  // 85·4^(1-B) <= 0.01: B = 7 gives 0.0208, B = 8 gives 0.0052.
  auto a = MinUniformPrecision(kGains, 0.01);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->reference_bits, 8);
  EXPECT_DOUBLE_EQ(a->bound, 85.0 / 16384);
  EXPECT_EQ(a->weight_bits, (std::vector<int>{8, 8}));
}

TEST(PerLayerPrecisionTest, EqualisesTheNoiseTerms) {
  auto a = PerLayerPrecision(kGains, 6);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->activation_bits, (std::vector<int>{8, 6}));
  EXPECT_EQ(a->weight_bits, (std::vector<int>{9, 7}));
  // Every term equals E_min·4^(1-6): four of them.
  EXPECT_DOUBLE_EQ(a->bound, 4.0 / 1024);
}

TEST(MinPerLayerPrecisionTest, SmallestReferenceMeetingTheTarget) {
  // 4·4^(1-B_ref) <= 0.01: B_ref = 5 gives 0.0156, 6 gives 0.0039.
  auto a = MinPerLayerPrecision(kGains, 0.01);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->reference_bits, 6);
  EXPECT_EQ(a->activation_bits, (std::vector<int>{8, 6}));
}

TEST(MinUniformPrecisionTest, BadInput_IsAnError) {
  EXPECT_FALSE(MinUniformPrecision(kGains, 0).ok());
  EXPECT_FALSE(MinUniformPrecision(kGains, 1.5).ok());
  EXPECT_FALSE(MinUniformPrecision({{"x", -1, 1}}, 0.01).ok());
  EXPECT_FALSE(PerLayerPrecision({{"x", 0, 0}}, 4).ok());
}

}  // namespace
}  // namespace bitsweep::analysis
