#include "common/status_macros.h"

#include <gtest/gtest.h>

#include <string>

namespace bitsweep::common {
namespace {

absl::StatusOr<int> ParsePositive(int value) {
  if (value <= 0) return absl::InvalidArgumentError("not positive: " + std::to_string(value));
  return value;
}

absl::Status CheckPositive(int value) { return ParsePositive(value).status(); }

absl::StatusOr<int> DoubledSum(int a, int b) {
  ASSIGN_OR_RETURN(int x, ParsePositive(a));
  ASSIGN_OR_RETURN(int y, ParsePositive(b));
  return 2 * (x + y);
}

absl::Status BothPositive(int a, int b) {
  RETURN_IF_ERROR(CheckPositive(a));
  RETURN_IF_ERROR(CheckPositive(b));
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnPassesValuesThrough) { EXPECT_EQ(*DoubledSum(1, 2), 6); }

TEST(StatusMacrosTest, AssignOrReturnReturnsTheFirstError) {
  absl::StatusOr<int> result = DoubledSum(3, -4);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().message(), "not positive: -4");
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtTheFirstError) {
  EXPECT_TRUE(BothPositive(1, 1).ok());
  EXPECT_EQ(BothPositive(-1, -2).message(), "not positive: -1");
}

}  // namespace
}  // namespace bitsweep::common
