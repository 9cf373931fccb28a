#include "worker/trial_runner.h"

#include <gtest/gtest.h>

#include "tests/worker/fake_coordinator.h"
#include "tests/worker/test_configs.h"

namespace bitsweep::worker {
namespace {

using testing::FakeCoordinator;
using testing::TinySyntheticConfig;

// Reports `points` curve points at iterations 10, 20, ... unless told to stop, then a result.
TrainFunction FakeTrain(int points, int* calls_seen = nullptr) {
  return [points, calls_seen](
             const v1::TrialConfig&, const trainer::Dataset&,
             const trainer::ProgressCallback& on_progress) -> absl::StatusOr<v1::TrialResult> {
    for (int i = 1; i <= points; ++i) {
      if (calls_seen) *calls_seen = i;
      v1::CurvePoint point;
      point.set_iteration(10 * i);
      point.set_test_accuracy(0.1 * i);
      if (!on_progress(point)) return absl::CancelledError("stopped");
    }
    v1::TrialResult result;
    result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
    result.set_final_test_accuracy(0.5);
    result.set_num_classes(10);
    return result;
  };
}

v1::TrialRef Ref(int64_t trial_id, int32_t attempt) {
  v1::TrialRef ref;
  ref.set_trial_id(trial_id);
  ref.set_attempt(attempt);
  return ref;
}

class TrialRunnerTest : public ::testing::Test {
 protected:
  // Retries in tests should not take real seconds.
  static BackoffOptions FastBackoff() {
    return BackoffOptions{std::chrono::milliseconds(1), std::chrono::milliseconds(5), 2.0};
  }
  TrialRunner MakeRunner(TrainFunction train = nullptr) {
    return TrialRunner("w1", &coordinator_, &datasets_, &shutdown_, std::move(train),
                       FastBackoff());
  }

  FakeCoordinator coordinator_;
  DatasetCache datasets_{"/nonexistent"};
  ShutdownNotifier shutdown_;
  StopFlag stop_;
};

TEST_F(TrialRunnerTest, RealTraining_ForwardsEveryPointInOrderThenReportsTheResult) {
  TrialRunner runner = MakeRunner();
  EXPECT_EQ(runner.Run(Ref(7, 2), TinySyntheticConfig(40, 10), stop_),
            TrialDisposition::kCompleted);

  ASSERT_FALSE(coordinator_.progress_requests.empty());
  for (const v1::ReportProgressRequest& request : coordinator_.progress_requests) {
    EXPECT_EQ(request.worker_id(), "w1");
    EXPECT_EQ(request.ref().trial_id(), 7);
    EXPECT_EQ(request.ref().attempt(), 2);  // the fencing token
    EXPECT_EQ(request.points_size(), 1);    // one report per point
  }
  ASSERT_GE(coordinator_.delivered_points.size(), 2u);
  for (size_t i = 1; i < coordinator_.delivered_points.size(); ++i) {
    EXPECT_LT(coordinator_.delivered_points[i - 1].iteration(),
              coordinator_.delivered_points[i].iteration());
  }
  EXPECT_EQ(coordinator_.delivered_points.back().iteration(), 40);

  ASSERT_EQ(coordinator_.completions.size(), 1u);
  const v1::CompleteTrialRequest& done = coordinator_.completions[0];
  EXPECT_EQ(done.ref().trial_id(), 7);
  EXPECT_EQ(done.ref().attempt(), 2);
  ASSERT_TRUE(done.has_result());
  EXPECT_EQ(done.result().num_classes(), 10);
  EXPECT_GE(done.result().final_test_accuracy(), 0.0);
  EXPECT_LE(done.result().final_test_accuracy(), 1.0);
}

TEST_F(TrialRunnerTest, BadConfig_ReportsTheErrorAndTheRunnerKeepsServing) {
  TrialRunner runner = MakeRunner();
  v1::TrialConfig bad = TinySyntheticConfig();
  bad.mutable_precision()->mutable_default_()->set_format("mask:40");
  EXPECT_EQ(runner.Run(Ref(1, 1), bad, stop_), TrialDisposition::kFailed);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_EQ(coordinator_.completions[0].outcome_case(), v1::CompleteTrialRequest::kError);
  EXPECT_NE(coordinator_.completions[0].error().find("mask:40"), std::string::npos)
      << coordinator_.completions[0].error();

  EXPECT_EQ(runner.Run(Ref(2, 1), TinySyntheticConfig(), stop_), TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.completions.size(), 2u);
  EXPECT_TRUE(coordinator_.completions[1].has_result());
}

TEST_F(TrialRunnerTest, UnknownDataset_ReportsTheLoaderError) {
  TrialRunner runner = MakeRunner(FakeTrain(3));
  v1::TrialConfig config = TinySyntheticConfig();
  config.mutable_dataset()->set_name("imagenet");
  EXPECT_EQ(runner.Run(Ref(1, 1), config, stop_), TrialDisposition::kFailed);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_FALSE(coordinator_.completions[0].error().empty());
  EXPECT_TRUE(coordinator_.progress_requests.empty());
}

TEST_F(TrialRunnerTest, ServerAnswersStop_CancelsTrainingAndCompletesNothing) {
  coordinator_.stop_after_reports = 2;
  int points_seen = 0;
  TrialRunner runner = MakeRunner(FakeTrain(10, &points_seen));
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(), stop_), TrialDisposition::kStopped);
  EXPECT_EQ(points_seen, 2);
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
}

