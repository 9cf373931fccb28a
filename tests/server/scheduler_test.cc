#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <thread>

#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

constexpr int64_t kLeaseMs = 15'000;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = TrialStore::Open(dir_.File("scheduler.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_,
                                             SchedulerOptions{kLeaseMs, /*max_attempts=*/3});
    ASSERT_TRUE(scheduler_->RegisterWorker({"w1", "inc1", "host1", 2}).ok());
    ASSERT_TRUE(scheduler_->RegisterWorker({"w2", "inc1", "host2", 2}).ok());
  }

  int64_t AddSweep(const std::string& name, int trials, int priority = 0) {
    v1::SweepSpec spec;
    spec.set_name(name);
    spec.set_priority(priority);
    std::vector<PlannedTrial> planned(trials);
    for (int i = 0; i < trials; ++i) planned[i].config.set_seed(static_cast<uint64_t>(i));
    auto id = store_->CreateSweep(spec, planned, clock_.NowUnixMs());
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  LeasedTrial Lease(const std::string& worker = "w1") {
    auto leased = scheduler_->LeaseTrial(worker, "inc1");
    EXPECT_TRUE(leased.ok()) << leased.status();
    EXPECT_TRUE(leased.ok() && leased->has_value());
    return leased.ok() && leased->has_value() ? **leased : LeasedTrial{};
  }

  static v1::TrialRef Ref(const LeasedTrial& leased) {
    v1::TrialRef ref;
    ref.set_trial_id(leased.trial_id);
    ref.set_attempt(leased.attempt);
    return ref;
  }

  v1::Trial Trial(int64_t id) { return store_->GetTrial(id).value_or(v1::Trial{}); }

  testing::TempDir dir_;
  common::FakeClock clock_;
  std::unique_ptr<TrialStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, LeaseTrial_HighestPriorityFirst) {
  AddSweep("normal", 1, 0);
  int64_t urgent = AddSweep("urgent", 1, 10);
  EXPECT_EQ(Lease().sweep_id, urgent);
}

TEST_F(SchedulerTest, LeaseTrial_SetsLeaseExpiryFromClock) {
  AddSweep("s", 1);
  LeasedTrial leased = Lease();
  EXPECT_EQ(leased.attempt, 1);
  clock_.AdvanceMs(kLeaseMs);  // exactly at expiry: still held
  EXPECT_EQ(*scheduler_->ExpireLeases(), 0);
  clock_.AdvanceMs(1);
  EXPECT_EQ(*scheduler_->ExpireLeases(), 1);
}

