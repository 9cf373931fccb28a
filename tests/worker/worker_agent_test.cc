#include "worker/worker_agent.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/worker/fake_coordinator.h"
#include "tests/worker/test_configs.h"

namespace bitsweep::worker {
namespace {

using testing::FakeCoordinator;
using testing::TinySyntheticConfig;

// Emits points until stopped, or `points` of them (0 = until stopped), then a result.
TrainFunction PointTrain(int points) {
  return [points](const v1::TrialConfig&, const trainer::Dataset&,
                  const trainer::ProgressCallback& on_progress,
                  const trainer::TrainOptions&) -> absl::StatusOr<v1::TrialResult> {
    for (int i = 1; points == 0 || i <= points; ++i) {
      v1::CurvePoint point;
      point.set_iteration(i);
      if (!on_progress(point)) return absl::CancelledError("stopped");
      if (points == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    v1::TrialResult result;
    result.set_num_classes(10);
    return result;
  };
}

class WorkerAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The fake train never touches the data, but the cache wants a real name.
    coordinator_.heartbeat_interval_ms = 10;
  }
  WorkerOptions Options(int slots, int64_t max_trials) {
    WorkerOptions options;
    options.worker_id = "w1";
    options.host = "test-host";
    options.slots = slots;
    options.max_trials = max_trials;
    options.lease_wait = std::chrono::milliseconds(50);
    options.backoff = BackoffOptions{std::chrono::milliseconds(1), std::chrono::milliseconds(5), 2};
    return options;
  }
  void MakeRunner(TrainFunction train) {
    runner_ = std::make_unique<TrialRunner>(
        "w1", &coordinator_, &datasets_, &shutdown_, std::move(train),
        BackoffOptions{std::chrono::milliseconds(1), std::chrono::milliseconds(5), 2});
  }

  FakeCoordinator coordinator_;
  DatasetCache datasets_{"/nonexistent"};
  ShutdownNotifier shutdown_;
  std::unique_ptr<TrialRunner> runner_;
};

TEST_F(WorkerAgentTest, RunsLeasedTrialsOnAllSlotsUntilMaxTrials) {
  MakeRunner(PointTrain(3));
  for (int i = 1; i <= 5; ++i) coordinator_.AddAssignment(i, 1, TinySyntheticConfig());
  WorkerAgent agent(Options(2, 4), &coordinator_, runner_.get(), &shutdown_);
  ASSERT_TRUE(agent.Run().ok());

  EXPECT_EQ(agent.trials_run(), 4);
  EXPECT_EQ(coordinator_.completions.size(), 4u);
  EXPECT_EQ(coordinator_.assignments.size(), 1u);  // the fifth was never leased
  ASSERT_EQ(coordinator_.registers.size(), 1u);
  EXPECT_EQ(coordinator_.registers[0].worker_id(), "w1");
  EXPECT_EQ(coordinator_.registers[0].host(), "test-host");
  EXPECT_EQ(coordinator_.registers[0].slots(), 2);
  EXPECT_EQ(coordinator_.registers[0].incarnation(), agent.incarnation());
  for (const v1::LeaseTrialRequest& lease : coordinator_.leases) {
    EXPECT_EQ(lease.incarnation(), agent.incarnation());
    EXPECT_EQ(lease.wait_ms(), 50);
  }
}

TEST_F(WorkerAgentTest, Incarnation_DiffersBetweenStarts) {
  MakeRunner(PointTrain(1));
  WorkerAgent first(Options(1, 1), &coordinator_, runner_.get(), &shutdown_);
  WorkerAgent second(Options(1, 1), &coordinator_, runner_.get(), &shutdown_);
  EXPECT_EQ(first.incarnation().size(), 16u);
  EXPECT_NE(first.incarnation(), second.incarnation());
}

TEST_F(WorkerAgentTest, ServerUnavailableAtStart_RegistrationIsRetried) {
  MakeRunner(PointTrain(1));
  coordinator_.register_errors = {absl::UnavailableError("connection refused"),
                                  absl::UnavailableError("connection refused")};
  coordinator_.AddAssignment(1, 1, TinySyntheticConfig());
  WorkerAgent agent(Options(1, 1), &coordinator_, runner_.get(), &shutdown_);
  ASSERT_TRUE(agent.Run().ok());
  EXPECT_EQ(coordinator_.registers.size(), 3u);
  EXPECT_EQ(coordinator_.completions.size(), 1u);
}

TEST_F(WorkerAgentTest, LeaseAnswersNotFound_WorkerRegistersAgain) {
  MakeRunner(PointTrain(1));
  coordinator_.lease_errors = {absl::NotFoundError("worker not registered")};
  coordinator_.AddAssignment(1, 1, TinySyntheticConfig());
  WorkerAgent agent(Options(1, 1), &coordinator_, runner_.get(), &shutdown_);
  ASSERT_TRUE(agent.Run().ok());
  EXPECT_EQ(coordinator_.registers.size(), 2u);
  EXPECT_EQ(coordinator_.completions.size(), 1u);
}

TEST_F(WorkerAgentTest, LeaseUnavailable_IsRetriedWithBackoff) {
  MakeRunner(PointTrain(1));
  coordinator_.lease_errors = {absl::UnavailableError("down"), absl::UnavailableError("down")};
  coordinator_.AddAssignment(1, 1, TinySyntheticConfig());
  WorkerAgent agent(Options(1, 1), &coordinator_, runner_.get(), &shutdown_);
  ASSERT_TRUE(agent.Run().ok());
  EXPECT_EQ(coordinator_.completions.size(), 1u);
  EXPECT_GE(coordinator_.leases.size(), 3u);
}

TEST_F(WorkerAgentTest, Heartbeat_ListsRunningTrialsAndStopsThoseTheServerNames) {
  MakeRunner(PointTrain(0));  // trains until stopped
  coordinator_.AddAssignment(42, 3, TinySyntheticConfig());
  WorkerAgent agent(Options(1, 1), &coordinator_, runner_.get(), &shutdown_);
  absl::Status status;
  std::thread run([&] { status = agent.Run(); });

  // Wait for a heartbeat that lists the running trial, then ask for it to stop.
  ASSERT_TRUE(coordinator_.WaitUntil([&] {
    for (const v1::HeartbeatRequest& hb : coordinator_.heartbeats) {
      if (hb.running_size() == 1 && hb.running(0).trial_id() == 42 &&
          hb.running(0).attempt() == 3) {
        return true;
      }
    }
    return false;
  }));
  {
    std::lock_guard<std::mutex> lock(coordinator_.mu);
    v1::TrialRef ref;
    ref.set_trial_id(42);
    ref.set_attempt(3);
    coordinator_.heartbeat_stop.push_back(ref);
  }
  run.join();  // max_trials = 1: the stopped trial counts, so Run returns
  EXPECT_TRUE(status.ok());
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
  EXPECT_EQ(agent.trials_run(), 1);
}

TEST_F(WorkerAgentTest, HeartbeatAnswersNotFound_WorkerRegistersAgain) {
  MakeRunner(PointTrain(0));
  coordinator_.heartbeat_errors = {absl::NotFoundError("worker not registered")};
  coordinator_.AddAssignment(1, 1, TinySyntheticConfig());
  WorkerAgent agent(Options(1, 0), &coordinator_, runner_.get(), &shutdown_);
  std::thread run([&] { EXPECT_TRUE(agent.Run().ok()); });
  EXPECT_TRUE(coordinator_.WaitUntil([&] { return coordinator_.registers.size() == 2; }));
  // After registering again, the running trial is re-attached by the next heartbeat.
  EXPECT_TRUE(coordinator_.WaitUntil([&] {
    return !coordinator_.heartbeats.empty() && coordinator_.heartbeats.back().running_size() == 1;
  }));
  agent.Shutdown();
  run.join();
}

TEST_F(WorkerAgentTest, Shutdown_StopsRunningTrialsAndLongPollsPromptly) {
  MakeRunner(PointTrain(0));
  coordinator_.AddAssignment(1, 1, TinySyntheticConfig());
  WorkerOptions options = Options(2, 0);
  options.lease_wait = std::chrono::seconds(60);  // the idle slot sits in a long poll
  WorkerAgent agent(options, &coordinator_, runner_.get(), &shutdown_);
  std::thread run([&] { EXPECT_TRUE(agent.Run().ok()); });
  ASSERT_TRUE(coordinator_.WaitUntil([&] { return coordinator_.progress_requests.size() >= 3; }));

  const auto start = std::chrono::steady_clock::now();
  agent.Shutdown();
  run.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
}

TEST_F(WorkerAgentTest, ReregisterAfterServerRestart_ListsRunningTrialsAndStopsThoseNotReattached) {
  MakeRunner(PointTrain(0));  // trains until stopped
  coordinator_.AddAssignment(7, 2, TinySyntheticConfig());
  WorkerOptions options = Options(1, 1);
  options.threads_per_slot = 2;
  WorkerAgent agent(options, &coordinator_, runner_.get(), &shutdown_);
  absl::Status status;
  std::thread run([&] { status = agent.Run(); });
  ASSERT_TRUE(coordinator_.WaitUntil([&] {
    return !coordinator_.heartbeats.empty() && coordinator_.heartbeats.back().running_size() == 1;
  }));
  {
    // The server restarted and lost the lease: it no longer knows the worker and does not
    // re-attach trial 7/2.
    std::lock_guard<std::mutex> lock(coordinator_.mu);
    v1::TrialRef ref;
    ref.set_trial_id(7);
    ref.set_attempt(2);
    coordinator_.register_stop.push_back(ref);
    coordinator_.heartbeat_errors.push_back(absl::NotFoundError("worker not registered"));
  }
  run.join();  // max_trials = 1: the stopped trial ends Run
  EXPECT_TRUE(status.ok());
  ASSERT_EQ(coordinator_.registers.size(), 2u);
  EXPECT_EQ(coordinator_.registers[0].threads_per_slot(), 2);
  EXPECT_EQ(coordinator_.registers[0].running_size(), 0);
  ASSERT_EQ(coordinator_.registers[1].running_size(), 1);
  EXPECT_EQ(coordinator_.registers[1].running(0).trial_id(), 7);
  EXPECT_EQ(coordinator_.registers[1].running(0).attempt(), 2);
  EXPECT_EQ(coordinator_.registers[1].incarnation(), coordinator_.registers[0].incarnation());
  EXPECT_TRUE(coordinator_.complete_attempts.empty());
}

TEST_F(WorkerAgentTest, EachAgentHasItsOwnIncarnation) {
  MakeRunner(PointTrain(1));
  WorkerAgent first(Options(1, 1), &coordinator_, runner_.get(), &shutdown_);
  WorkerAgent second(Options(1, 1), &coordinator_, runner_.get(), &shutdown_);
  EXPECT_FALSE(first.incarnation().empty());
  EXPECT_NE(first.incarnation(), second.incarnation());
}

TEST_F(WorkerAgentTest, ShutdownBeforeRegistering_ReturnsCancelled) {
  MakeRunner(PointTrain(1));
  coordinator_.register_errors.assign(1000, absl::UnavailableError("down"));
  WorkerAgent agent(Options(1, 0), &coordinator_, runner_.get(), &shutdown_);
  std::thread run([&] { EXPECT_EQ(agent.Run().code(), absl::StatusCode::kCancelled); });
  ASSERT_TRUE(coordinator_.WaitUntil([&] { return coordinator_.registers.size() >= 2; }));
  agent.Shutdown();
  run.join();
}

TEST_F(WorkerAgentTest, CompletionLeasesNext_OneLeaseCallThenTrialsChainOnCompletions) {
  MakeRunner(PointTrain(3));
  coordinator_.lease_with_completions = true;
  for (int i = 1; i <= 3; ++i) coordinator_.AddAssignment(i, 1, TinySyntheticConfig());
  WorkerAgent agent(Options(1, 3), &coordinator_, runner_.get(), &shutdown_);
  ASSERT_TRUE(agent.Run().ok());
  EXPECT_EQ(agent.trials_run(), 3);
  EXPECT_EQ(coordinator_.leases.size(), 1u);
  EXPECT_EQ(coordinator_.chained_leases, 2);
  ASSERT_EQ(coordinator_.completions.size(), 3u);
  EXPECT_EQ(coordinator_.completions[0].lease_next_incarnation(), agent.incarnation());
  EXPECT_EQ(coordinator_.completions[1].lease_next_incarnation(), agent.incarnation());
  // max_trials reached: the last completion asks for nothing.
  EXPECT_TRUE(coordinator_.completions[2].lease_next_incarnation().empty());
}

TEST_F(WorkerAgentTest, CompletionLeasesNext_MaxTrialsHoldsAcrossSlots) {
  MakeRunner(PointTrain(2));
  coordinator_.lease_with_completions = true;
  for (int i = 1; i <= 6; ++i) coordinator_.AddAssignment(i, 1, TinySyntheticConfig());
  WorkerAgent agent(Options(2, 3), &coordinator_, runner_.get(), &shutdown_);
  ASSERT_TRUE(agent.Run().ok());
  EXPECT_EQ(agent.trials_run(), 3);
  EXPECT_EQ(coordinator_.completions.size(), 3u);
  EXPECT_EQ(coordinator_.assignments.size(), 3u);
}

TEST_F(WorkerAgentTest, CompletionLeasesNext_NothingQueued_SlotLongPollsWithLeaseTrial) {
  MakeRunner(PointTrain(2));
  coordinator_.lease_with_completions = true;
  coordinator_.AddAssignment(1, 1, TinySyntheticConfig());
  // The second trial comes only once the first completion found the queue empty.
  coordinator_.after_complete = [this] {
    size_t completed = 0;
    {
      std::lock_guard<std::mutex> lock(coordinator_.mu);
      completed = coordinator_.completions.size();
    }
    if (completed == 1) coordinator_.AddAssignment(2, 1, TinySyntheticConfig());
  };
  WorkerAgent agent(Options(1, 2), &coordinator_, runner_.get(), &shutdown_);
  ASSERT_TRUE(agent.Run().ok());
  EXPECT_EQ(agent.trials_run(), 2);
  EXPECT_EQ(coordinator_.chained_leases, 0);
  EXPECT_EQ(coordinator_.leases.size(), 2u);
}

TEST_F(WorkerAgentTest, CompletionLeasesNext_ShutdownWithTheNextInHand_ReleasesIt) {
  MakeRunner(PointTrain(2));
  coordinator_.lease_with_completions = true;
  coordinator_.AddAssignment(1, 1, TinySyntheticConfig());
  coordinator_.AddAssignment(2, 4, TinySyntheticConfig());
  coordinator_.after_complete = [this] { shutdown_.Notify(); };
  WorkerAgent agent(Options(1, 0), &coordinator_, runner_.get(), &shutdown_);
  ASSERT_TRUE(agent.Run().ok());
  EXPECT_EQ(agent.trials_run(), 1);
  EXPECT_EQ(coordinator_.chained_leases, 1);
  ASSERT_EQ(coordinator_.releases.size(), 1u);
  EXPECT_EQ(coordinator_.releases[0].ref().trial_id(), 2);
  EXPECT_EQ(coordinator_.releases[0].ref().attempt(), 4);
}

}  // namespace
}  // namespace bitsweep::worker
