#include "server/trial_store.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/embedded_file.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;
constexpr int kMaxAttempts = 3;

// Cells first .. first+n-1 of one grid: the same cell always has the same config_hash.
std::vector<PlannedTrial> MakeTrials(int n, int first = 0) {
  std::vector<PlannedTrial> trials(n);
  for (int j = 0; j < n; ++j) {
    const int i = first + j;
    trials[j].config.set_seed(static_cast<uint64_t>(i));
    trials[j].config.mutable_train()->set_batch_size(32 + i);
    v1::TrialParam param;
    param.set_path("train.batch_size");
    param.set_value(std::to_string(32 + i));
    trials[j].params.push_back(param);
    trials[j].config_hash = "hash" + std::to_string(i);
  }
  return trials;
}

v1::SweepSpec Spec(const std::string& name, int priority = 0) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.set_priority(priority);
  return spec;
}

v1::TrialRef Ref(const LeasedTrial& leased) {
  v1::TrialRef ref;
  ref.set_trial_id(leased.trial_id);
  ref.set_attempt(leased.attempt);
  return ref;
}

v1::CurvePoint Point(int64_t iteration, double accuracy) {
  v1::CurvePoint point;
  point.set_iteration(iteration);
  point.set_test_accuracy(accuracy);
  return point;
}

class TrialStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = TrialStore::Open(dir_.File("test.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->RegisterWorker("w1", "inc1", "host", 2, kNow, kMaxAttempts).ok());
  }

  LeasedTrial MustLease(const std::string& worker = "w1", int64_t expires = kNow + 1000) {
    auto leased = store_->LeaseNext(worker, kNow, expires);
    EXPECT_TRUE(leased.ok()) << leased.status();
    EXPECT_TRUE(leased->has_value());
    return leased->value_or(LeasedTrial{});
  }

  testing::TempDir dir_;
  std::unique_ptr<TrialStore> store_;
};

TEST_F(TrialStoreTest, Open_AppliesMigrationsOnceAndReopenIsIdempotent) {
  // Every embedded migration (0001, 0002, ...) is applied.
  const int latest = static_cast<int>(EmbeddedMigrations().size());
  EXPECT_GE(latest, 2);
  EXPECT_EQ(store_->schema_version(), latest);
  ASSERT_TRUE(store_->CreateSweep(Spec("a"), MakeTrials(2), kNow).ok());
  store_.reset();
  auto reopened = TrialStore::Open(dir_.File("test.db"));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->schema_version(), latest);
  auto sweeps = (*reopened)->ListSweeps();
  ASSERT_TRUE(sweeps.ok());
  EXPECT_EQ(sweeps->size(), 1u);
}

TEST_F(TrialStoreTest, Open_BadPathIsUnavailable) {
  auto store = TrialStore::Open(dir_.File("no/such/dir/x.db"));
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(TrialStoreTest, CreateSweep_StoresSweepAndTrialsInOrder) {
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(3), kNow);
  ASSERT_TRUE(id.ok()) << id.status();
  auto sweep = store_->GetSweep(*id);
  ASSERT_TRUE(sweep.ok());
  EXPECT_EQ(sweep->name(), "s");
  EXPECT_EQ(sweep->state(), v1::SWEEP_STATE_QUEUED);
  EXPECT_EQ(sweep->counts().total(), 3);
  EXPECT_EQ(sweep->counts().queued(), 3);
  auto trials = store_->ListTrials(*id, /*with_config=*/true);
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*trials)[i].seed(), static_cast<uint64_t>(i));
    EXPECT_EQ((*trials)[i].config().train().batch_size(), 32 + i);
    ASSERT_EQ((*trials)[i].params_size(), 1);
    EXPECT_EQ((*trials)[i].params(0).value(), std::to_string(32 + i));
    EXPECT_EQ((*trials)[i].config_hash(), "hash" + std::to_string(i));
  }
}

