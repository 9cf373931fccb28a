#include "common/clock.h"

#include <gtest/gtest.h>

namespace bitsweep::common {
namespace {

TEST(FakeClockTest, MovesOnlyWhenTold) {
  FakeClock clock(1000);
  EXPECT_EQ(clock.NowUnixMs(), 1000);
  EXPECT_EQ(clock.NowUnixMs(), 1000);
  clock.AdvanceMs(250);
  EXPECT_EQ(clock.NowUnixMs(), 1250);
  clock.SetUnixMs(5);
  EXPECT_EQ(clock.NowUnixMs(), 5);
}

TEST(SystemClockTest, IsAfter2020AndNeverGoesBackwardsBetweenTwoReads) {
  const int64_t first = SystemClock::Get()->NowUnixMs();
  const int64_t second = SystemClock::Get()->NowUnixMs();
  EXPECT_GT(first, int64_t{1'577'836'800'000});  // 2020-01-01
  EXPECT_GE(second, first);
}

}  // namespace
}  // namespace bitsweep::common
