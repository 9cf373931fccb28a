#include "server/bisect_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace bitsweep::server {
namespace {

// Runs the search against an accuracy per axis index; returns the answer and counts probes.
std::optional<int> RunSearch(const BisectSearch& search, double baseline,
                             const std::vector<double>& accuracy, int* probes) {
  std::map<int, double> probed;
  *probes = 0;
  int expected_first = search.FirstProbe();
  while (true) {
    BisectSearch::Step step = search.Next(baseline, probed);
    if (!step.probe) return step.answer;
    if (*probes == 0) {
      EXPECT_EQ(*step.probe, expected_first);
    }
    EXPECT_EQ(probed.count(*step.probe), 0u) << "index probed twice";
    probed[*step.probe] = accuracy[*step.probe];
    ++*probes;
  }
}

TEST(BisectSearchTest, FindsFewestBitsWithinTolerance_InLogarithmicProbes) {
  // 16 formats, fewest bits first; from index 9 on the accuracy is within 0.5 points of 0.98.
  std::vector<double> accuracy(16);
  for (int i = 0; i < 16; ++i) accuracy[i] = i >= 9 ? 0.978 : 0.5 + 0.01 * i;
  BisectSearch search(16, 0.5);
  int probes = 0;
  std::optional<int> answer = RunSearch(search, 0.98, accuracy, &probes);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(*answer, 9);
  EXPECT_LE(probes, static_cast<int>(std::ceil(std::log2(16 + 1))));
}

TEST(BisectSearchTest, EveryThresholdPosition_IsFound) {
  for (int n = 1; n <= 9; ++n) {
    for (int threshold = 0; threshold <= n; ++threshold) {
      std::vector<double> accuracy(n);
      for (int i = 0; i < n; ++i) accuracy[i] = i >= threshold ? 0.9 : 0.1;
      int probes = 0;
      std::optional<int> answer = RunSearch(BisectSearch(n, 1.0), 0.9, accuracy, &probes);
      if (threshold == n) {
        EXPECT_FALSE(answer.has_value()) << "n=" << n;
      } else {
        EXPECT_EQ(answer, threshold) << "n=" << n;
      }
      EXPECT_LE(probes, static_cast<int>(std::ceil(std::log2(n + 1)))) << "n=" << n;
    }
  }
}

TEST(BisectSearchTest, ToleranceIsInPercentagePoints_DefaultHalfAPoint) {
  BisectSearch search(4, 0);
  EXPECT_TRUE(search.WithinTolerance(0.90, 0.896));
  EXPECT_FALSE(search.WithinTolerance(0.90, 0.894));
  BisectSearch wide(4, 2.0);
  EXPECT_TRUE(wide.WithinTolerance(0.90, 0.881));
  EXPECT_FALSE(wide.WithinTolerance(0.90, 0.879));
}

}  // namespace
}  // namespace bitsweep::server