TEST_F(TrialStoreTest, CreateSweep_HundredThousandTrialsInOneTransaction) {
  auto id = store_->CreateSweep(Spec("big"), MakeTrials(100'000), kNow);
  ASSERT_TRUE(id.ok()) << id.status();
  auto sweep = store_->GetSweep(*id);
  ASSERT_TRUE(sweep.ok());
  EXPECT_EQ(sweep->counts().total(), 100'000);
}

TEST_F(TrialStoreTest, UnknownIds_AreNotFound) {
  EXPECT_EQ(store_->GetSweep(42).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListTrials(42, false).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetTrial(42).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetCurve(42).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->CancelSweep(42, kNow).code(), absl::StatusCode::kNotFound);
}

// Equal priorities share fairly: the sweep with fewer running trials first, then the older.
TEST_F(TrialStoreTest, LeaseNext_PrefersPriorityThenFewestRunningThenOlderSweepThenIndex) {
  auto low = store_->CreateSweep(Spec("low", 0), MakeTrials(2), kNow);
  auto high = store_->CreateSweep(Spec("high", 5), MakeTrials(2), kNow);
  auto low2 = store_->CreateSweep(Spec("low2", 0), MakeTrials(1), kNow);
  ASSERT_TRUE(low.ok() && high.ok() && low2.ok());
  std::vector<std::pair<int64_t, int>> order;
  for (int i = 0; i < 5; ++i) {
    LeasedTrial leased = MustLease();
    auto trial = store_->GetTrial(leased.trial_id);
    ASSERT_TRUE(trial.ok());
    order.emplace_back(leased.sweep_id, static_cast<int>(trial->seed()));
    EXPECT_EQ(leased.attempt, 1);
  }
  std::vector<std::pair<int64_t, int>> expected = {
      {*high, 0}, {*high, 1}, {*low, 0}, {*low2, 0}, {*low, 1}};
  EXPECT_EQ(order, expected);
  auto none = store_->LeaseNext("w1", kNow, kNow + 1000);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(TrialStoreTest, HasQueuedTrials_IgnoresCancelledSweeps) {
  EXPECT_FALSE(*store_->HasQueuedTrials());
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(1), kNow);
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(*store_->HasQueuedTrials());
  ASSERT_TRUE(store_->CancelSweep(*id, kNow).ok());
  EXPECT_FALSE(*store_->HasQueuedTrials());
}

TEST_F(TrialStoreTest, Lease_MakesTrialAndSweepRunning) {
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(2), kNow);
  ASSERT_TRUE(id.ok());
  LeasedTrial leased = MustLease();
  auto trial = store_->GetTrial(leased.trial_id);
  ASSERT_TRUE(trial.ok());
  EXPECT_EQ(trial->state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(trial->worker_id(), "w1");
  EXPECT_EQ(trial->started_unix_ms(), kNow);
  EXPECT_EQ(store_->GetSweep(*id)->state(), v1::SWEEP_STATE_RUNNING);
  auto workers = store_->ListWorkers();
  ASSERT_TRUE(workers.ok());
  ASSERT_EQ(workers->size(), 1u);
  EXPECT_EQ((*workers)[0].running(), 1);
}

TEST_F(TrialStoreTest, AppendPoints_ResentPointReplacesInsteadOfDoubling) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  LeasedTrial leased = MustLease();
  ASSERT_TRUE(store_->AppendPoints("w1", Ref(leased), {Point(100, 0.5), Point(200, 0.6)}).ok());
  auto stop = store_->AppendPoints("w1", Ref(leased), {Point(200, 0.7), Point(300, 0.8)});
  ASSERT_TRUE(stop.ok()) << stop.status();
  EXPECT_FALSE(stop->stop);
  auto curve = store_->GetCurve(leased.trial_id);
  ASSERT_TRUE(curve.ok());
  ASSERT_EQ(curve->size(), 3u);
  EXPECT_EQ((*curve)[1].iteration(), 200);
  EXPECT_DOUBLE_EQ((*curve)[1].test_accuracy(), 0.7);
}

TEST_F(TrialStoreTest, AppendPoints_SiteAndLayerStatsRoundTrip_OnlyWhereRecorded) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  LeasedTrial leased = MustLease();
  v1::CurvePoint with_stats = Point(100, 0.5);
  v1::SiteStats* weights = with_stats.add_sites();
  weights->set_site("weights");
  weights->set_effective_bits(12);
  weights->set_quantization_error_percent(0.25);
  weights->set_overflow_percent(1.5);
  with_stats.add_sites()->set_site("activations");
  v1::LayerStats* conv0 = with_stats.add_layers();
  conv0->set_layer("conv0");
  conv0->set_gradient_norm(0.03);
  conv0->set_flushed_to_zero(0.125);
  ASSERT_TRUE(store_->AppendPoints("w1", Ref(leased), {with_stats, Point(200, 0.6)}).ok());
  auto curve = store_->GetCurve(leased.trial_id);
  ASSERT_TRUE(curve.ok()) << curve.status();
  ASSERT_EQ(curve->size(), 2u);
  const v1::CurvePoint& first = (*curve)[0];
  EXPECT_DOUBLE_EQ(first.test_accuracy(), 0.5);
  ASSERT_EQ(first.sites_size(), 2);
  EXPECT_EQ(first.sites(0).site(), "weights");
  EXPECT_DOUBLE_EQ(first.sites(0).effective_bits(), 12);
  EXPECT_DOUBLE_EQ(first.sites(0).quantization_error_percent(), 0.25);
  EXPECT_DOUBLE_EQ(first.sites(0).overflow_percent(), 1.5);
  EXPECT_EQ(first.sites(1).site(), "activations");
  ASSERT_EQ(first.layers_size(), 1);
  EXPECT_EQ(first.layers(0).layer(), "conv0");
  EXPECT_DOUBLE_EQ(first.layers(0).gradient_norm(), 0.03);
  EXPECT_DOUBLE_EQ(first.layers(0).flushed_to_zero(), 0.125);
  EXPECT_EQ((*curve)[1].sites_size(), 0);
  EXPECT_EQ((*curve)[1].layers_size(), 0);
  // A point without statistics stores NULL, not an empty blob.
  SQLite::Database db(dir_.File("test.db"), SQLite::OPEN_READWRITE);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM curve_points WHERE stats IS NULL").getInt(), 1);
}

TEST_F(TrialStoreTest, GetCurve_CorruptStatsIsDataLossNamingTheIteration) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  LeasedTrial leased = MustLease();
  v1::CurvePoint point = Point(100, 0.5);
  point.add_sites()->set_site("weights");
  ASSERT_TRUE(store_->AppendPoints("w1", Ref(leased), {point}).ok());
  {
    SQLite::Database db(dir_.File("test.db"), SQLite::OPEN_READWRITE);
    db.exec("UPDATE curve_points SET stats = x'ffffffff'");
  }
  auto curve = store_->GetCurve(leased.trial_id);
  EXPECT_EQ(curve.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(curve.status().message().find("iteration 100"), std::string::npos) << curve.status();
}

TEST_F(TrialStoreTest, Reports_WithStaleAttemptOrWrongWorkerAreRefused) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  LeasedTrial leased = MustLease();
  v1::TrialRef stale = Ref(leased);
  stale.set_attempt(leased.attempt + 1);
  EXPECT_EQ(store_->AppendPoints("w1", stale, {Point(1, 0.1)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->AppendPoints("w2", Ref(leased), {Point(1, 0.1)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::TrialRef missing;
  missing.set_trial_id(999);
  missing.set_attempt(1);
  EXPECT_EQ(store_->AppendPoints("w1", missing, {}).status().code(), absl::StatusCode::kNotFound);
  v1::TrialResult result;
  EXPECT_EQ(store_->CompleteTrial("w1", stale, &result, "", kNow).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TrialStoreTest, CompleteTrial_FinishesTrialAndSweep) {
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(2), kNow);
  ASSERT_TRUE(id.ok());
  LeasedTrial first = MustLease();
  LeasedTrial second = MustLease();
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_DIVERGED);
  result.set_final_test_accuracy(0.1);
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(first), &result, "", kNow + 5).ok());
  EXPECT_EQ(store_->GetSweep(*id)->state(), v1::SWEEP_STATE_RUNNING);
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(second), nullptr, "bad dataset", kNow + 6).ok());
  auto sweep = store_->GetSweep(*id);
  ASSERT_TRUE(sweep.ok());
  EXPECT_EQ(sweep->state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(sweep->finished_unix_ms(), kNow + 6);
  EXPECT_EQ(sweep->counts().done(), 1);
  EXPECT_EQ(sweep->counts().diverged(), 1);
  EXPECT_EQ(sweep->counts().failed(), 1);
  auto failed = store_->GetTrial(second.trial_id);
  EXPECT_EQ(failed->state(), v1::TRIAL_STATE_FAILED);
  EXPECT_EQ(failed->error(), "bad dataset");
  auto done = store_->GetTrial(first.trial_id);
  EXPECT_DOUBLE_EQ(done->result().final_test_accuracy(), 0.1);
  // A second completion of a finished trial is refused.
  EXPECT_EQ(store_->CompleteTrial("w1", Ref(first), &result, "", kNow).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*store_->ListWorkers())[0].trials_done(), 2);
}

