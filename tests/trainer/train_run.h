// Test support: whole training runs on the synthetic dataset, collected and compared as bytes
// (tests that hold the trainer to bitwise reproducibility share these).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "worker/trainer/data/synthetic.h"
#include "worker/trainer/trainer.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {

inline const Dataset& Synthetic() {
  static const Dataset* const data = new Dataset(MakeSyntheticDataset());
  return *data;
}

struct TrainRun {
  v1::TrialResult result;
  std::vector<v1::CurvePoint> curve;
  std::vector<std::pair<int64_t, std::string>> checkpoints;  // (iteration, state)
};

// Trains `config` on Synthetic(), collecting every curve point and checkpoint; a failed run is
// a test failure (and an empty result).
inline TrainRun MustTrain(const v1::TrialConfig& config, TrainOptions options = {}) {
  TrainRun run;
  options.on_checkpoint = [&run](int64_t iteration, std::string state) {
    run.checkpoints.emplace_back(iteration, std::move(state));
  };
  auto result = Train(
      config, Synthetic(),
      [&run](const v1::CurvePoint& p) {
        run.curve.push_back(p);
        return true;
      },
      options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (result.ok()) run.result = *result;
  return run;
}

// Two conv layers (the second without pooling, per-layer kernels) and two hidden dense layers on
// 400 synthetic images: every op and every per-example / per-group split is exercised. Batch
// 20: gradient groups of 8, 8 and 4. `iterations` evaluated three times.
inline v1::TrialConfig TwoConvTwoDenseConfig(int iterations) {
  v1::TrialConfig c = DefaultTrialConfig();
  c.mutable_dataset()->set_name("synthetic");
  c.mutable_dataset()->set_train_limit(400);
  c.mutable_dataset()->set_test_limit(100);
  v1::ModelConfig* m = c.mutable_model();
  m->clear_conv();
  m->add_conv(4);
  m->add_conv(6);
  m->add_kernels(3);
  m->add_kernels(2);
  m->add_pools(2);
  m->add_pools(1);
  m->clear_dense();
  m->add_dense(24);
  m->add_dense(12);
  c.mutable_train()->set_batch_size(20);
  c.mutable_train()->set_iterations(iterations);
  c.mutable_train()->set_eval_every(iterations / 3);
  c.set_seed(5);
  return c;
}

inline TrainOptions WithThreads(int threads) {
  TrainOptions options;
  options.threads = threads;
  return options;
}

// The result without its wall-clock fields, as bytes.
inline std::string ComparableResult(v1::TrialResult r) {
  r.clear_images_per_second();
  r.clear_train_seconds();
  return r.SerializeAsString();
}

// Result (without wall-clock fields) and curve, as bytes.
inline std::string ComparableBytes(const TrainRun& run) {
  std::string out = ComparableResult(run.result);
  for (const v1::CurvePoint& p : run.curve) out += p.SerializeAsString();
  return out;
}

}  // namespace bitsweep::trainer
