#include "worker/trial_runner.h"

#include <gtest/gtest.h>

#include "tests/worker/fake_coordinator.h"
#include "tests/worker/test_configs.h"
#include "worker/simulated_trial.h"

namespace bitsweep::worker {
namespace {

using testing::FakeCoordinator;
using testing::TinySyntheticConfig;

// Reports `points` curve points at iterations 10, 20, ... unless told to stop, then a result.
TrainFunction FakeTrain(int points, int* calls_seen = nullptr) {
  return [points, calls_seen](const v1::TrialConfig&, const trainer::Dataset&,
                              const trainer::ProgressCallback& on_progress,
                              const trainer::TrainOptions&) -> absl::StatusOr<v1::TrialResult> {
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
                                         const trainer::ProgressCallback& on_progress,
                                         const trainer::TrainOptions& options) {
    // The heartbeat thread raises the flag while the trial trains.
    return FakeTrain(10)(
        c, d,
        [&](const v1::CurvePoint& p) {
          if (p.iteration() == 30) stop_.Raise();
          return on_progress(p);
        },
        options);
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

// --- checkpoints, resume, release, prune, simulated kind -----------------------------------

v1::TrialConfig SimulatedConfig(int points) {
  v1::TrialConfig config;
  config.set_kind("simulated");
  config.mutable_simulation()->set_points(points);
  config.mutable_train()->set_eval_every(10);
  config.mutable_precision()->mutable_default_()->set_format("mask:12");
  config.mutable_precision()->mutable_default_()->set_rounding("stochastic");
  return config;
}

v1::LeaseTrialResponse Lease(int64_t trial_id, int32_t attempt, const v1::TrialConfig& config,
                             int32_t checkpoint_every = 0, const std::string& checkpoint = "",
                             int64_t checkpoint_iteration = 0) {
  v1::LeaseTrialResponse lease;
  lease.set_has_trial(true);
  *lease.mutable_ref() = Ref(trial_id, attempt);
  *lease.mutable_config() = config;
  lease.set_checkpoint_every(checkpoint_every);
  lease.set_checkpoint(checkpoint);
  lease.set_checkpoint_iteration(checkpoint_iteration);
  return lease;
}

TEST_F(TrialRunnerTest, SimulatedTrial_NeedsNoDatasetAndCheckpointsAfterItsPoints) {
  TrialRunner runner = MakeRunner(FakeTrain(1));  // never called for simulated trials
  EXPECT_EQ(runner.Run(Lease(3, 1, SimulatedConfig(10), 4), stop_), TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.delivered_points.size(), 10u);
  ASSERT_EQ(coordinator_.checkpoints.size(), 2u);  // after points 4 and 8
  EXPECT_EQ(coordinator_.checkpoints[0].iteration(), 40);
  EXPECT_EQ(coordinator_.checkpoints[0].state(), "4");
  EXPECT_EQ(coordinator_.checkpoints[0].ref().attempt(), 1);
  EXPECT_EQ(coordinator_.checkpoints[1].iteration(), 80);
  // Every point up to the checkpoint's iteration was delivered before it.
  EXPECT_EQ(coordinator_.checkpoint_points_delivered[0], 4u);
  EXPECT_EQ(coordinator_.checkpoint_points_delivered[1], 8u);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_EQ(coordinator_.completions[0].result().outcome(), v1::TRIAL_OUTCOME_COMPLETED);
  EXPECT_EQ(coordinator_.completions[0].result().iterations(), 100);
}

TEST_F(TrialRunnerTest, ResumedLease_ReportsOnlyPointsAfterTheCheckpointWithTheSameResult) {
  TrialRunner runner = MakeRunner();
  ASSERT_EQ(runner.Run(Lease(3, 1, SimulatedConfig(10)), stop_), TrialDisposition::kCompleted);
  const v1::TrialResult whole = coordinator_.completions[0].result();
  const std::vector<v1::CurvePoint> whole_points = coordinator_.delivered_points;
  coordinator_.delivered_points.clear();

  EXPECT_EQ(runner.Run(Lease(3, 2, SimulatedConfig(10), 4, "6", 60), stop_),
            TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.delivered_points.size(), 4u);
  EXPECT_EQ(coordinator_.delivered_points[0].iteration(), 70);
  EXPECT_EQ(coordinator_.delivered_points[0].test_accuracy(), whole_points[6].test_accuracy());
  ASSERT_EQ(coordinator_.checkpoints.size(), 1u);  // after point 8 only
  EXPECT_EQ(coordinator_.checkpoints[0].ref().attempt(), 2);
  ASSERT_EQ(coordinator_.completions.size(), 2u);
  EXPECT_EQ(coordinator_.completions[1].result().final_test_accuracy(),
            whole.final_test_accuracy());
  EXPECT_EQ(coordinator_.completions[1].result().iterations_to_target(),
            whole.iterations_to_target());
}

TEST_F(TrialRunnerTest, RealTraining_ResumedFromAnUploadedCheckpoint_EndsWithTheSameResult) {
  TrialRunner runner = MakeRunner();
  const v1::TrialConfig config = TinySyntheticConfig(60, 10);
  ASSERT_EQ(runner.Run(Lease(1, 1, config, 2), stop_), TrialDisposition::kCompleted);
  ASSERT_GE(coordinator_.checkpoints.size(), 2u);  // after evaluations 2, 4 (and 6) of 6
  const v1::UploadCheckpointRequest checkpoint = coordinator_.checkpoints[0];
  EXPECT_EQ(checkpoint.iteration(), 20);
  EXPECT_EQ(trainer::CheckpointIteration(checkpoint.state()).value(), 20);
  v1::TrialResult whole = coordinator_.completions[0].result();
  const std::vector<v1::CurvePoint> whole_points = coordinator_.delivered_points;
  coordinator_.delivered_points.clear();

  ASSERT_EQ(runner.Run(Lease(1, 2, config, 2, checkpoint.state(), checkpoint.iteration()), stop_),
            TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.delivered_points.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(coordinator_.delivered_points[i].SerializeAsString(),
              whole_points[i + 2].SerializeAsString())
        << "point " << i;
  }
  v1::TrialResult resumed = coordinator_.completions[1].result();
  for (v1::TrialResult* r : {&whole, &resumed}) {
    r->clear_train_seconds();
    r->clear_images_per_second();
  }
  EXPECT_EQ(resumed.SerializeAsString(), whole.SerializeAsString());
}

TEST_F(TrialRunnerTest, KeepFinalCheckpoint_UploadsTheTrainedWeightsBeforeCompleting) {
  v1::TrialConfig config = TinySyntheticConfig(60, 10);
  config.mutable_train()->set_keep_final_checkpoint(true);
  // The final upload meets an outage once: it is retried, and the completion waits for it.
  coordinator_.checkpoint_errors = {absl::UnavailableError("down")};
  TrialRunner runner = MakeRunner();
  ASSERT_EQ(runner.Run(Lease(1, 1, config, /*checkpoint_every=*/0), stop_),
            TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.checkpoint_attempts.size(), 2u);
  ASSERT_EQ(coordinator_.checkpoints.size(), 1u);
  EXPECT_EQ(coordinator_.checkpoints[0].iteration(), 60);
  EXPECT_EQ(trainer::CheckpointIteration(coordinator_.checkpoints[0].state()).value(), 60);
  EXPECT_EQ(coordinator_.checkpoint_points_delivered[0], 6u);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_EQ(coordinator_.completions[0].result().iterations(), 60);

  // With periodic checkpoints the last evaluation's checkpoint is the final one: not sent twice.
  coordinator_.checkpoints.clear();
  ASSERT_EQ(runner.Run(Lease(2, 1, config, /*checkpoint_every=*/3), stop_),
            TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.checkpoints.size(), 2u);
  EXPECT_EQ(coordinator_.checkpoints[1].iteration(), 60);

  // Without the option, no checkpoint at all.
  coordinator_.checkpoints.clear();
  config.mutable_train()->set_keep_final_checkpoint(false);
  ASSERT_EQ(runner.Run(Lease(3, 1, config), stop_), TrialDisposition::kCompleted);
  EXPECT_TRUE(coordinator_.checkpoints.empty());
}

TEST_F(TrialRunnerTest, CheckpointWhilePointsUndelivered_WaitsForTheNextChance) {
  // The 2nd report fails: the checkpoint after point 2 must not go before point 2 has.
  coordinator_.progress_errors = {absl::OkStatus(), absl::UnavailableError("down"),
                                  absl::UnavailableError("down")};
  TrialRunner runner = MakeRunner();
  EXPECT_EQ(runner.Run(Lease(3, 1, SimulatedConfig(6), 2), stop_), TrialDisposition::kCompleted);
  ASSERT_FALSE(coordinator_.checkpoints.empty());
  for (size_t i = 0; i < coordinator_.checkpoints.size(); ++i) {
    EXPECT_GE(coordinator_.checkpoint_points_delivered[i] * 10,
              static_cast<size_t>(coordinator_.checkpoints[i].iteration()));
  }
  EXPECT_EQ(coordinator_.delivered_points.size(), 6u);
}

TEST_F(TrialRunnerTest, CheckpointRefusedAsStale_StopsTheTrial) {
  coordinator_.checkpoint_errors = {absl::FailedPreconditionError("stale attempt")};
  TrialRunner runner = MakeRunner();
  EXPECT_EQ(runner.Run(Lease(3, 1, SimulatedConfig(10), 2), stop_), TrialDisposition::kStopped);
  EXPECT_EQ(coordinator_.delivered_points.size(), 2u);
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
  EXPECT_TRUE(coordinator_.release_attempts.empty());
}

TEST_F(TrialRunnerTest, ShutdownStop_UploadsTheLatestCheckpointAndReleasesTheTrial) {
  // The checkpoint after point 2 fails to upload; shutdown comes after point 3.
  coordinator_.checkpoint_errors = {absl::UnavailableError("down")};
  TrialRunner runner = MakeRunner([this](const v1::TrialConfig& c, const trainer::Dataset& d,
                                         const trainer::ProgressCallback& on_progress,
                                         const trainer::TrainOptions& options) {
    v1::TrialConfig simulated = SimulatedConfig(10);
    (void)c;
    (void)d;
    return RunSimulatedTrial(
        simulated,
        [&](const v1::CurvePoint& p) {
          const bool go_on = on_progress(p);
          if (p.iteration() == 30) {
            shutdown_.Notify();
            stop_.Raise();
          }
          return go_on;
        },
        options);
  });
  EXPECT_EQ(runner.Run(Lease(5, 2, TinySyntheticConfig(), 2), stop_), TrialDisposition::kReleased);
  ASSERT_EQ(coordinator_.checkpoints.size(), 1u);
  EXPECT_EQ(coordinator_.checkpoints[0].iteration(), 20);
  EXPECT_EQ(coordinator_.checkpoints[0].ref().attempt(), 2);
  ASSERT_EQ(coordinator_.releases.size(), 1u);
  EXPECT_EQ(coordinator_.releases[0].ref().trial_id(), 5);
  EXPECT_EQ(coordinator_.releases[0].ref().attempt(), 2);
  EXPECT_FALSE(coordinator_.releases[0].reason().empty());
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
}

TEST_F(TrialRunnerTest, StopWithoutShutdown_ReleasesNothing) {
  TrialRunner runner = MakeRunner();
  stop_.Raise();
  EXPECT_EQ(runner.Run(Lease(3, 1, SimulatedConfig(10), 2), stop_), TrialDisposition::kStopped);
  EXPECT_TRUE(coordinator_.release_attempts.empty());
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
}

TEST_F(TrialRunnerTest, ServerAnswersPrune_CompletesAsPrunedWithThePointsSoFar) {
  coordinator_.prune_after_reports = 3;
  TrialRunner runner = MakeRunner();
  v1::TrialConfig config = SimulatedConfig(10);
  config.mutable_train()->set_target_accuracy(0.2);
  EXPECT_EQ(runner.Run(Lease(3, 1, config), stop_), TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.delivered_points.size(), 3u);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  const v1::TrialResult& result = coordinator_.completions[0].result();
  EXPECT_EQ(result.outcome(), v1::TRIAL_OUTCOME_PRUNED);
  EXPECT_EQ(result.iterations(), 30);
  EXPECT_EQ(result.final_test_accuracy(), coordinator_.delivered_points[2].test_accuracy());
  EXPECT_EQ(result.best_test_accuracy(), coordinator_.delivered_points[2].test_accuracy());
  EXPECT_GT(result.iterations_to_target(), 0);
}

TEST_F(TrialRunnerTest, MinReportInterval_CoalescesFastPointsAndDeliversEveryOneInOrder) {
  TrialRunner runner("w1", &coordinator_, &datasets_, &shutdown_, nullptr, FastBackoff(), 1,
                     std::chrono::seconds(60));
  EXPECT_EQ(runner.Run(Lease(3, 1, SimulatedConfig(10), 4), stop_), TrialDisposition::kCompleted);
  // The lease counts as the last report: every point comes within the interval and is held,
  // and so are the checkpoints after 4 and 8 (resuming from scratch repeats less than the
  // interval). All ten go in one report before the result.
  ASSERT_EQ(coordinator_.progress_requests.size(), 1u);
  EXPECT_EQ(coordinator_.progress_requests[0].points_size(), 10);
  ASSERT_EQ(coordinator_.delivered_points.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(coordinator_.delivered_points[i].iteration(), 10 * static_cast<int64_t>(i + 1));
  }
  EXPECT_TRUE(coordinator_.checkpoint_attempts.empty());
  EXPECT_EQ(coordinator_.completions.size(), 1u);
}

// A lease from a server that stores points sent with checkpoints and results.
v1::LeaseTrialResponse NewServerLease(int64_t trial_id, int32_t attempt,
                                      const v1::TrialConfig& config, int32_t checkpoint_every) {
  v1::LeaseTrialResponse lease = Lease(trial_id, attempt, config, checkpoint_every);
  lease.set_accepts_points_with_reports(true);
  return lease;
}

TEST_F(TrialRunnerTest, PointsWithReports_FastTrial_OneRoundTripWithTheResult) {
  TrialRunner runner("w1", &coordinator_, &datasets_, &shutdown_, nullptr, FastBackoff(), 1,
                     std::chrono::seconds(60));
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, SimulatedConfig(10), 4), stop_),
            TrialDisposition::kCompleted);
  // Within the interval of the lease: no report, no checkpoint, all ten points with the result.
  EXPECT_TRUE(coordinator_.progress_requests.empty());
  EXPECT_TRUE(coordinator_.checkpoint_attempts.empty());
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_EQ(coordinator_.completions[0].points_size(), 10);
  EXPECT_EQ(coordinator_.completions[0].result().outcome(), v1::TRIAL_OUTCOME_COMPLETED);
  ASSERT_EQ(coordinator_.delivered_points.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(coordinator_.delivered_points[i].iteration(), 10 * static_cast<int64_t>(i + 1));
  }
}

TEST_F(TrialRunnerTest, PointsWithReports_NoInterval_EveryPointAndCheckpointGoesAtOnce) {
  TrialRunner runner = MakeRunner();
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, SimulatedConfig(10), 4), stop_),
            TrialDisposition::kCompleted);
  // One report per point; the checkpoints after 4 and 8 find nothing pending to carry, and
  // nothing is left for the result.
  EXPECT_EQ(coordinator_.progress_requests.size(), 10u);
  ASSERT_EQ(coordinator_.checkpoints.size(), 2u);
  EXPECT_EQ(coordinator_.checkpoints[0].iteration(), 40);
  EXPECT_EQ(coordinator_.checkpoints[0].points_size(), 0);
  EXPECT_EQ(coordinator_.checkpoints[1].iteration(), 80);
  EXPECT_EQ(coordinator_.checkpoint_points_delivered, (std::vector<size_t>{4, 8}));
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_EQ(coordinator_.completions[0].points_size(), 0);
  ASSERT_EQ(coordinator_.delivered_points.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(coordinator_.delivered_points[i].iteration(), 10 * static_cast<int64_t>(i + 1));
  }
}

