#include "worker/trainer/optim/schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace bitsweep::trainer {
namespace {

LrSchedule Make(LrScheduleKind kind) {
  LrSchedule s;
  s.kind = kind;
  s.lr = 0.5;
  s.gamma = 0.1;
  s.power = 0.75;
  s.step_size = 100;
  s.total_iterations = 1000;
  return s;
}

TEST(LrScheduleTest, ConstIsFlat) {
  const LrSchedule s = Make(LrScheduleKind::kConst);
  EXPECT_EQ(s.At(0), 0.5);
  EXPECT_EQ(s.At(999), 0.5);
}

TEST(LrScheduleTest, StepMultipliesByGammaEveryStepSize) {
  const LrSchedule s = Make(LrScheduleKind::kStep);
  EXPECT_DOUBLE_EQ(s.At(0), 0.5);
  EXPECT_DOUBLE_EQ(s.At(99), 0.5);
  EXPECT_DOUBLE_EQ(s.At(100), 0.05);
  EXPECT_DOUBLE_EQ(s.At(250), 0.005);
}

TEST(LrScheduleTest, InvIsSeed002sPolicy) {
  LrSchedule s = Make(LrScheduleKind::kInv);
  s.lr = 0.01;
  s.gamma = 1e-4;  // seeds/002_a5ea6972c7539976.txt §4
  EXPECT_DOUBLE_EQ(s.At(0), 0.01);
  EXPECT_DOUBLE_EQ(s.At(10000), 0.01 * std::pow(2.0, -0.75));
}

TEST(LrScheduleTest, CosineFallsFromLrToZeroOverTheTotal) {
  const LrSchedule s = Make(LrScheduleKind::kCosine);
  EXPECT_DOUBLE_EQ(s.At(0), 0.5);
  EXPECT_NEAR(s.At(500), 0.25, 1e-12);
  EXPECT_NEAR(s.At(250), 0.25 * (1 + std::cos(std::numbers::pi / 4)), 1e-12);
  EXPECT_NEAR(s.At(1000), 0.0, 1e-12);
}

TEST(LrScheduleTest, ParsesNamesAndTreatsEmptyAsConst) {
  EXPECT_EQ(*ParseLrSchedule(""), LrScheduleKind::kConst);
  EXPECT_EQ(*ParseLrSchedule("cosine"), LrScheduleKind::kCosine);
  auto bad = ParseLrSchedule("exp");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              ::testing::HasSubstr("supported: const, step, inv, cosine"));
}

}  // namespace
}  // namespace bitsweep::trainer
