#include "worker/simulated_trial.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "worker/running_trials.h"

namespace bitsweep::worker {
namespace {

using google::protobuf::util::MessageDifferencer;

v1::TrialConfig Simulated(const std::string& format = "fp32",
                          const std::string& rounding = "nearest", int points = 10,
                          uint64_t seed = 1) {
  v1::TrialConfig config;
  config.set_kind("simulated");
  config.mutable_simulation()->set_points(points);
  config.mutable_simulation()->set_millis_per_point(0);
  config.mutable_train()->set_eval_every(5);
  config.mutable_train()->set_batch_size(32);
  config.mutable_train()->set_lr(0.1);
  config.mutable_train()->set_target_accuracy(0.5);
  config.mutable_precision()->mutable_default_()->set_format(format);
  config.mutable_precision()->mutable_default_()->set_rounding(rounding);
  config.set_seed(seed);
  return config;
}

struct SimRun {
  absl::StatusOr<v1::TrialResult> result;
  std::vector<v1::CurvePoint> points;
  std::vector<std::pair<int64_t, std::string>> checkpoints;
};

SimRun RunIt(const v1::TrialConfig& config, trainer::TrainOptions options = {},
             const StopWait& wait = nullptr) {
  SimRun run;
  options.on_checkpoint = [&run](int64_t iteration, std::string state) {
    run.checkpoints.emplace_back(iteration, std::move(state));
  };
  run.result = RunSimulatedTrial(
      config,
      [&run](const v1::CurvePoint& point) {
        run.points.push_back(point);
        return true;
      },
      options, wait);
  return run;
}

// Everything but the wall-clock fields.
void ExpectSameResult(v1::TrialResult a, v1::TrialResult b) {
  for (v1::TrialResult* r : {&a, &b}) {
    r->clear_train_seconds();
    r->clear_images_per_second();
  }
  EXPECT_TRUE(MessageDifferencer::Equals(a, b)) << a.DebugString() << "\nvs\n" << b.DebugString();
}

TEST(SimulatedFormatBitsTest, KnowsEveryFormatFamilyAndRejectsGarbage) {
  EXPECT_EQ(SimulatedFormatBits("fp32").value(), 32);
  EXPECT_EQ(SimulatedFormatBits("").value(), 32);
  EXPECT_EQ(SimulatedFormatBits("mask:12").value(), 12);
  EXPECT_EQ(SimulatedFormatBits("float:5,10").value(), 16);
  EXPECT_EQ(SimulatedFormatBits("fp16").value(), 16);
  EXPECT_EQ(SimulatedFormatBits("bf16").value(), 16);
  EXPECT_EQ(SimulatedFormatBits("fp8e4m3").value(), 8);
  EXPECT_EQ(SimulatedFormatBits("fixed:16,14").value(), 16);
  EXPECT_EQ(SimulatedFormatBits("int:8").value(), 8);
  EXPECT_EQ(SimulatedFormatBits("dynfixed:10").value(), 10);
  EXPECT_EQ(SimulatedFormatBits("dps:4,8").value(), 12);
  for (const char* bad : {"mask:", "mask:x", "float:5", "fixed:a,b", "posit:8", "mask:-3"}) {
    absl::StatusOr<int> bits = SimulatedFormatBits(bad);
    ASSERT_FALSE(bits.ok()) << bad;
    EXPECT_EQ(bits.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bits.status().message().find(bad), std::string::npos) << bits.status();
  }
}

TEST(SimulatedTrialTest, ReportsEveryPointInOrderAndAFullResult) {
  const SimRun run = RunIt(Simulated("fp32", "nearest", 10));
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  ASSERT_EQ(run.points.size(), 10u);
  for (size_t i = 0; i < run.points.size(); ++i) {
    EXPECT_EQ(run.points[i].iteration(), 5 * static_cast<int64_t>(i + 1));
    EXPECT_DOUBLE_EQ(run.points[i].learning_rate(), 0.1);
    if (i > 0) {
      EXPECT_GT(run.points[i].test_accuracy(), run.points[i - 1].test_accuracy());
    }
  }
  const v1::TrialResult& result = *run.result;
  EXPECT_EQ(result.outcome(), v1::TRIAL_OUTCOME_COMPLETED);
  EXPECT_EQ(result.iterations(), 50);
  EXPECT_DOUBLE_EQ(result.final_test_accuracy(), run.points.back().test_accuracy());
  EXPECT_DOUBLE_EQ(result.best_test_accuracy(), run.points.back().test_accuracy());
  EXPECT_DOUBLE_EQ(result.final_test_loss(), run.points.back().test_loss());
  EXPECT_GT(result.final_test_accuracy(), 0.8);  // 32 bits: near the ceiling
  EXPECT_LE(result.final_test_accuracy(), 0.99);
  // The first point at or above the 0.5 target.
  int64_t expected_to_target = -1;
  for (const v1::CurvePoint& p : run.points) {
    if (p.test_accuracy() >= 0.5) {
      expected_to_target = p.iteration();
      break;
    }
  }
  EXPECT_EQ(result.iterations_to_target(), expected_to_target);
  EXPECT_GT(expected_to_target, 0);
  EXPECT_EQ(result.num_classes(), 10);
  EXPECT_EQ(result.confusion_size(), 100);
  EXPECT_EQ(result.per_class_recall_size(), 10);
  EXPECT_TRUE(run.checkpoints.empty());  // checkpoint_every 0
}

TEST(SimulatedTrialTest, FewerBitsGiveLowerAccuracyAndStochasticRoundingHelps) {
  const double fp32 = RunIt(Simulated("fp32")).result->final_test_accuracy();
  const double mask12 = RunIt(Simulated("mask:12", "nearest")).result->final_test_accuracy();
  const double mask8 = RunIt(Simulated("mask:8", "nearest")).result->final_test_accuracy();
  const double mask8_stochastic =
      RunIt(Simulated("mask:8", "stochastic")).result->final_test_accuracy();
  const double mask8_truncate =
      RunIt(Simulated("mask:8", "truncate")).result->final_test_accuracy();
  EXPECT_GT(fp32, mask12);
  EXPECT_GT(mask12, mask8);
  EXPECT_GT(mask8_stochastic, mask8);
  EXPECT_GT(mask8, mask8_truncate);
  EXPECT_GT(mask8_truncate, 0.1);  // never below chance
}

TEST(SimulatedTrialTest, SameConfigSameCurveAndSeedsDiffer) {
  const SimRun a = RunIt(Simulated("mask:10", "stochastic", 10, 3));
  const SimRun b = RunIt(Simulated("mask:10", "stochastic", 10, 3));
  const SimRun other_seed = RunIt(Simulated("mask:10", "stochastic", 10, 4));
  ExpectSameResult(*a.result, *b.result);
  ASSERT_EQ(a.points.size(), b.points.size());
  for (size_t i = 0; i < a.points.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(a.points[i], b.points[i]));
  }
  EXPECT_NE(a.result->final_test_accuracy(), other_seed.result->final_test_accuracy());
}

TEST(SimulatedTrialTest, ResumedFromACheckpoint_ReportsOnlyLaterPointsAndTheSameResult) {
  trainer::TrainOptions options;
  options.checkpoint_every = 3;
  const SimRun whole = RunIt(Simulated("mask:14"), options);
  ASSERT_TRUE(whole.result.ok());
  // After points 3, 6 and 9 (not after the last one: nothing left to resume).
  ASSERT_EQ(whole.checkpoints.size(), 3u);
  EXPECT_EQ(whole.checkpoints[1].first, 30);
  EXPECT_EQ(SimulatedCheckpointIteration(Simulated("mask:14"), whole.checkpoints[1].second).value(),
            30);

  options.resume_from = whole.checkpoints[1].second;
  const SimRun resumed = RunIt(Simulated("mask:14"), options);
  ASSERT_TRUE(resumed.result.ok()) << resumed.result.status();
  ASSERT_EQ(resumed.points.size(), 4u);
  for (size_t i = 0; i < resumed.points.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(resumed.points[i], whole.points[6 + i]));
  }
  ExpectSameResult(*whole.result, *resumed.result);
}

