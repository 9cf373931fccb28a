#include "worker/trainer/quant/rng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace bitsweep::trainer {
namespace {

TEST(CounterRandomTest, MatchesSequentialSplitmix64) {
  // Reference splitmix64 (Vigna's splitmix64.c) started from state 1234567.
  uint64_t state = 1234567;
  auto next = [&state] {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  };
  for (uint64_t i = 0; i < 100; ++i) EXPECT_EQ(CounterRandom(1234567, i), next());
}

TEST(CounterRngTest, UniformAndNormalHaveTheRightMoments) {
  CounterRng rng(42);
  constexpr int kN = 200000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < kN; ++i) {
    const double u = rng.Uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    su += u;
    const double z = rng.Normal();
    sn += z;
    sn2 += z * z;
  }
  EXPECT_NEAR(su / kN, 0.5, 0.005);
  EXPECT_NEAR(sn / kN, 0.0, 0.01);
  EXPECT_NEAR(sn2 / kN, 1.0, 0.02);
}

TEST(CounterRngTest, BelowIsInRangeAndRoughlyUniform) {
  CounterRng rng(7);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const uint64_t v = rng.Below(7);
    ASSERT_LT(v, 7u);
    ++counts[v];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
}

TEST(DeriveKeyTest, DifferentCoordinatesGiveDifferentKeys) {
  EXPECT_NE(DeriveKey(1, 2), DeriveKey(1, 3));
  EXPECT_NE(DeriveKey(1, 2), DeriveKey(2, 2));
  EXPECT_EQ(DeriveKey(5, 9), DeriveKey(5, 9));
}

}  // namespace
}  // namespace bitsweep::trainer
