#include "analysis/bit_width.h"

#include "gtest/gtest.h"

namespace bitsweep::analysis {
namespace {

TEST(ParseBitWidthTest, EveryFormatFamily) {
  EXPECT_EQ(*ParseBitWidth("mask:12"), 12);
  EXPECT_EQ(*ParseBitWidth("fixed:16,14"), 16);
  EXPECT_EQ(*ParseBitWidth("fp16"), 16);
  EXPECT_EQ(*ParseBitWidth("bf16"), 16);
  EXPECT_EQ(*ParseBitWidth("fp32"), 32);
  EXPECT_EQ(*ParseBitWidth("fp64"), 64);
  EXPECT_EQ(*ParseBitWidth("tf32"), 19);
  EXPECT_EQ(*ParseBitWidth("fp8e4m3"), 8);
  EXPECT_EQ(*ParseBitWidth("float:5,10"), 16);
  EXPECT_EQ(*ParseBitWidth("float:8,7"), 16);
  EXPECT_EQ(*ParseBitWidth("int:8"), 8);
  EXPECT_EQ(*ParseBitWidth("dynfixed:12"), 12);
  EXPECT_EQ(*ParseBitWidth("dps:4,10"), 14);
}

TEST(ParseBitWidthTest, BadSpecs_AreErrorsNamingThem) {
  for (const char* bad : {"", "fp31", "mask:", "mask:x", "fixed:16", "float:5", "fixed:1,2,3"}) {
    const auto r = ParseBitWidth(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status();
  }
}

TEST(IsFloat32BaselineTest, Float32Spellings) {
  EXPECT_TRUE(IsFloat32Baseline("fp32"));
  EXPECT_TRUE(IsFloat32Baseline("mask:32"));
  EXPECT_TRUE(IsFloat32Baseline("float:8,23"));
  EXPECT_FALSE(IsFloat32Baseline("mask:31"));
  EXPECT_FALSE(IsFloat32Baseline("fp64"));
}

}  // namespace
}  // namespace bitsweep::analysis
