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
  EXPECT_TRUE(scheduler_->ReportProgress("w1", Ref(leased), {})->stop);
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
  EXPECT_EQ(scheduler_->RegisterWorker({"", "x", "h", 1}).status().code(),
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

// --- Issue 4: fairness, pause, release, checkpoints, re-attach, pruning, bisect ------------

TEST_F(SchedulerTest, LeaseTrial_EqualPrioritiesShareRoundRobin) {
  int64_t big = AddSweep("big", 10);
  int64_t small = AddSweep("small", 3);
  std::vector<int64_t> order;
  for (int i = 0; i < 6; ++i) order.push_back(Lease(i % 2 == 0 ? "w1" : "w2").sweep_id);
  // The sweep with fewer running trials goes next; ties go to the older sweep.
  EXPECT_EQ(order, (std::vector<int64_t>{big, small, big, small, big, small}));
  // Once the small sweep has nothing queued, the big one takes every slot.
  EXPECT_EQ(Lease().sweep_id, big);
  EXPECT_EQ(Lease().sweep_id, big);
}

TEST_F(SchedulerTest, LeaseTrial_HigherPriorityBeatsFairShare) {
  AddSweep("low", 5, 0);
  int64_t high = AddSweep("high", 3, 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Lease().sweep_id, high);
}

TEST_F(SchedulerTest, PauseSweep_NoNewLeasesRunningOnesFinish_ResumeContinues) {
  int64_t sweep = AddSweep("s", 3);
  LeasedTrial running = Lease();
  auto paused = scheduler_->PauseSweep(sweep);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state(), v1::SWEEP_STATE_PAUSED);
  EXPECT_FALSE(scheduler_->LeaseTrial("w1", "inc1")->has_value());
  // The running trial is not stopped and may finish.
  EXPECT_TRUE(scheduler_->Heartbeat("w1", "inc1", {Ref(running)})->empty());
  v1::TrialResult result;
  ASSERT_TRUE(scheduler_->CompleteTrial("w1", Ref(running), &result, "").ok());
  EXPECT_EQ(store_->GetSweep(sweep)->state(), v1::SWEEP_STATE_PAUSED);
  auto resumed = scheduler_->ResumeSweep(sweep);
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->state(), v1::SWEEP_STATE_RUNNING);
  EXPECT_EQ(Lease().sweep_id, sweep);
  EXPECT_EQ(scheduler_->PauseSweep(999).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, ReleaseTrial_RequeuesAtOnceWithoutConsumingAnAttempt) {
  AddSweep("s", 1);
  // Three releases (worker shutdowns), then three lost leases: only the latter count.
  for (int attempt = 1; attempt <= 3; ++attempt) {
    LeasedTrial leased = Lease();
    EXPECT_EQ(leased.attempt, attempt);
    ASSERT_TRUE(scheduler_->ReleaseTrial("w1", Ref(leased), "worker shutting down").ok());
    EXPECT_EQ(Trial(leased.trial_id).state(), v1::TRIAL_STATE_QUEUED);
    // The released attempt is fenced off.
    EXPECT_EQ(scheduler_->ReportProgress("w1", Ref(leased), {}).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  for (int lost = 1; lost <= 3; ++lost) {
    LeasedTrial leased = Lease();
    EXPECT_EQ(leased.attempt, 3 + lost);
    clock_.AdvanceMs(kLeaseMs + 1);
    ASSERT_TRUE(scheduler_->ExpireLeases().ok());
  }
  v1::Trial trial = Trial(1);
  EXPECT_EQ(trial.state(), v1::TRIAL_STATE_FAILED);
  EXPECT_EQ(trial.error(), "lease expired 3 times (worker lost)");
}

TEST_F(SchedulerTest, RequeuedTrial_ResumesFromCheckpoint_PointsAfterItDeleted) {
  AddSweep("s", 1);
  LeasedTrial first = Lease("w1");
  EXPECT_TRUE(first.checkpoint.empty());
  std::vector<v1::CurvePoint> points;
  for (int64_t it : {10, 20, 30, 40}) {
    v1::CurvePoint& point = points.emplace_back();
    point.set_iteration(it);
    point.set_test_accuracy(0.1 * static_cast<double>(it));
  }
  ASSERT_TRUE(scheduler_->ReportProgress("w1", Ref(first), points).ok());
  ASSERT_TRUE(scheduler_->UploadCheckpoint("w1", Ref(first), 20, "state@20").ok());
  clock_.AdvanceMs(kLeaseMs + 1);  // w1 dies
  LeasedTrial second = Lease("w2");
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(second.checkpoint, "state@20");
  EXPECT_EQ(second.checkpoint_iteration, 20);
  auto curve = store_->GetCurve(second.trial_id);
  ASSERT_TRUE(curve.ok());
  ASSERT_EQ(curve->size(), 2u);  // 10 and 20 kept, 30 and 40 will be re-sent
  EXPECT_EQ((*curve)[1].iteration(), 20);
  // The stale attempt can no longer replace the checkpoint.
  EXPECT_EQ(scheduler_->UploadCheckpoint("w1", Ref(first), 40, "late").status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(scheduler_->ReportProgress("w2", Ref(second), {points[2], points[3]}).ok());
  EXPECT_EQ(store_->GetCurve(second.trial_id)->size(), 4u);
}

TEST_F(SchedulerTest, RequeuedTrialWithoutCheckpoint_StartsOverWithAnEmptyCurve) {
  AddSweep("s", 1);
  LeasedTrial first = Lease("w1");
  v1::CurvePoint point;
  point.set_iteration(10);
  ASSERT_TRUE(scheduler_->ReportProgress("w1", Ref(first), {point}).ok());
  ASSERT_TRUE(scheduler_->ReleaseTrial("w1", Ref(first), "bye").ok());
  LeasedTrial second = Lease("w2");
  EXPECT_TRUE(second.checkpoint.empty());
  EXPECT_TRUE(store_->GetCurve(second.trial_id)->empty());
}

TEST_F(SchedulerTest, RegisterWorker_ReattachesRunningTrialsOfSameWorkerAndAttempt) {
  AddSweep("s", 2);
  LeasedTrial mine = Lease("w1");
  LeasedTrial theirs = Lease("w2");
  v1::TrialRef stale = Ref(mine);
  stale.set_attempt(mine.attempt + 5);
  clock_.AdvanceMs(kLeaseMs - 10);
  // Reconnect after a server restart, same incarnation: mine is re-attached (lease extended),
  // the other worker's trial and the wrong attempt are answered in `stop`.
  auto stop =
      scheduler_->RegisterWorker({"w1", "inc1", "host1", 2, {Ref(mine), Ref(theirs), stale}});
  ASSERT_TRUE(stop.ok()) << stop.status();
  ASSERT_EQ(stop->size(), 2u);
  EXPECT_EQ((*stop)[0].trial_id(), theirs.trial_id);
  EXPECT_EQ((*stop)[1].attempt(), stale.attempt());
  clock_.AdvanceMs(kLeaseMs - 10);
  ASSERT_TRUE(scheduler_->Heartbeat("w2", "inc1", {Ref(theirs)}).ok());
  EXPECT_EQ(*scheduler_->ExpireLeases(), 0);  // mine was extended at re-registration
  EXPECT_EQ(Trial(mine.trial_id).state(), v1::TRIAL_STATE_RUNNING);
}

TEST_F(SchedulerTest, CancelTrial_RunningOneIsToldToStop_QueuedOneNeverStarts) {
  int64_t sweep = AddSweep("s", 2);
  LeasedTrial running = Lease();
  auto cancelled = scheduler_->CancelTrial(running.trial_id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::TRIAL_STATE_CANCELLED);
  EXPECT_EQ(scheduler_->Heartbeat("w1", "inc1", {Ref(running)})->size(), 1u);
  ASSERT_TRUE(scheduler_->CancelTrial(running.trial_id + 1).ok());
  EXPECT_FALSE(scheduler_->LeaseTrial("w1", "inc1")->has_value());
  EXPECT_EQ(store_->GetSweep(sweep)->counts().cancelled(), 2);
  EXPECT_EQ(scheduler_->CancelTrial(999).status().code(), absl::StatusCode::kNotFound);
  // Rerun of the cancelled trials: requeued with a fresh budget, the attempt keeps growing.
  auto requeued = scheduler_->RerunSweep(sweep, /*failed=*/false, /*cancelled=*/true);
  ASSERT_TRUE(requeued.ok());
  EXPECT_EQ(*requeued, 2);
  EXPECT_EQ(store_->GetSweep(sweep)->state(), v1::SWEEP_STATE_QUEUED);
  LeasedTrial again = Lease();
  EXPECT_EQ(again.trial_id, running.trial_id);
  EXPECT_EQ(again.attempt, 2);
}

TEST_F(SchedulerTest, MedianPruning_StopsTrialBelowMedianOnceMinTrialsReached) {
  v1::SweepSpec spec;
  spec.set_name("pruned");
  spec.mutable_pruning()->set_rule("median");
  spec.mutable_pruning()->add_at_iterations(100);
  spec.mutable_pruning()->set_min_trials(2);
  std::vector<PlannedTrial> planned(4);
  for (int i = 0; i < 4; ++i) planned[i].config.set_seed(static_cast<uint64_t>(i));
  auto sweep = store_->CreateSweep(spec, planned, clock_.NowUnixMs());
  ASSERT_TRUE(sweep.ok());
  auto report = [&](const LeasedTrial& leased, int64_t iteration, double accuracy) {
    v1::CurvePoint point;
    point.set_iteration(iteration);
    point.set_test_accuracy(accuracy);
    auto verdict = scheduler_->ReportProgress("w1", Ref(leased), {point});
    EXPECT_TRUE(verdict.ok()) << verdict.status();
    return verdict.value_or(ProgressVerdict{});
  };
  LeasedTrial a = Lease(), b = Lease(), c = Lease(), d = Lease();
  EXPECT_FALSE(report(a, 100, 0.8).prune);    // no others yet
  EXPECT_FALSE(report(b, 100, 0.1).prune);    // one other: below min_trials
  EXPECT_FALSE(report(c, 50, 0.0).prune);     // not a deciding iteration
  ProgressVerdict low = report(c, 100, 0.2);  // others 0.8, 0.1: median 0.45
  EXPECT_TRUE(low.prune);
  EXPECT_TRUE(low.stop);
  EXPECT_FALSE(report(d, 100, 0.9).prune);
  EXPECT_TRUE(report(c, 150, 0.3).prune);  // the decision sticks
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_PRUNED);
  ASSERT_TRUE(scheduler_->CompleteTrial("w1", Ref(c), &result, "").ok());
  EXPECT_EQ(store_->GetSweep(*sweep)->counts().pruned(), 1);
  EXPECT_EQ(store_->GetCurve(c.trial_id)->size(), 3u);  // a pruned trial's points are kept
}

// Bisect over the real expander: a fake "trainer" answers accuracy by format.
class BisectSchedulerTest : public SchedulerTest {
 protected:
  void SetUp() override {
    SchedulerTest::SetUp();
    scheduler_ = std::make_unique<Scheduler>(
        store_.get(), &clock_,
        SchedulerOptions{.lease_timeout_ms = kLeaseMs, .max_attempts = 3, .expander = &expander_});
  }
  SweepExpander expander_;
};

v1::SweepSpec BisectSpec(const std::string& name) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.set_method("bisect");
  spec.set_seeds(2);
  spec.mutable_bisect()->set_axis("precision.default.format");
  spec.mutable_bisect()->set_tolerance(1.0);
  (*spec.mutable_base()->mutable_fields())["dataset"]
      .mutable_struct_value()
      ->mutable_fields()
      ->
      operator[]("name")
      .set_string_value("synthetic");
  v1::SweepParameter* formats = spec.add_parameters();
  formats->set_path("precision.default.format");
  for (int bits = 9; bits <= 23; ++bits) {  // 15 values, fewest bits first
    formats->mutable_values()->add_values()->set_string_value("mask:" + std::to_string(bits));
  }
  v1::SweepParameter* rounding = spec.add_parameters();
  rounding->set_path("precision.default.rounding");
  rounding->mutable_values()->add_values()->set_string_value("truncate");
  rounding->mutable_values()->add_values()->set_string_value("stochastic");
  return spec;
}

// Accuracy 0.95 from mask:14 on with truncate, from mask:11 on with stochastic; fp32 0.955.
double BisectAccuracy(const v1::TrialConfig& config) {
  const std::string& format = config.precision().default_().format();
  if (format == "fp32") return 0.955;
  int bits = std::stoi(format.substr(5));
  int needed = config.precision().default_().rounding() == "truncate" ? 14 : 11;
  return bits >= needed ? 0.95 : 0.3;
}

// Runs every trial the scheduler hands out to completion; returns how many ran.
int RunAll(Scheduler& scheduler) {
  int leased_count = 0;
  while (true) {
    auto leased = scheduler.LeaseTrial("w1", "inc1");
    EXPECT_TRUE(leased.ok()) << leased.status();
    if (!leased.ok() || !leased->has_value()) break;
    ++leased_count;
    v1::TrialResult result;
    result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
    result.set_final_test_accuracy(BisectAccuracy((*leased)->config));
    v1::TrialRef ref;
    ref.set_trial_id((*leased)->trial_id);
    ref.set_attempt((*leased)->attempt);
    EXPECT_TRUE(scheduler.CompleteTrial("w1", ref, &result, "").ok());
  }
  return leased_count;
}

std::set<std::string> ProbedCells(const std::vector<v1::Trial>& trials) {
  std::set<std::string> probed;
  for (const v1::Trial& trial : trials) {
    probed.insert(trial.params(0).value() + "/" + trial.params(1).value());
  }
  return probed;
}

TEST_F(BisectSchedulerTest, Bisect_ProbesLogarithmicallyAndFindsFewestBitsPerCombination) {
  const v1::SweepSpec spec = BisectSpec("bisect");
  auto trials = expander_.Expand(spec);
  ASSERT_TRUE(trials.ok()) << trials.status();
  ASSERT_EQ(trials->size(), 2u * 2 * 2);  // 2 roundings x (baseline + first probe) x 2 seeds
  auto sweep = store_->CreateSweep(spec, *trials, clock_.NowUnixMs());
  ASSERT_TRUE(sweep.ok());
  const int leased_count = RunAll(*scheduler_);
  // Per combination: the baseline and at most ceil(log2(16)) = 4 probe groups, of 2 seeds.
  EXPECT_LE(leased_count, 2 * (1 + 4) * 2);
  EXPECT_EQ(store_->GetSweep(*sweep)->state(), v1::SWEEP_STATE_DONE);
  // The answer of each combination was probed; the value just below it was probed and failed.
  auto all = store_->ListTrials(*sweep, /*with_config=*/false);
  ASSERT_TRUE(all.ok());
  const std::set<std::string> probed = ProbedCells(*all);
  EXPECT_TRUE(probed.count("mask:14/truncate"));
  EXPECT_TRUE(probed.count("mask:13/truncate"));
  EXPECT_TRUE(probed.count("mask:11/stochastic"));
  EXPECT_TRUE(probed.count("mask:10/stochastic"));
  EXPECT_TRUE(probed.count("fp32/truncate"));
  EXPECT_EQ(probed.count("mask:23/truncate"), 0u);  // never needed
}

TEST_F(BisectSchedulerTest, Bisect_SameSearchUnderAnotherName_ReusesEveryProbeAndIsDoneAtOnce) {
  const v1::SweepSpec spec = BisectSpec("bisect");
  auto first = store_->CreateSweep(spec, *expander_.Expand(spec), clock_.NowUnixMs());
  ASSERT_TRUE(first.ok());
  const int ran = RunAll(*scheduler_);
  ASSERT_GT(ran, 8);  // follow-up probes were planned
  // Another spec (name) but the same configs and seeds: the first probes are reused, and so
  // are the follow-ups they call for, planned inside the submit.
  const v1::SweepSpec again = BisectSpec("bisect again");
  auto second =
      store_->SubmitSweep(again, *expander_.Expand(again), /*resume=*/false, clock_.NowUnixMs());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->existing);
  EXPECT_EQ(second->reused, ran);
  EXPECT_EQ(second->trial_count, ran);
  EXPECT_EQ(store_->GetSweep(second->sweep_id)->state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(RunAll(*scheduler_), 0);
  EXPECT_EQ(ProbedCells(*store_->ListTrials(second->sweep_id, false)),
            ProbedCells(*store_->ListTrials(*first, false)));
}

}  // namespace
}  // namespace bitsweep::server
