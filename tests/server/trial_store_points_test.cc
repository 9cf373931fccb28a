// Curve points that ride on UploadCheckpoint and CompleteTrial (issue 9): stored in the same
// transaction as the checkpoint or the result.
#include <gtest/gtest.h>

#include <memory>

#include "server/trial_store.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;
constexpr int kMaxAttempts = 3;

v1::TrialRef Ref(const LeasedTrial& leased) {
  v1::TrialRef ref;
  ref.set_trial_id(leased.trial_id);
  ref.set_attempt(leased.attempt);
  return ref;
}

std::vector<v1::CurvePoint> Points(int64_t first, int64_t last) {
  std::vector<v1::CurvePoint> points;
  for (int64_t i = first; i <= last; ++i) {
    v1::CurvePoint point;
    point.set_iteration(i);
    point.set_test_accuracy(0.01 * static_cast<double>(i));
    points.push_back(point);
  }
  return points;
}

class TrialStorePointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = TrialStore::Open(dir_.File("points.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->RegisterWorker("w1", "inc1", "host", 2, kNow, kMaxAttempts).ok());
    std::vector<PlannedTrial> trials(1);
    trials[0].config.set_seed(1);
    v1::SweepSpec spec;
    spec.set_name("s");
    ASSERT_TRUE(store_->CreateSweep(spec, trials, kNow).ok());
  }

  LeasedTrial MustLease(int64_t now = kNow) {
    auto leased = store_->LeaseNext("w1", now, now + 1000);
    EXPECT_TRUE(leased.ok() && leased->has_value());
    return leased.ok() ? leased->value_or(LeasedTrial{}) : LeasedTrial{};
  }

  std::vector<int64_t> CurveIterations(int64_t trial_id) {
    absl::StatusOr<std::vector<v1::CurvePoint>> curve = store_->GetCurve(trial_id);
    EXPECT_TRUE(curve.ok()) << curve.status();
    std::vector<int64_t> iterations;
    if (!curve.ok()) return iterations;
    for (const v1::CurvePoint& point : *curve) iterations.push_back(point.iteration());
    return iterations;
  }

  testing::TempDir dir_;
  std::unique_ptr<TrialStore> store_;
};

TEST_F(TrialStorePointsTest, CheckpointWithPoints_StoresBothAndResumeKeepsExactlyThePointsUpToIt) {
  const LeasedTrial first = MustLease();
  ASSERT_TRUE(store_->AppendPoints("w1", Ref(first), Points(1, 2)).ok());
  auto verdict = store_->StoreCheckpoint("w1", Ref(first), 5, "at5", kNow, Points(3, 5));
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_FALSE(verdict->stop);
  // Points after the checkpoint: the second upload carries 6..7 and a checkpoint at 6.
  ASSERT_TRUE(store_->StoreCheckpoint("w1", Ref(first), 6, "at6", kNow, Points(6, 7)).ok());
  EXPECT_EQ(CurveIterations(first.trial_id), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));

  // The worker is lost: the next attempt resumes from the checkpoint at 6 and the curve keeps
  // exactly the points up to it.
  ASSERT_EQ(store_->ExpireLeases(kNow + 2000, kMaxAttempts).value(), 1);
  const LeasedTrial second = MustLease(kNow + 2000);
  EXPECT_EQ(second.attempt, first.attempt + 1);
  EXPECT_EQ(second.checkpoint, "at6");
  EXPECT_EQ(second.checkpoint_iteration, 6);
  EXPECT_EQ(CurveIterations(first.trial_id), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
}

TEST_F(TrialStorePointsTest, CheckpointWhosePointsAreRefused_StoresNeitherPointsNorCheckpoint) {
  store_->set_max_curve_points_per_trial(4);
  const LeasedTrial first = MustLease();
  ASSERT_TRUE(store_->StoreCheckpoint("w1", Ref(first), 2, "at2", kNow, Points(1, 2)).ok());
  auto refused = store_->StoreCheckpoint("w1", Ref(first), 5, "at5", kNow, Points(3, 5));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(CurveIterations(first.trial_id), (std::vector<int64_t>{1, 2}));
  // One transaction: the earlier checkpoint stands, not the refused one.
  ASSERT_EQ(store_->ExpireLeases(kNow + 2000, kMaxAttempts).value(), 1);
  const LeasedTrial second = MustLease(kNow + 2000);
  EXPECT_EQ(second.checkpoint, "at2");
  EXPECT_EQ(CurveIterations(first.trial_id), (std::vector<int64_t>{1, 2}));
}

TEST_F(TrialStorePointsTest, CheckpointWithPointsFromAStaleAttempt_StoresNothing) {
  const LeasedTrial first = MustLease();
  ASSERT_EQ(store_->ExpireLeases(kNow + 2000, kMaxAttempts).value(), 1);
  const LeasedTrial second = MustLease(kNow + 2000);
  auto stale = store_->StoreCheckpoint("w1", Ref(first), 3, "at3", kNow, Points(1, 3));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(CurveIterations(second.trial_id).empty());
}

TEST_F(TrialStorePointsTest, CompleteWithPoints_StoresTheLastPointsWithTheResult) {
  const LeasedTrial leased = MustLease();
  ASSERT_TRUE(store_->AppendPoints("w1", Ref(leased), Points(1, 3)).ok());
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(leased), &result, "", kNow, Points(4, 6)).ok());
  EXPECT_EQ(store_->GetTrial(leased.trial_id)->state(), v1::TRIAL_STATE_DONE);
  EXPECT_EQ(CurveIterations(leased.trial_id), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
}

TEST_F(TrialStorePointsTest, CompleteWithTooManyPoints_IsRefusedWhole) {
  store_->set_max_curve_points_per_trial(3);
  const LeasedTrial leased = MustLease();
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  EXPECT_EQ(store_->CompleteTrial("w1", Ref(leased), &result, "", kNow, Points(1, 4)).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->GetTrial(leased.trial_id)->state(), v1::TRIAL_STATE_RUNNING);
  EXPECT_TRUE(CurveIterations(leased.trial_id).empty());
}

TEST_F(TrialStorePointsTest, CompleteOfACancelledTrial_DropsItsPoints) {
  const LeasedTrial leased = MustLease();
  ASSERT_TRUE(store_->CancelTrial(leased.trial_id, kNow).ok());
  v1::TrialResult result;
  result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  ASSERT_TRUE(store_->CompleteTrial("w1", Ref(leased), &result, "", kNow, Points(1, 3)).ok());
  EXPECT_EQ(store_->GetTrial(leased.trial_id)->state(), v1::TRIAL_STATE_CANCELLED);
  EXPECT_TRUE(CurveIterations(leased.trial_id).empty());
}

}  // namespace
}  // namespace bitsweep::server