// Regression (merging points-with-reports and keep_final_checkpoint): with a new server's lease
// the final checkpoint was throttled like a periodic one and the completion went without it,
// so `predict TRIAL` found no weights.
TEST_F(TrialRunnerTest, PointsWithReports_KeepFinalCheckpoint_UploadsItBeforeCompleting) {
  v1::TrialConfig config = TinySyntheticConfig(60, 10);
  config.mutable_train()->set_keep_final_checkpoint(true);
  // A long report interval holds every periodic checkpoint: only the final upload may pass.
  TrialRunner runner("w1", &coordinator_, &datasets_, &shutdown_, nullptr, FastBackoff(), 1,
                     std::chrono::seconds(60));
  ASSERT_EQ(runner.Run(NewServerLease(4, 1, config, /*checkpoint_every=*/3), stop_),
            TrialDisposition::kCompleted);
  ASSERT_FALSE(coordinator_.checkpoints.empty());
  EXPECT_EQ(coordinator_.checkpoints.back().iteration(), 60);
  EXPECT_EQ(trainer::CheckpointIteration(coordinator_.checkpoints.back().state()).value(), 60);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  // Every point delivered exactly once, with reports, the checkpoint or the result.
  ASSERT_EQ(coordinator_.delivered_points.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(coordinator_.delivered_points[i].iteration(), 10 * static_cast<int64_t>(i + 1));
  }
}