TEST_F(TrialStoreTest, ExpireLeases_RequeuesKeepingAttemptThenFailsAtMaxAttempts) {
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(1), kNow);
  ASSERT_TRUE(id.ok());
  for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
    LeasedTrial leased = MustLease("w1", kNow + 100);
    EXPECT_EQ(leased.attempt, attempt);
    auto expired = store_->ExpireLeases(kNow + 101, kMaxAttempts);
    ASSERT_TRUE(expired.ok());
    EXPECT_EQ(*expired, 1);
  }
  auto trial = store_->GetTrial(1);
  ASSERT_TRUE(trial.ok());
  EXPECT_EQ(trial->state(), v1::TRIAL_STATE_FAILED);
  EXPECT_EQ(trial->error(), "lease expired 3 times (worker lost)");
  EXPECT_EQ(store_->GetSweep(*id)->state(), v1::SWEEP_STATE_DONE);
}

TEST_F(TrialStoreTest, ExpireTouchAndLease_ReleasesTheLostLeaseThenLeasesIt) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  ASSERT_TRUE(store_->RegisterWorker("w2", "inc2", "host", 1, kNow, kMaxAttempts).ok());
  LeasedTrial first = MustLease("w1", kNow + 100);
  // w1's lease passed: the same call requeues the trial and hands it to w2, next attempt.
  auto outcome = store_->ExpireTouchAndLease("w2", "inc2", kNow + 500, kNow + 1500, kMaxAttempts);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->expired, 1);
  ASSERT_TRUE(outcome->trial.has_value());
  EXPECT_EQ(outcome->trial->trial_id, first.trial_id);
  EXPECT_EQ(outcome->trial->attempt, first.attempt + 1);
  auto trial = store_->GetTrial(first.trial_id);
  ASSERT_TRUE(trial.ok());
  EXPECT_EQ(trial->state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(trial->worker_id(), "w2");
  auto workers = store_->ListWorkers();
  ASSERT_TRUE(workers.ok());
  ASSERT_EQ(workers->size(), 2u);
  EXPECT_EQ((*workers)[1].worker_id(), "w2");
  EXPECT_EQ((*workers)[1].last_heartbeat_unix_ms(), kNow + 500);
  // The old attempt is fenced off.
  EXPECT_EQ(store_->AppendPoints("w1", Ref(first), {Point(1, 0.5)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Nothing left: no trial, nothing expired.
  auto empty = store_->ExpireTouchAndLease("w1", "inc1", kNow + 600, kNow + 1600, kMaxAttempts);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->expired, 0);
  EXPECT_FALSE(empty->trial.has_value());
}

TEST_F(TrialStoreTest, ExpireTouchAndLease_UnknownIncarnation_KeepsTheExpiryLeasesNothing) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(2), kNow).ok());
  LeasedTrial first = MustLease("w1", kNow + 100);
  auto outcome = store_->ExpireTouchAndLease("w1", "stale", kNow + 500, kNow + 1500, kMaxAttempts);
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound);
  // The expiry was committed although the lease was refused; the other trial stays queued.
  auto trial = store_->GetTrial(first.trial_id);
  ASSERT_TRUE(trial.ok());
  EXPECT_EQ(trial->state(), v1::TRIAL_STATE_QUEUED);
  EXPECT_EQ(store_->GetSweep(1)->counts().queued(), 2);
}

