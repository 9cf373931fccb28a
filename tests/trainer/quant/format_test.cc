#include "worker/trainer/quant/format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;

TEST(ParseFormatTest, ParsesEveryFormatAndAlias) {
  struct Case {
    const char* spec;
    const char* canonical;
  };
  const Case cases[] = {{"fp32", "fp32"},           {"float:5,10", "float:5,10"},
                        {"fp16", "float:5,10"},     {"bf16", "float:8,7"},
                        {"tf32", "float:8,10"},     {"fp8e5m2", "float:5,2"},
                        {"fp8e4m3", "float:4,3"},   {"mask:9", "mask:9"},
                        {"mask:32", "mask:32"},     {"fixed:16,8", "fixed:16,8"},
                        {"fixed:2,1", "fixed:2,1"}, {"fixed:32,0", "fixed:32,0"}};
  for (const Case& c : cases) {
    auto f = ParseFormat(c.spec);
    ASSERT_TRUE(f.ok()) << c.spec << ": " << f.status();
    EXPECT_EQ(f->ToString(), c.canonical);
  }
}

TEST(ParseFormatTest, MaxFiniteMatchesKnownFormats) {
  EXPECT_EQ(ParseFormat("fp16")->MaxFinite(), 65504.0);
  EXPECT_EQ(ParseFormat("fp8e4m3")->MaxFinite(), 240.0);  // IEEE-like, not OCP's 448
  EXPECT_EQ(ParseFormat("fp8e5m2")->MaxFinite(), 57344.0);
  EXPECT_EQ(ParseFormat("bf16")->MaxFinite(), 3.3895313892515355e38);
  EXPECT_EQ(ParseFormat("fixed:8,4")->MaxFinite(), 8.0 - 1.0 / 16);
}

TEST(ParseFormatTest, RejectsBadSpecsWithClearMessages) {
  struct Case {
    const char* spec;
    const char* message;
  };
  const Case cases[] = {
      {"mask:40", "'mask:40': B must be between 9 and 32"},
      {"mask:8", "B must be between 9 and 32"},
      {"mask:", "is not an integer"},
      {"mask:1x", "'1x' is not an integer"},
      {"mask:12,3", "expected mask:B"},
      {"float:9,3", "E must be between 2 and 8"},
      {"float:1,3", "E must be between 2 and 8"},
      {"float:5,24", "M must be between 0 and 23"},
      {"float:5", "expected float:E,M"},
      {"fixed:33,8", "WL must be between 2 and 32"},
      {"fixed:8,9", "FL must be between 0 and WL-1"},
      {"fixed:8,-1", "FL must be between 0 and WL-1"},
      {"int:1", "B must be between 2 and 32"},
      {"int:33", "B must be between 2 and 32"},
      {"int:8,2", "expected int:B"},
      {"dynfixed:1", "WL must be between 2 and 32"},
      {"dynfixed:", "is not an integer"},
      {"dps:0,12", "IL must be between 1 and 32"},
      {"dps:4,-1", "FL must be between 0 and 52"},
      {"dps:32,30", "IL + FL must be at most 53"},
      {"dps:4", "expected dps:IL,FL"},
      {"fp64", "unknown format; supported:"},
      {"", "unknown format"},
  };
  for (const Case& c : cases) {
    auto f = ParseFormat(c.spec);
    ASSERT_FALSE(f.ok()) << c.spec;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(c.message)) << c.spec;
  }
}

TEST(ParseRoundingTest, ParsesAndRejects) {
  EXPECT_EQ(*ParseRounding("truncate"), Rounding::kTruncate);
  EXPECT_EQ(*ParseRounding("nearest"), Rounding::kNearest);
  EXPECT_EQ(*ParseRounding("stochastic"), Rounding::kStochastic);
  auto r = ParseRounding("up");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("'up': unknown rounding; supported: truncate, nearest, stochastic"));
}

}  // namespace
}  // namespace bitsweep::trainer