TEST_F(TrialRunnerTest, PointsWithReports_OldServer_GetsThemAsProgressReports) {
  // A lease without accepts_points_with_reports: nothing rides on checkpoints or the result.
  TrialRunner runner("w1", &coordinator_, &datasets_, &shutdown_, nullptr, FastBackoff(), 1,
                     std::chrono::seconds(60));
  EXPECT_EQ(runner.Run(Lease(3, 1, SimulatedConfig(10), 4), stop_), TrialDisposition::kCompleted);
  for (const v1::UploadCheckpointRequest& checkpoint : coordinator_.checkpoints) {
    EXPECT_EQ(checkpoint.points_size(), 0);
  }
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_EQ(coordinator_.completions[0].points_size(), 0);
  EXPECT_EQ(coordinator_.delivered_points.size(), 10u);
}

TEST_F(TrialRunnerTest, PointsWithReports_PruneAnsweredToACheckpoint_CompletesAsPruned) {
  coordinator_.prune_after_checkpoints = 1;
  TrialRunner runner = MakeRunner();
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, SimulatedConfig(10), 4), stop_),
            TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.delivered_points.size(), 4u);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_EQ(coordinator_.completions[0].points_size(), 0);
  const v1::TrialResult& result = coordinator_.completions[0].result();
  EXPECT_EQ(result.outcome(), v1::TRIAL_OUTCOME_PRUNED);
  EXPECT_EQ(result.iterations(), 40);
}