TEST_F(TrialStoreTest, CompleteAndLease_StoresTheResultAndLeasesTheNextInOneCall) {
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(2), kNow);
  ASSERT_TRUE(id.ok());
  LeasedTrial first = MustLease();
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  result.set_final_test_accuracy(0.9);
  auto outcome =
      store_->CompleteAndLease("w1", Ref(first), &result, "", kNow + 5,
                               {Point(10, 0.8), Point(20, 0.9)}, "inc1", kNow + 2000, kMaxAttempts);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  ASSERT_TRUE(outcome->trial.has_value());
  EXPECT_NE(outcome->trial->trial_id, first.trial_id);
  EXPECT_EQ(outcome->trial->attempt, 1);
  auto done = store_->GetTrial(first.trial_id);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), v1::TRIAL_STATE_DONE);
  EXPECT_DOUBLE_EQ(done->result().final_test_accuracy(), 0.9);
  EXPECT_EQ(store_->GetCurve(first.trial_id)->size(), 2u);
  auto next = store_->GetTrial(outcome->trial->trial_id);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_EQ(next->worker_id(), "w1");
  auto workers = store_->ListWorkers();
  ASSERT_TRUE(workers.ok());
  EXPECT_EQ((*workers)[0].trials_done(), 1);
  EXPECT_EQ((*workers)[0].last_heartbeat_unix_ms(), kNow + 5);
  // The last one: completed as failed, nothing left to lease; the sweep is done.
  auto last = store_->CompleteAndLease("w1", Ref(*outcome->trial), nullptr, "bad dataset", kNow + 6,
                                       {}, "inc1", kNow + 2000, kMaxAttempts);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_FALSE(last->trial.has_value());
  EXPECT_EQ(store_->GetTrial(outcome->trial->trial_id)->error(), "bad dataset");
  EXPECT_EQ(store_->GetSweep(*id)->state(), v1::SWEEP_STATE_DONE);
}

TEST_F(TrialStoreTest, CompleteAndLease_RefusedCompletion_LeasesNothing) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(2), kNow).ok());
  LeasedTrial first = MustLease();
  v1::TrialRef stale = Ref(first);
  stale.set_attempt(first.attempt + 1);
  v1::TrialResult result;
  auto outcome = store_->CompleteAndLease("w1", stale, &result, "", kNow + 5, {Point(10, 0.5)},
                                          "inc1", kNow + 2000, kMaxAttempts);
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetSweep(1)->counts().queued(), 1);
  EXPECT_EQ(store_->GetTrial(first.trial_id)->state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_TRUE(store_->GetCurve(first.trial_id)->empty());
}

TEST_F(TrialStoreTest, CompleteAndLease_UnknownIncarnation_CompletionStandsNothingLeased) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(2), kNow).ok());
  LeasedTrial first = MustLease();
  v1::TrialResult result;
  auto outcome = store_->CompleteAndLease("w1", Ref(first), &result, "", kNow + 5, {}, "stale",
                                          kNow + 2000, kMaxAttempts);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_FALSE(outcome->trial.has_value());
  EXPECT_EQ(store_->GetTrial(first.trial_id)->state(), v1::TRIAL_STATE_DONE);
  EXPECT_EQ(store_->GetSweep(1)->counts().queued(), 1);
}

TEST_F(TrialStoreTest, CompleteAndLease_CancelledTrial_StaysCancelledAndTheNextIsLeased) {
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(2), kNow);
  ASSERT_TRUE(id.ok());
  LeasedTrial first = MustLease();
  ASSERT_TRUE(store_->CancelTrial(first.trial_id, kNow + 1).ok());
  v1::TrialResult result;
  auto outcome = store_->CompleteAndLease("w1", Ref(first), &result, "", kNow + 5, {}, "inc1",
                                          kNow + 2000, kMaxAttempts);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(store_->GetTrial(first.trial_id)->state(), v1::TRIAL_STATE_CANCELLED);
  ASSERT_TRUE(outcome->trial.has_value());
  EXPECT_NE(outcome->trial->trial_id, first.trial_id);
}

TEST_F(TrialStoreTest, ReportsAfterAFailedCall_ReuseTheirStatementsCleanly) {
  // The writer's statements are prepared once and reused: a call that failed half-way (fence
  // refused) must not leave a statement bound or stepping for the next call.
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  LeasedTrial leased = MustLease();
  v1::TrialRef stale = Ref(leased);
  stale.set_attempt(leased.attempt + 1);
  for (int i = 1; i <= 50; ++i) {
    EXPECT_FALSE(store_->AppendPoints("w1", stale, {Point(i, 0.1)}).ok());
    ASSERT_TRUE(store_->AppendPoints("w1", Ref(leased), {Point(i, 0.01 * i)}).ok());
  }
  auto curve = store_->GetCurve(leased.trial_id);
  ASSERT_TRUE(curve.ok());
  ASSERT_EQ(curve->size(), 50u);
  EXPECT_DOUBLE_EQ((*curve)[49].test_accuracy(), 0.5);
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(leased), &result, "", kNow).ok());
  EXPECT_EQ(store_->GetTrial(leased.trial_id)->state(), v1::TRIAL_STATE_DONE);
}