TEST_F(TrialRunnerTest, RealTraining_ServerAnswersStop_TrainerIsCancelled) {
  coordinator_.stop_after_reports = 1;
  TrialRunner runner = MakeRunner();
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(200, 10), stop_), TrialDisposition::kStopped);
  EXPECT_EQ(coordinator_.delivered_points.size(), 1u);
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
}

TEST_F(TrialRunnerTest, StopFlagRaised_StopsAtTheNextPoint) {
  TrialRunner runner = MakeRunner([this](const v1::TrialConfig& c, const trainer::Dataset& d,
                                         const trainer::ProgressCallback& on_progress) {
    // The heartbeat thread raises the flag while the trial trains.
    return FakeTrain(10)(c, d, [&](const v1::CurvePoint& p) {
      if (p.iteration() == 30) stop_.stop = true;
      return on_progress(p);
    });
  });
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(), stop_), TrialDisposition::kStopped);
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
}

TEST_F(TrialRunnerTest, ProgressRefusedAsStale_StopsTheTrial) {
  coordinator_.progress_errors.push_back(absl::FailedPreconditionError("stale attempt"));
  int points_seen = 0;
  TrialRunner runner = MakeRunner(FakeTrain(10, &points_seen));
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(), stop_), TrialDisposition::kStopped);
  EXPECT_EQ(points_seen, 1);
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
}

TEST_F(TrialRunnerTest, ProgressUnavailable_PointsGoWithTheNextReportInOrder) {
  coordinator_.progress_errors.push_back(absl::UnavailableError("server restarting"));
  TrialRunner runner = MakeRunner(FakeTrain(4));
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(), stop_), TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.progress_requests.size(), 4u);
  EXPECT_EQ(coordinator_.progress_requests[1].points_size(), 2);
  ASSERT_EQ(coordinator_.delivered_points.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(coordinator_.delivered_points[i].iteration(), 10 * (i + 1));
}

TEST_F(TrialRunnerTest, LastPointUndelivered_IsFlushedBeforeCompleting) {
  // The last report fails twice: the runner retries it before CompleteTrial.
  coordinator_.progress_errors = {absl::OkStatus(), absl::UnavailableError("down"),
                                  absl::UnavailableError("down")};
  TrialRunner runner = MakeRunner(FakeTrain(2));
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(), stop_), TrialDisposition::kCompleted);
  EXPECT_EQ(coordinator_.delivered_points.size(), 2u);
  EXPECT_EQ(coordinator_.completions.size(), 1u);
}

TEST_F(TrialRunnerTest, CompleteUnavailable_IsRetriedWithBackoff) {
  coordinator_.complete_errors = {absl::UnavailableError("down"),
                                  absl::DeadlineExceededError("slow")};
  TrialRunner runner = MakeRunner(FakeTrain(1));
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(), stop_), TrialDisposition::kCompleted);
  EXPECT_EQ(coordinator_.complete_attempts.size(), 3u);
  EXPECT_EQ(coordinator_.completions.size(), 1u);
}

TEST_F(TrialRunnerTest, CompleteRefusedAsStale_IsNotRetried) {
  coordinator_.complete_errors = {absl::FailedPreconditionError("stale attempt")};
  TrialRunner runner = MakeRunner(FakeTrain(1));
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(), stop_), TrialDisposition::kUnreported);
  EXPECT_EQ(coordinator_.complete_attempts.size(), 1u);
}

TEST_F(TrialRunnerTest, ShutdownWhileServerUnreachable_GivesUpReporting) {
  coordinator_.complete_errors.assign(1000, absl::UnavailableError("down"));
  shutdown_.Notify();
  TrialRunner runner = MakeRunner(FakeTrain(1));
  EXPECT_EQ(runner.Run(Ref(1, 1), TinySyntheticConfig(), stop_), TrialDisposition::kUnreported);
  EXPECT_EQ(coordinator_.complete_attempts.size(), 1u);
}

}  // namespace
}  // namespace bitsweep::worker