TEST_F(TrialRunnerTest, PointsWithReports_ShutdownUploadsTheHeldCheckpointWithThePendingPoints) {
  // Shutdown comes with point 9: the checkpoints after 4 and 8 were held (within the interval).
  TrialRunner runner(
      "w1", &coordinator_, &datasets_, &shutdown_,
      [this](const v1::TrialConfig&, const trainer::Dataset&,
             const trainer::ProgressCallback& on_progress, const trainer::TrainOptions& options) {
        v1::TrialConfig simulated = SimulatedConfig(10);
        trainer::TrainOptions wrapped = options;
        auto progress = [&](const v1::CurvePoint& point) {
          if (point.iteration() == 90) {
            shutdown_.Notify();
            stop_.Raise();
          }
          return on_progress(point);
        };
        return RunSimulatedTrial(simulated, progress, wrapped);
      },
      FastBackoff(), 1, std::chrono::seconds(60));
  v1::TrialConfig train = TinySyntheticConfig();
  train.set_kind("train");
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, train, 4), stop_), TrialDisposition::kReleased);
  ASSERT_EQ(coordinator_.checkpoints.size(), 1u);
  EXPECT_EQ(coordinator_.checkpoints[0].iteration(), 80);
  // Points 1-9 went with it, none separately.
  EXPECT_EQ(coordinator_.checkpoints[0].points_size(), 9);
  EXPECT_TRUE(coordinator_.progress_requests.empty());
  EXPECT_EQ(coordinator_.delivered_points.size(), 9u);
  EXPECT_EQ(coordinator_.releases.size(), 1u);
}