TEST_F(TrialStoreTest, Heartbeat_ExtendsOwnLeasesAndStopsOthers) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(2), kNow).ok());
  LeasedTrial leased = MustLease("w1", kNow + 100);
  v1::TrialRef stale = Ref(leased);
  stale.set_attempt(7);
  auto stop = store_->Heartbeat("w1", "inc1", {Ref(leased), stale}, kNow + 50, kNow + 500);
  ASSERT_TRUE(stop.ok()) << stop.status();
  ASSERT_EQ(stop->size(), 1u);
  EXPECT_EQ((*stop)[0].attempt(), 7);
  EXPECT_EQ(*store_->ExpireLeases(kNow + 200, kMaxAttempts), 0);
  EXPECT_EQ(*store_->ExpireLeases(kNow + 501, kMaxAttempts), 1);
  EXPECT_EQ(store_->Heartbeat("w1", "other", {}, kNow, kNow).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TrialStoreTest, CancelSweep_CancelsQueuedAndTellsRunningToStop) {
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(3), kNow);
  ASSERT_TRUE(id.ok());
  LeasedTrial leased = MustLease();
  ASSERT_TRUE(store_->CancelSweep(*id, kNow + 1).ok());
  auto sweep = store_->GetSweep(*id);
  EXPECT_EQ(sweep->state(), v1::SWEEP_STATE_CANCELLED);
  EXPECT_EQ(sweep->counts().cancelled(), 3);
  auto stop = store_->AppendPoints("w1", Ref(leased), {Point(1, 0.1)});
  ASSERT_TRUE(stop.ok());
  EXPECT_TRUE(stop->stop);
  EXPECT_FALSE(stop->prune);
  auto refs = store_->Heartbeat("w1", "inc1", {Ref(leased)}, kNow, kNow + 100);
  ASSERT_EQ(refs->size(), 1u);
  EXPECT_FALSE(store_->LeaseNext("w1", kNow, kNow + 100)->has_value());
  v1::TrialResult result;
  EXPECT_TRUE(store_->CompleteTrial("w1", Ref(leased), &result, "", kNow).ok());
  EXPECT_EQ(store_->GetTrial(leased.trial_id)->state(), v1::TRIAL_STATE_CANCELLED);
}

TEST_F(TrialStoreTest, RegisterWorker_NewIncarnationReleasesOldTrialsAtOnce) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  LeasedTrial leased = MustLease("w1", kNow + 100'000);
  auto released = store_->RegisterWorker("w1", "inc2", "host", 2, kNow, kMaxAttempts);
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(released->released, 1);
  EXPECT_EQ(store_->GetTrial(leased.trial_id)->state(), v1::TRIAL_STATE_QUEUED);
  LeasedTrial again = MustLease("w1");
  EXPECT_EQ(again.trial_id, leased.trial_id);
  EXPECT_EQ(again.attempt, 2);
  // The same incarnation registering again keeps its trials.
  EXPECT_EQ(store_->RegisterWorker("w1", "inc2", "host", 2, kNow, kMaxAttempts)->released, 0);
}

TEST_F(TrialStoreTest, ListTrialsChangedSince_ReturnsOnlyChangedTrials) {
  auto id = store_->CreateSweep(Spec("s"), MakeTrials(3), kNow);
  ASSERT_TRUE(id.ok());
  auto all = store_->ListTrialsChangedSince(*id, 0, true);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->trials.size(), 3u);
  LeasedTrial leased = MustLease();
  auto changed = store_->ListTrialsChangedSince(*id, all->last_seq, false);
  ASSERT_TRUE(changed.ok());
  ASSERT_EQ(changed->trials.size(), 1u);
  EXPECT_EQ(changed->trials[0].id(), leased.trial_id);
  EXPECT_TRUE(store_->ListTrialsChangedSince(*id, changed->last_seq, false)->trials.empty());
}

// --- Issue 4: identity, resume, checkpoints, crash safety -------------------------------------

TEST_F(TrialStoreTest, SubmitSweep_IdenticalSpecReturnsExistingSweep_NoNewTrials) {
  auto first = store_->SubmitSweep(Spec("s"), MakeTrials(3), /*resume=*/false, kNow);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->existing);
  EXPECT_EQ(first->trial_count, 3);
  auto again = store_->SubmitSweep(Spec("s"), MakeTrials(3), /*resume=*/false, kNow);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->existing);
  EXPECT_EQ(again->sweep_id, first->sweep_id);
  EXPECT_EQ(again->trial_count, 3);
  EXPECT_EQ(store_->ListSweeps()->size(), 1u);
  // Any change of the spec is another sweep.
  auto other = store_->SubmitSweep(Spec("s", /*priority=*/1), MakeTrials(3), false, kNow);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->existing);
  EXPECT_NE(other->sweep_id, first->sweep_id);
}