TEST(SimulatedTrialTest, BadResumeStateOrConfig_IsAnInvalidArgumentNamingTheField) {
  trainer::TrainOptions options;
  options.resume_from = "11";  // beyond 10 points
  SimRun run = RunIt(Simulated(), options);
  EXPECT_EQ(run.result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(run.result.status().message().find("resume_from"), std::string::npos);

  v1::TrialConfig no_points = Simulated();
  no_points.mutable_simulation()->set_points(0);
  run = RunIt(no_points);
  EXPECT_NE(run.result.status().message().find("simulation.points"), std::string::npos);

  run = RunIt(Simulated("fp32", "sideways"));
  EXPECT_NE(run.result.status().message().find("rounding"), std::string::npos);

  v1::TrialConfig not_simulated = Simulated();
  not_simulated.set_kind("");
  EXPECT_EQ(RunIt(not_simulated).result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(run.points.empty());
}

TEST(SimulatedTrialTest, ShouldStop_CancelsBeforeTheNextPoint) {
  trainer::TrainOptions options;
  int points = 0;
  options.should_stop = [&points] { return points >= 4; };
  absl::StatusOr<v1::TrialResult> result = RunSimulatedTrial(
      Simulated(),
      [&points](const v1::CurvePoint&) {
        ++points;
        return true;
      },
      options);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(points, 4);
}

TEST(SimulatedTrialTest, ProgressCallbackFalse_Cancels) {
  int points = 0;
  absl::StatusOr<v1::TrialResult> result =
      RunSimulatedTrial(Simulated(), [&points](const v1::CurvePoint&) { return ++points < 2; }, {});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(points, 2);
}

TEST(SimulatedTrialTest, StopRaisedDuringALongWait_WakesTheTrialAtOnce) {
  v1::TrialConfig config = Simulated();
  config.mutable_simulation()->set_millis_per_point(60'000);  // a test timeout if not woken
  StopFlag stop;
  std::thread raiser([&stop] { stop.Raise(); });
  absl::StatusOr<v1::TrialResult> result = RunSimulatedTrial(
      config, [](const v1::CurvePoint&) { return true; }, {},
      [&stop](std::chrono::milliseconds duration) { return stop.WaitFor(duration); });
  raiser.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
}

TEST(SimulatedTrialTest, WithoutAStopWait_PollsShouldStopDuringTheWait) {
  v1::TrialConfig config = Simulated();
  config.mutable_simulation()->set_millis_per_point(60'000);
  std::atomic<bool> stop{false};
  trainer::TrainOptions options;
  options.should_stop = [&stop] { return stop.load(); };
  std::thread raiser([&stop] { stop = true; });
  absl::StatusOr<v1::TrialResult> result = RunSimulatedTrial(
      config, [](const v1::CurvePoint&) { return true; }, options);
  raiser.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace bitsweep::worker