TEST_F(TrialRunnerTest, UnknownKind_IsReportedAsTheTrialsError) {
  TrialRunner runner = MakeRunner(FakeTrain(1));
  v1::TrialConfig config = TinySyntheticConfig();
  config.set_kind("quantum");
  EXPECT_EQ(runner.Run(Lease(3, 1, config), stop_), TrialDisposition::kFailed);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_NE(coordinator_.completions[0].error().find("quantum"), std::string::npos);
}

TEST_F(TrialRunnerTest, ThreadsPerSlot_ReachTheTrainer) {
  int threads_seen = 0;
  TrialRunner runner(
      "w1", &coordinator_, &datasets_, &shutdown_,
      [&threads_seen](const v1::TrialConfig& c, const trainer::Dataset& d,
                      const trainer::ProgressCallback& on_progress,
                      const trainer::TrainOptions& options) {
        threads_seen = options.threads;
        return FakeTrain(1)(c, d, on_progress, options);
      },
      FastBackoff(), 3);
  v1::TrialConfig config = TinySyntheticConfig();
  EXPECT_EQ(runner.Run(Lease(3, 1, config), stop_), TrialDisposition::kCompleted);
  EXPECT_EQ(threads_seen, 3);
}

NextLease AskingNextLease(bool ask) {
  NextLease next;
  next.incarnation = "inc-1";
  next.ask = [ask] { return ask; };
  return next;
}