TEST_F(TrialStoreTest, SubmitSweepResume_RequeuesFailedAndCancelledOnly_ReusesFinished) {
  auto submitted = store_->SubmitSweep(Spec("s"), MakeTrials(4), false, kNow);
  ASSERT_TRUE(submitted.ok());
  const int64_t sweep = submitted->sweep_id;
  LeasedTrial done = MustLease();
  LeasedTrial failed = MustLease();
  LeasedTrial cancelled = MustLease();
  v1::TrialResult result;
  result.set_final_test_accuracy(0.9);
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(done), &result, "", kNow).ok());
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(failed), nullptr, "boom", kNow).ok());
  ASSERT_TRUE(store_->AppendPoints("w1", Ref(cancelled), {Point(1, 0.1)}).ok());
  ASSERT_TRUE(store_->StoreCheckpoint("w1", Ref(cancelled), 1, "state", kNow).ok());
  ASSERT_TRUE(store_->CancelTrial(cancelled.trial_id, kNow).ok());
  // The fourth trial is still queued.
  auto resumed = store_->SubmitSweep(Spec("s"), MakeTrials(4), /*resume=*/true, kNow);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_TRUE(resumed->existing);
  EXPECT_EQ(resumed->sweep_id, sweep);
  EXPECT_EQ(resumed->requeued, 2);
  EXPECT_EQ(resumed->reused, 1);
  EXPECT_EQ(resumed->trial_count, 4);
  v1::Sweep after = *store_->GetSweep(sweep);
  EXPECT_EQ(after.counts().done(), 1);
  EXPECT_EQ(after.counts().queued(), 3);
  EXPECT_EQ(store_->GetTrial(done.trial_id)->result().final_test_accuracy(), 0.9);
  // A rerun starts from scratch: no checkpoint, no old points; the attempt keeps growing.
  std::set<int64_t> leased_ids;
  for (int i = 0; i < 3; ++i) {
    LeasedTrial next = MustLease();
    leased_ids.insert(next.trial_id);
    EXPECT_TRUE(next.checkpoint.empty());
    if (next.trial_id == cancelled.trial_id) {
      EXPECT_EQ(next.attempt, 2);
    }
  }
  EXPECT_EQ(leased_ids.count(done.trial_id), 0u);
  EXPECT_TRUE(store_->GetCurve(cancelled.trial_id)->empty());
}

// Leases and completes every queued trial (outcome COMPLETED); trial k gets k+1 points and
// accuracy from its seed, so copies can be told apart.
void FinishAll(TrialStore& store) {
  while (true) {
    auto leased = store.LeaseNext("w1", kNow, kNow + 1000);
    ASSERT_TRUE(leased.ok()) << leased.status();
    if (!leased->has_value()) return;
    const v1::TrialRef ref = Ref(**leased);
    const auto seed = static_cast<int64_t>((*leased)->config.seed());
    std::vector<v1::CurvePoint> points;
    for (int64_t i = 0; i <= seed; ++i) points.push_back(Point(i + 1, 0.01 * (seed + i)));
    ASSERT_TRUE(store.AppendPoints("w1", ref, points).ok());
    v1::TrialResult result;
    result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
    result.set_final_test_accuracy(0.5 + 0.01 * static_cast<double>(seed));
    result.set_iterations(seed + 1);
    ASSERT_TRUE(store.CompleteTrial("w1", ref, &result, "", kNow).ok());
  }
}

TEST_F(TrialStoreTest, NewSweep_SharingCellsWithFinishedSweep_ReusesTheirResultsAndCurves) {
  auto first = store_->SubmitSweep(Spec("first"), MakeTrials(4), false, kNow);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->reused, 0);
  FinishAll(*store_);
  const std::vector<v1::Trial> done = *store_->ListTrials(first->sweep_id, false);
  // Cells 2 and 3 were run by the first sweep; 4 and 5 are new.
  auto second = store_->SubmitSweep(Spec("second"), MakeTrials(4, 2), false, kNow + 5);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->existing);
  EXPECT_EQ(second->trial_count, 4);
  EXPECT_EQ(second->reused, 2);
  const std::vector<v1::Trial> trials = *store_->ListTrials(second->sweep_id, false);
  ASSERT_EQ(trials.size(), 4u);
  for (int i = 0; i < 2; ++i) {
    const v1::Trial& copy = trials[i];
    const v1::Trial& source = done[i + 2];
    ASSERT_EQ(copy.config_hash(), source.config_hash());
    EXPECT_EQ(copy.state(), v1::TRIAL_STATE_DONE);
    EXPECT_EQ(copy.result().SerializeAsString(), source.result().SerializeAsString());
    EXPECT_EQ(copy.result().final_test_accuracy(), 0.5 + 0.01 * (i + 2));
    auto copied_curve = store_->GetCurve(copy.id());
    auto source_curve = store_->GetCurve(source.id());
    ASSERT_EQ(copied_curve->size(), source_curve->size());
    EXPECT_EQ(copied_curve->size(), static_cast<size_t>(i + 3));
    for (size_t p = 0; p < copied_curve->size(); ++p) {
      EXPECT_EQ((*copied_curve)[p].SerializeAsString(), (*source_curve)[p].SerializeAsString());
    }
  }
  EXPECT_EQ(trials[2].state(), v1::TRIAL_STATE_QUEUED);
  EXPECT_EQ(trials[3].state(), v1::TRIAL_STATE_QUEUED);
  v1::Sweep sweep = *store_->GetSweep(second->sweep_id);
  EXPECT_EQ(sweep.counts().done(), 2);
  EXPECT_EQ(sweep.counts().queued(), 2);
  EXPECT_EQ(sweep.state(), v1::SWEEP_STATE_RUNNING);
  // Only the new cells run.
  EXPECT_EQ(MustLease().trial_id, trials[2].id());
  EXPECT_EQ(MustLease().trial_id, trials[3].id());
  EXPECT_FALSE(store_->LeaseNext("w1", kNow, kNow + 1000)->has_value());
  // The reuse is recorded for the trial's history.
  SQLite::Database db(dir_.File("test.db"), SQLite::OPEN_READONLY);
  SQLite::Statement events(db, "SELECT trial_id, detail FROM events WHERE kind = 'trial_reused'");
  std::set<int64_t> noted;
  while (events.executeStep()) {
    noted.insert(events.getColumn(0).getInt64());
    EXPECT_NE(events.getColumn(1).getString().find("same config and seed"), std::string::npos);
  }
  EXPECT_EQ(noted, (std::set<int64_t>{trials[0].id(), trials[1].id()}));
}

