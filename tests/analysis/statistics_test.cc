#include "analysis/statistics.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace bitsweep::analysis {
namespace {

TEST(StudentTQuantileTest, MatchesTables) {
  EXPECT_NEAR(StudentTQuantile(0.975, 1), 12.7062047, 1e-6);
  EXPECT_NEAR(StudentTQuantile(0.975, 4), 2.7764451, 1e-6);
  EXPECT_NEAR(StudentTQuantile(0.975, 10), 2.2281389, 1e-6);
  EXPECT_NEAR(StudentTQuantile(0.975, 1e7), 1.9599640, 1e-5);
  EXPECT_NEAR(StudentTQuantile(0.025, 10), -2.2281389, 1e-6);
}

TEST(SummarizeTest, TwoValues_MeanStdAndTInterval) {
  const std::vector<double> v = {0.90, 0.92};
  const Summary s = Summarize(v);
  EXPECT_EQ(s.n, 2);
  EXPECT_NEAR(s.mean, 0.91, 1e-12);
  EXPECT_NEAR(s.std, std::sqrt(0.0002), 1e-12);
  // t(0.975, 1) · std / √2 = 12.7062 · 0.01.
  EXPECT_NEAR(s.ci_low, 0.91 - 0.127062047, 1e-7);
  EXPECT_NEAR(s.ci_high, 0.91 + 0.127062047, 1e-7);
}

TEST(SummarizeTest, OneValue_HasNoInterval) {
  const std::vector<double> v = {0.5};
  const Summary s = Summarize(v);
  EXPECT_EQ(s.n, 1);
  EXPECT_EQ(s.mean, 0.5);
  EXPECT_EQ(s.std, 0);
  EXPECT_TRUE(std::isnan(s.ci_low));
  EXPECT_TRUE(std::isnan(s.ci_high));
}

TEST(SummarizeTest, Empty_IsNZero) { EXPECT_EQ(Summarize({}).n, 0); }

}  // namespace
}  // namespace bitsweep::analysis
