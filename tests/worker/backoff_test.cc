#include "worker/backoff.h"

#include <gtest/gtest.h>

#include <thread>

#include "worker/running_trials.h"
#include "worker/shutdown.h"

namespace bitsweep::worker {
namespace {

using std::chrono::milliseconds;

TEST(BackoffTest, Delays_GrowExponentiallyWithinJitterAndAreCapped) {
  Backoff backoff(BackoffOptions{milliseconds(100), milliseconds(5000), 2.0});
  double ceiling = 100;
  for (int i = 0; i < 12; ++i) {
    const milliseconds delay = backoff.NextDelay();
    EXPECT_GE(delay.count(), static_cast<int64_t>(ceiling / 2) - 1) << i;
    EXPECT_LE(delay.count(), static_cast<int64_t>(ceiling)) << i;
    ceiling = std::min(ceiling * 2, 5000.0);
  }
  backoff.Reset();
  EXPECT_LE(backoff.NextDelay().count(), 100);
}

TEST(BackoffTest, Wait_WakesEarlyOnShutdown) {
  Backoff backoff(BackoffOptions{milliseconds(60'000), milliseconds(60'000), 2.0});
  ShutdownNotifier shutdown;
  std::thread notifier([&] {
    std::this_thread::sleep_for(milliseconds(20));
    shutdown.Notify();
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(backoff.Wait(shutdown));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  notifier.join();
}

TEST(BackoffTest, IsTransient_OnlyForUnreachableOrSlowServers) {
  EXPECT_TRUE(IsTransient(absl::UnavailableError("")));
  EXPECT_TRUE(IsTransient(absl::DeadlineExceededError("")));
  EXPECT_FALSE(IsTransient(absl::NotFoundError("")));
  EXPECT_FALSE(IsTransient(absl::FailedPreconditionError("")));
  EXPECT_FALSE(IsTransient(absl::CancelledError("")));
  EXPECT_FALSE(IsTransient(absl::InvalidArgumentError("")));
}

v1::TrialRef Ref(int64_t trial_id, int32_t attempt) {
  v1::TrialRef ref;
  ref.set_trial_id(trial_id);
  ref.set_attempt(attempt);
  return ref;
}

TEST(RunningTrialsTest, Stop_MatchesTrialAndAttempt) {
  RunningTrials running;
  std::shared_ptr<StopFlag> flag = running.Add(Ref(1, 2));
  EXPECT_FALSE(running.Stop(Ref(1, 1)));  // an older attempt: not ours
  EXPECT_FALSE(flag->raised());
  EXPECT_TRUE(running.Stop(Ref(1, 2)));
  EXPECT_TRUE(flag->raised());
  running.Remove(Ref(1, 2));
  EXPECT_EQ(running.size(), 0u);
}

TEST(RunningTrialsTest, StopAll_AlsoStopsTrialsAddedLater) {
  RunningTrials running;
  std::shared_ptr<StopFlag> before = running.Add(Ref(1, 1));
  running.StopAll();
  std::shared_ptr<StopFlag> after = running.Add(Ref(2, 1));
  EXPECT_TRUE(before->raised());
  EXPECT_TRUE(after->raised());
  EXPECT_EQ(running.List().size(), 2u);
}

}  // namespace
}  // namespace bitsweep::worker