TEST_F(TrialStoreTest, NewSweep_DoesNotReuseFailedCancelledOrUnfinishedCells) {
  auto first = store_->SubmitSweep(Spec("first"), MakeTrials(4), false, kNow);
  ASSERT_TRUE(first.ok()) << first.status();
  LeasedTrial failed = MustLease();
  LeasedTrial running = MustLease();
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(failed), nullptr, "boom", kNow).ok());
  const std::vector<v1::Trial> trials = *store_->ListTrials(first->sweep_id, false);
  ASSERT_TRUE(store_->CancelTrial(trials[2].id(), kNow).ok());
  // Cell 0 failed, 1 is running, 2 was cancelled, 3 is queued: nothing to reuse.
  auto second = store_->SubmitSweep(Spec("second"), MakeTrials(4), false, kNow);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->reused, 0);
  v1::Sweep sweep = *store_->GetSweep(second->sweep_id);
  EXPECT_EQ(sweep.counts().queued(), 4);
  EXPECT_EQ(sweep.state(), v1::SWEEP_STATE_QUEUED);
  EXPECT_EQ(running.trial_id, trials[1].id());
}

TEST_F(TrialStoreTest, NewSweep_FullyCoveredByFinishedTrials_IsDoneAtOnceAndNotifies) {
  ASSERT_TRUE(store_->CreateSweep(Spec("first"), MakeTrials(3), kNow).ok());
  FinishAll(*store_);
  const uint64_t version = store_->changes().version();
  auto second = store_->SubmitSweep(Spec("subset"), MakeTrials(2, 1), false, kNow + 7);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->reused, 2);
  EXPECT_GT(store_->changes().version(), version);
  v1::Sweep sweep = *store_->GetSweep(second->sweep_id);
  EXPECT_EQ(sweep.state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(sweep.finished_unix_ms(), kNow + 7);
  EXPECT_EQ(sweep.counts().done(), 2);
  EXPECT_EQ(sweep.counts().total(), 2);
  EXPECT_FALSE(store_->LeaseNext("w1", kNow, kNow + 1000)->has_value());
}

TEST_F(TrialStoreTest, Checkpoint_LatestKept_DroppedWhenTrialCompletes) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  LeasedTrial first = MustLease("w1", kNow + 100);
  ASSERT_TRUE(
      store_->AppendPoints("w1", Ref(first), {Point(1, 0.1), Point(2, 0.2), Point(3, 0.3)}).ok());
  ASSERT_TRUE(store_->StoreCheckpoint("w1", Ref(first), 1, "at1", kNow).ok());
  ASSERT_TRUE(store_->StoreCheckpoint("w1", Ref(first), 2, "at2", kNow).ok());
  ASSERT_EQ(*store_->ExpireLeases(kNow + 101, kMaxAttempts), 1);
  LeasedTrial second = MustLease("w1", kNow + 100'000);
  EXPECT_EQ(second.checkpoint, "at2");
  EXPECT_EQ(second.checkpoint_iteration, 2);
  // Resumed points after the checkpoint: the curve is 1, 2, 3 exactly once each.
  ASSERT_TRUE(store_->AppendPoints("w1", Ref(second), {Point(3, 0.3)}).ok());
  auto curve = store_->GetCurve(second.trial_id);
  ASSERT_EQ(curve->size(), 3u);
  v1::TrialResult result;
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(second), &result, "", kNow).ok());
  SQLite::Database db(dir_.File("test.db"), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM checkpoints").getInt(), 0);
}