TEST_F(SchedulerTest, LeaseTrial_UnregisteredWorkerIsNotFound) {
  AddSweep("s", 1);
  EXPECT_EQ(scheduler_->LeaseTrial("ghost", "x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->LeaseTrial("w1", "old").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, LeaseTrial_NothingQueuedReturnsEmpty) {
  auto leased = scheduler_->LeaseTrial("w1", "inc1");
  ASSERT_TRUE(leased.ok());
  EXPECT_FALSE(leased->has_value());
}

TEST_F(SchedulerTest, Heartbeat_ExtendsLease) {
  AddSweep("s", 1);
  LeasedTrial leased = Lease();
  for (int i = 0; i < 5; ++i) {
    clock_.AdvanceMs(kLeaseMs - 1000);
    auto stop = scheduler_->Heartbeat("w1", "inc1", {Ref(leased)});
    ASSERT_TRUE(stop.ok()) << stop.status();
    EXPECT_TRUE(stop->empty());
    EXPECT_EQ(*scheduler_->ExpireLeases(), 0);
  }
  EXPECT_EQ(Trial(leased.trial_id).state(), v1::TRIAL_STATE_RUNNING);
}

TEST_F(SchedulerTest, ExpiredLease_RequeuesTrialWithNextAttemptThenFailsAfterMaxAttempts) {
  int64_t sweep = AddSweep("s", 1);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    LeasedTrial leased = Lease(attempt % 2 == 1 ? "w1" : "w2");
    EXPECT_EQ(leased.attempt, attempt);
    clock_.AdvanceMs(kLeaseMs + 1);
    if (attempt < 3) {
      // The next lease call runs the expiry pass itself.
      EXPECT_EQ(Trial(leased.trial_id).state(), v1::TRIAL_STATE_RUNNING);
    } else {
      EXPECT_EQ(*scheduler_->ExpireLeases(), 1);
    }
  }
  v1::Trial trial = Trial(1);
  EXPECT_EQ(trial.state(), v1::TRIAL_STATE_FAILED);
  EXPECT_EQ(trial.attempt(), 3);
  EXPECT_EQ(trial.error(), "lease expired 3 times (worker lost)");
  EXPECT_EQ(store_->GetSweep(sweep)->state(), v1::SWEEP_STATE_DONE);
}

TEST_F(SchedulerTest, StaleAttempt_IsRefusedAfterRequeue) {
  AddSweep("s", 1);
  LeasedTrial first = Lease("w1");
  clock_.AdvanceMs(kLeaseMs + 1);
  LeasedTrial second = Lease("w2");
  ASSERT_EQ(second.trial_id, first.trial_id);
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(scheduler_->ReportProgress("w1", Ref(first), {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::TrialResult result;
  EXPECT_EQ(scheduler_->CompleteTrial("w1", Ref(first), &result, "").code(),
            absl::StatusCode::kFailedPrecondition);
  auto stop = scheduler_->Heartbeat("w1", "inc1", {Ref(first)});
  ASSERT_TRUE(stop.ok());
  ASSERT_EQ(stop->size(), 1u);  // the old holder is told to stop
  EXPECT_TRUE(scheduler_->CompleteTrial("w2", Ref(second), &result, "").ok());
  EXPECT_EQ(Trial(first.trial_id).state(), v1::TRIAL_STATE_DONE);
}

TEST_F(SchedulerTest, CancelSweep_StopsRunningTrialsAtNextHeartbeat) {
  int64_t sweep = AddSweep("s", 3);
  LeasedTrial leased = Lease();
  auto cancelled = scheduler_->CancelSweep(sweep);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::SWEEP_STATE_CANCELLED);
  EXPECT_EQ(cancelled->counts().cancelled(), 3);
  auto stop = scheduler_->Heartbeat("w1", "inc1", {Ref(leased)});
  ASSERT_EQ(stop->size(), 1u);
  EXPECT_TRUE(*scheduler_->ReportProgress("w1", Ref(leased), {}));
  EXPECT_FALSE(scheduler_->LeaseTrial("w1", "inc1")->has_value());
  EXPECT_EQ(scheduler_->CancelSweep(999).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, RegisterWorker_NewIncarnationRequeuesAtOnce) {
  AddSweep("s", 1);
  LeasedTrial leased = Lease("w1");
  ASSERT_TRUE(scheduler_->RegisterWorker({"w1", "inc2", "host1", 2}).ok());
  EXPECT_EQ(Trial(leased.trial_id).state(), v1::TRIAL_STATE_QUEUED);
  auto again = scheduler_->LeaseTrial("w2", "inc1");
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->attempt, 2);
  EXPECT_EQ(scheduler_->RegisterWorker({"", "x", "h", 1}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, GraceRunningLeases_GivesWorkersALeasePeriodAfterRestart) {
  AddSweep("s", 1);
  LeasedTrial leased = Lease();
  clock_.AdvanceMs(kLeaseMs * 4);  // the server was down for a while
  EXPECT_EQ(*scheduler_->GraceRunningLeases(), 1);
  EXPECT_EQ(*scheduler_->ExpireLeases(), 0);
  auto stop = scheduler_->Heartbeat("w1", "inc1", {Ref(leased)});
  ASSERT_TRUE(stop.ok());
  EXPECT_TRUE(stop->empty());  // re-attached
  clock_.AdvanceMs(kLeaseMs + 1);
  EXPECT_EQ(*scheduler_->ExpireLeases(), 1);
}

TEST_F(SchedulerTest, ConcurrentLeases_HandEachTrialOutOnce) {
  constexpr int kTrials = 200;
  AddSweep("s", kTrials);
  std::vector<std::vector<int64_t>> leased_by_thread(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string worker = t % 2 == 0 ? "w1" : "w2";
      while (true) {
        auto leased = scheduler_->LeaseTrial(worker, "inc1");
        if (!leased.ok() || !leased->has_value()) return;
        leased_by_thread[t].push_back((*leased)->trial_id);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<int64_t> all;
  size_t total = 0;
  for (const auto& ids : leased_by_thread) {
    total += ids.size();
    all.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(total, static_cast<size_t>(kTrials));
  EXPECT_EQ(all.size(), static_cast<size_t>(kTrials));
}

TEST_F(SchedulerTest, ListWorkers_MarksSilentWorkersDead) {
  AddSweep("s", 1);
  Lease("w1");
  clock_.AdvanceMs(kLeaseMs + 1);
  ASSERT_TRUE(scheduler_->Heartbeat("w2", "inc1", {}).ok());
  auto workers = scheduler_->ListWorkers();
  ASSERT_TRUE(workers.ok());
  ASSERT_EQ(workers->size(), 2u);
  EXPECT_FALSE((*workers)[0].alive());
  EXPECT_EQ((*workers)[0].running(), 1);
  EXPECT_TRUE((*workers)[1].alive());
}

}  // namespace
}  // namespace bitsweep::server