TEST_F(TrialRunnerTest, NextLease_AskedWithTheCompletion_AnswerIsTheNextTrial) {
  coordinator_.lease_with_completions = true;
  coordinator_.AddAssignment(9, 2, SimulatedConfig(3));
  TrialRunner runner = MakeRunner();
  NextLease next = AskingNextLease(true);
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, SimulatedConfig(3), 0), stop_, &next),
            TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_EQ(coordinator_.completions[0].lease_next_incarnation(), "inc-1");
  EXPECT_TRUE(next.asked);
  ASSERT_TRUE(next.lease.has_value());
  EXPECT_TRUE(next.lease->has_trial());
  EXPECT_EQ(next.lease->ref().trial_id(), 9);
  EXPECT_EQ(next.lease->ref().attempt(), 2);
  EXPECT_TRUE(coordinator_.leases.empty());
}

TEST_F(TrialRunnerTest, NextLease_NotWanted_TheCompletionAsksNothing) {
  coordinator_.lease_with_completions = true;
  coordinator_.AddAssignment(9, 1, SimulatedConfig(3));
  TrialRunner runner = MakeRunner();
  NextLease next = AskingNextLease(false);
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, SimulatedConfig(3), 0), stop_, &next),
            TrialDisposition::kCompleted);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_TRUE(coordinator_.completions[0].lease_next_incarnation().empty());
  EXPECT_FALSE(next.asked);
  EXPECT_FALSE(next.lease.has_value());
  EXPECT_EQ(coordinator_.assignments.size(), 1u);
}

TEST_F(TrialRunnerTest, NextLease_OldServer_AnswersNoNext) {
  coordinator_.AddAssignment(9, 1, SimulatedConfig(3));
  TrialRunner runner = MakeRunner();
  NextLease next = AskingNextLease(true);
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, SimulatedConfig(3), 0), stop_, &next),
            TrialDisposition::kCompleted);
  EXPECT_TRUE(next.asked);
  EXPECT_FALSE(next.lease.has_value());  // the slot leases with LeaseTrial
  EXPECT_EQ(coordinator_.assignments.size(), 1u);
}

TEST_F(TrialRunnerTest, NextLease_NothingQueued_AnswerHasNoTrial) {
  coordinator_.lease_with_completions = true;
  TrialRunner runner = MakeRunner();
  NextLease next = AskingNextLease(true);
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, SimulatedConfig(3), 0), stop_, &next),
            TrialDisposition::kCompleted);
  EXPECT_TRUE(next.asked);
  ASSERT_TRUE(next.lease.has_value());
  EXPECT_FALSE(next.lease->has_trial());
}

TEST_F(TrialRunnerTest, NextLease_FailedTrial_ItsErrorReportLeasesTheNextToo) {
  coordinator_.lease_with_completions = true;
  coordinator_.AddAssignment(9, 1, SimulatedConfig(3));
  TrialRunner runner = MakeRunner(FakeTrain(1));
  v1::TrialConfig config = TinySyntheticConfig();
  config.set_kind("quantum");
  NextLease next = AskingNextLease(true);
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, config, 0), stop_, &next), TrialDisposition::kFailed);
  ASSERT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_FALSE(coordinator_.completions[0].error().empty());
  ASSERT_TRUE(next.lease.has_value());
  EXPECT_EQ(next.lease->ref().trial_id(), 9);
}

TEST_F(TrialRunnerTest, NextLease_StoppedTrial_CompletesNothingAndAsksNothing) {
  coordinator_.lease_with_completions = true;
  coordinator_.stop_after_reports = 1;
  coordinator_.AddAssignment(9, 1, SimulatedConfig(3));
  TrialRunner runner = MakeRunner();
  NextLease next = AskingNextLease(true);
  EXPECT_EQ(runner.Run(NewServerLease(3, 1, SimulatedConfig(5), 0), stop_, &next),
            TrialDisposition::kStopped);
  EXPECT_TRUE(coordinator_.completions.empty());
  EXPECT_FALSE(next.asked);
  EXPECT_EQ(coordinator_.assignments.size(), 1u);
}

}  // namespace
}  // namespace bitsweep::worker