TEST_F(TrialStoreTest, KeepFinalCheckpoint_KeptWhenDone_DroppedOtherwise_CopiedOnReuse) {
  std::vector<PlannedTrial> trials = MakeTrials(3);
  for (PlannedTrial& trial : trials) trial.config.mutable_train()->set_keep_final_checkpoint(true);
  auto sweep = store_->CreateSweep(Spec("keep"), trials, kNow);
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  LeasedTrial done = MustLease();
  LeasedTrial failed = MustLease();
  LeasedTrial never = MustLease();  // finishes without uploading a checkpoint
  ASSERT_TRUE(store_->StoreCheckpoint("w1", Ref(done), 40, "final weights", kNow).ok());
  ASSERT_TRUE(store_->StoreCheckpoint("w1", Ref(failed), 20, "partial", kNow).ok());
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  result.set_iterations(40);
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(done), &result, "", kNow).ok());
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(failed), nullptr, "boom", kNow).ok());
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(never), &result, "", kNow).ok());

  absl::StatusOr<TrialCheckpoint> kept = store_->GetCheckpoint(done.trial_id);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->state, "final weights");
  EXPECT_EQ(kept->iteration, 40);
  EXPECT_EQ(kept->attempt, done.attempt);
  EXPECT_EQ(kept->trial_state, v1::TRIAL_STATE_DONE);
  // A failed trial keeps nothing: its weights are not a trained model.
  absl::StatusOr<TrialCheckpoint> none = store_->GetCheckpoint(failed.trial_id);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(none.status().message(),
            absl::StrCat("trial ", failed.trial_id,
                         " (failed) kept no checkpoint: set train.keep_final_checkpoint: true in "
                         "its sweep to keep a finished trial's final weights"));
  EXPECT_EQ(store_->GetCheckpoint(never.trial_id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetCheckpoint(999).status().message(), "trial 999 not found");

  // Another sweep with the same cells reuses the results, and the kept weights with them.
  auto again = store_->CreateSweep(Spec("keep again"), trials, kNow);
  ASSERT_TRUE(again.ok()) << again.status();
  absl::StatusOr<std::vector<v1::Trial>> copies = store_->ListTrials(*again, false);
  ASSERT_TRUE(copies.ok());
  ASSERT_EQ(copies->size(), 3u);
  absl::StatusOr<TrialCheckpoint> copied = store_->GetCheckpoint(copies->at(0).id());
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(copied->state, "final weights");
  EXPECT_EQ(copied->iteration, 40);
  // The failed cell is queued afresh, with no checkpoint.
  EXPECT_EQ(copies->at(1).state(), v1::TRIAL_STATE_QUEUED);
  EXPECT_EQ(store_->GetCheckpoint(copies->at(1).id()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TrialStoreTest, KeepFinalCheckpoint_RerunOfTheFailedTrialStartsWithout) {
  std::vector<PlannedTrial> trials = MakeTrials(1);
  trials[0].config.mutable_train()->set_keep_final_checkpoint(true);
  auto sweep = store_->CreateSweep(Spec("keep"), trials, kNow);
  ASSERT_TRUE(sweep.ok());
  LeasedTrial leased = MustLease();
  ASSERT_TRUE(store_->StoreCheckpoint("w1", Ref(leased), 5, "weights", kNow).ok());
  ASSERT_TRUE(store_->CancelTrial(leased.trial_id, kNow).ok());
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(leased), nullptr, "stopped", kNow).ok());
  ASSERT_EQ(*store_->RerunSweep(*sweep, /*failed=*/true, /*cancelled=*/true, kNow), 1);
  EXPECT_EQ(store_->GetCheckpoint(leased.trial_id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MustLease().checkpoint.empty());
}

TEST_F(TrialStoreTest, KillDashNine_LosesNothingAcknowledged_IntegrityCheckOk) {
  ASSERT_TRUE(store_->CreateSweep(Spec("s"), MakeTrials(1), kNow).ok());
  LeasedTrial leased = MustLease("w1", kNow + 1'000'000);
  store_.reset();  // the child is the only writer, as a server process would be
  int acks[2];
  ASSERT_EQ(pipe(acks), 0);
  constexpr int kBatch = 200;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(acks[0]);
    auto store = TrialStore::Open(dir_.File("test.db"));
    if (!store.ok()) _exit(3);
    // Writes until killed (bounded, in case the parent died): one ack byte per commit.
    for (int64_t batch = 0; batch < 100'000; ++batch) {
      std::vector<v1::CurvePoint> points;
      for (int i = 0; i < kBatch; ++i) points.push_back(Point(batch * kBatch + i, 0.5));
      if (!(*store)->AppendPoints("w1", Ref(leased), points).ok()) _exit(4);
      char ack = 'a';
      if (write(acks[1], &ack, 1) != 1) _exit(5);
    }
    _exit(0);
  }
  close(acks[1]);
  int acknowledged = 0;
  char buffer[64];
  while (acknowledged < 25) {
    ssize_t n = read(acks[0], buffer, sizeof(buffer));
    ASSERT_GT(n, 0) << "the writer exited early";
    acknowledged += static_cast<int>(n);
  }
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status));
  // Acks that were in the pipe when the child died count too.
  while (true) {
    ssize_t n = read(acks[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    acknowledged += static_cast<int>(n);
  }
  close(acks[0]);
  auto reopened = TrialStore::Open(dir_.File("test.db"));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto curve = (*reopened)->GetCurve(leased.trial_id);
  ASSERT_TRUE(curve.ok());
  EXPECT_GE(static_cast<int64_t>(curve->size()), int64_t{acknowledged} * kBatch);
  EXPECT_EQ(curve->size() % kBatch, 0u);  // whole transactions only
  SQLite::Database db(dir_.File("test.db"), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
}

// A pruned result was cut short by its own sweep's rule: another sweep must run the cell.
TEST_F(TrialStoreTest, NewSweep_DoesNotReusePrunedCells) {
  ASSERT_TRUE(store_->CreateSweep(Spec("first"), MakeTrials(1), kNow).ok());
  LeasedTrial leased = MustLease();
  v1::TrialResult pruned;
  pruned.set_outcome(v1::TRIAL_OUTCOME_PRUNED);
  pruned.set_final_test_accuracy(0.3);
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(leased), &pruned, "", kNow).ok());
  auto second = store_->SubmitSweep(Spec("second"), MakeTrials(1), false, kNow);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->reused, 0);
  EXPECT_EQ(store_->GetSweep(second->sweep_id)->counts().queued(), 1);
}

}  // namespace
}  // namespace bitsweep::server
