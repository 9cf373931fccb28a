#include "worker/trainer/trial_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(TrialConfigTest, DefaultConfigIsTheReferenceCnnAndValid) {
  const v1::TrialConfig c = DefaultTrialConfig();
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
  EXPECT_EQ(c.dataset().name(), "mnist");
  EXPECT_EQ(c.model().conv_size(), 2);
  EXPECT_EQ(c.model().kernel(), 5);
  EXPECT_EQ(c.model().dense(0), 256);
  EXPECT_EQ(c.train().batch_size(), 128);
  EXPECT_EQ(c.train().optimizer(), "momentum");
  EXPECT_DOUBLE_EQ(c.train().lr(), 0.05);
  EXPECT_EQ(c.precision().default_().format(), "fp32");
  EXPECT_EQ(c.precision().sites_size(), 3);
}

TEST(TrialConfigTest, ErrorsStartWithTheFieldPath) {
  struct Case {
    std::function<void(v1::TrialConfig&)> mutate;
    const char* prefix;
    const char* detail;
  };
  const Case cases[] = {
      {[](auto& c) { c.mutable_precision()->mutable_default_()->set_format("mask:40"); },
       "precision.default.format: 'mask:40': B must be between 9 and 32", ""},
      {[](auto& c) { c.mutable_precision()->mutable_default_()->set_format("int:99"); },
       "precision.default.format: ", "B must be between 2 and 32"},
      {[](auto& c) { c.mutable_precision()->mutable_default_()->set_rounding("up"); },
       "precision.default.rounding: ", "unknown rounding"},
      {[](auto& c) {
         c.mutable_precision()->add_sites("accumulator");
         c.mutable_precision()->mutable_accumulator()->set_format("int:8");
       },
       "precision.accumulator.format: ", "cannot be an accumulator format"},
      {[](auto& c) { c.mutable_precision()->add_sites("bogus"); }, "precision.sites[3]: ",
       "unknown site; supported: weights, activations, errors, gradients, optimizer, "
       "accumulator"},
      {[](auto& c) { c.set_kind("batch"); }, "kind: ", "supported: train, simulated"},
      {[](auto& c) {
         c.set_kind("simulated");
         c.mutable_simulation()->set_points(0);
       },
       "simulation.points: ", "between 1 and 100000"},
      {[](auto& c) {
         c.set_kind("simulated");
         c.mutable_simulation()->set_points(10);
         c.mutable_simulation()->set_millis_per_point(60001);
       },
       "simulation.millis_per_point: ", "between 0 and 60000"},
      {[](auto& c) { c.mutable_model()->add_kernels(3); },
       "model.kernels: ", "1 entries but model.conv has 2 layers"},
      {[](auto& c) {
         for (int p : {2, 2, 2}) c.mutable_model()->add_pools(p);
       },
       "model.pools: ", "3 entries but model.conv has 2 layers"},
      {[](auto& c) {
         c.mutable_model()->add_kernels(3);
         c.mutable_model()->add_kernels(33);
       },
       "model.kernels[1]: ", "between 1 and 32"},
      {[](auto& c) {
         c.mutable_model()->add_kernels(13);
         c.mutable_model()->add_kernels(13);
       },
       "model.conv: ", "kernel"},
      {[](auto& c) { c.mutable_train()->set_compute("fp16"); },
       "train.compute: ", "unknown; supported: fp32, fp64"},
      {[](auto& c) {
         c.mutable_train()->set_compute("fp64");
         c.mutable_precision()->add_sites("accumulator");
         c.mutable_precision()->mutable_accumulator()->set_format("fp16");
       },
       "precision.sites: ", "float32-only; it is not supported with train.compute fp64"},
      {[](auto& c) {
         c.mutable_train()->set_compute("fp64");
         v1::PrecisionSwitch* sw = c.mutable_precision()->add_schedule();
         sw->set_after_iteration(10);
         sw->mutable_precision()->add_sites("accumulator");
         sw->mutable_precision()->mutable_accumulator()->set_format("mask:20");
       },
       "precision.schedule[0].precision: ", "not supported with train.compute fp64"},
      {[](auto& c) {
         for (int i = 0; i < 5; ++i) c.mutable_precision()->add_layers();
       },
       "precision.layers: ", "5 entries but the model has 4 parameter layers"},
      {[](auto& c) { c.mutable_precision()->add_schedule()->set_after_iteration(-1); },
       "precision.schedule[0].after_iteration: ", "negative"},
      {[](auto& c) { c.mutable_precision()->mutable_gradients()->set_format("fp16"); },
       "precision.gradients.format: ", "not listed in precision.sites"},
      {[](auto& c) {
         c.mutable_precision()->add_sites("optimizer");
         c.mutable_precision()->mutable_optimizer()->set_rounding("up");
       },
       "precision.optimizer.rounding: ", "unknown rounding"},
      {[](auto& c) {
         c.mutable_precision()->add_sites("gradients");
         c.mutable_precision()->mutable_gradients()->set_format("fixed:2,5");
       },
       "precision.gradients.format: ", "FL must be between"},
      {[](auto& c) { c.mutable_precision()->set_master_weights("fp16"); },
       "precision.master_weights: ", "supported: none, fp32"},
      {[](auto& c) { c.mutable_precision()->mutable_dynamic()->set_max_overflow_percent(-1); },
       "precision.dynamic.max_overflow_percent: ", ""},
      {[](auto& c) { c.mutable_precision()->mutable_dynamic()->set_max_error_percent(-1); },
       "precision.dynamic.max_error_percent: ", ""},
      {[](auto& c) {
         c.mutable_precision()->mutable_default_()->set_format("dps:4,8");
         c.mutable_precision()->mutable_dynamic()->set_min_integer_bits(0);
       },
       "precision.dynamic.min_integer_bits: ", ""},
      {[](auto& c) {
         c.mutable_precision()->mutable_default_()->set_format("dps:4,8");
         c.mutable_precision()->mutable_dynamic()->set_max_frac_bits(50);
       },
       "precision.dynamic.max_frac_bits: ", "at most 53"},
      {[](auto& c) {
         c.mutable_precision()->mutable_default_()->set_format("dps:4,8");
         c.mutable_precision()->mutable_dynamic()->set_min_frac_bits(9);
       },
       "precision.default.format: 'dps:4,8': ", "bounds"},
      {[](auto& c) { c.mutable_train()->set_beta1(1.0); }, "train.beta1: ", ""},
      {[](auto& c) { c.mutable_train()->set_beta2(-0.1); }, "train.beta2: ", ""},
      {[](auto& c) { c.mutable_train()->set_rho(1.0); }, "train.rho: ", ""},
      {[](auto& c) {
         c.mutable_train()->set_optimizer("adam");
         c.mutable_train()->set_eps(0);
       },
       "train.eps: ", "> 0"},
      {[](auto& c) { c.mutable_train()->set_weight_decay(-1e-4); }, "train.weight_decay: ", ""},
      {[](auto& c) { c.mutable_train()->set_lr_schedule("exp"); },
       "train.lr_schedule: ", "supported: const, step, inv, cosine"},
      {[](auto& c) {
         c.mutable_train()->set_lr_schedule("step");
         c.mutable_train()->set_lr_step_size(0);
       },
       "train.lr_step_size: ", ""},
      {[](auto& c) {
         c.mutable_train()->set_lr_schedule("step");
         c.mutable_train()->set_lr_gamma(2);
       },
       "train.lr_gamma: ", ""},
      {[](auto& c) {
         c.mutable_train()->set_lr_schedule("inv");
         c.mutable_train()->set_lr_power(-1);
       },
       "train.lr_power: ", ""},
      {[](auto& c) { c.mutable_precision()->add_sites("bogus"); },
       "precision.sites[3]: ", "unknown site"},
      {[](auto& c) { c.mutable_precision()->add_sites("weights"); },
       "precision.sites[3]: ", "listed twice"},
      {[](auto& c) { c.mutable_dataset()->set_name("imagenet"); }, "dataset.name: ", "known:"},
      {[](auto& c) { c.mutable_dataset()->set_train_limit(-1); }, "dataset.train_limit: ", ""},
      {[](auto& c) { c.mutable_model()->add_conv(0); }, "model.conv[2]: ", ""},
      {[](auto& c) {
         for (int i = 0; i < 4; ++i) c.mutable_model()->add_conv(8);
       },
       "model.conv: ", "at most 5"},
      {[](auto& c) { c.mutable_model()->set_kernel(0); }, "model.kernel: ", ""},
      {[](auto& c) { c.mutable_model()->set_pool(0); }, "model.pool: ", ""},
      {[](auto& c) { c.mutable_model()->set_dense(0, -3); }, "model.dense[0]: ", ""},
      {[](auto& c) { c.mutable_model()->set_activation("gelu"); }, "model.activation: ", ""},
      {[](auto& c) { c.mutable_model()->set_init("xavier"); }, "model.init: ", ""},
      {[](auto& c) { c.mutable_model()->set_init("normal:abc"); }, "model.init: ", ""},
      {[](auto& c) { c.mutable_model()->set_init_scale(0); }, "model.init_scale: ", ""},
      {[](auto& c) { c.mutable_train()->set_epochs(0); }, "train.epochs: ", ""},
      {[](auto& c) { c.mutable_train()->set_batch_size(0); }, "train.batch_size: ", ""},
      {[](auto& c) {
         c.mutable_model()->set_conv(0, 1024);
         c.mutable_model()->set_conv(1, 1024);
         c.mutable_train()->set_batch_size(4096);
       },
       "train.batch_size: ", "MiB limit"},
      {[](auto& c) { c.mutable_train()->set_optimizer("lbfgs"); },
       "train.optimizer: ", "unknown optimizer; supported: sgd, momentum, adam, adagrad, rmsprop"},
      {[](auto& c) { c.mutable_train()->set_lr(-1); }, "train.lr: ", ""},
      {[](auto& c) { c.mutable_train()->set_momentum(1.0); }, "train.momentum: ", ""},
      {[](auto& c) { c.mutable_train()->set_eval_every(0); }, "train.eval_every: ", ""},
      {[](auto& c) { c.mutable_train()->set_target_accuracy(1.5); }, "train.target_accuracy: ", ""},
      {[](auto& c) { c.mutable_train()->set_loss("hinge"); }, "train.loss: ", ""},
  };
  for (const Case& k : cases) {
    v1::TrialConfig c = DefaultTrialConfig();
    k.mutate(c);
    const absl::Status s = ValidateTrialConfig(c);
    ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << k.prefix;
    EXPECT_THAT(std::string(s.message()), StartsWith(k.prefix));
    EXPECT_THAT(std::string(s.message()), HasSubstr(k.detail));
  }
}

TEST(TrialConfigTest, ModelTooDeepForTheDatasetImagesIsRejected) {
  v1::TrialConfig c = DefaultTrialConfig();  // mnist, 28x28: 28 -5+1 = 24, /2 = 12, -> 8, /2 = 4
  c.mutable_model()->add_conv(8);            // 4x4 < 5x5
  absl::Status s = ValidateTrialConfig(c);
  EXPECT_THAT(std::string(s.message()), StartsWith("model.conv: conv layer 3 gets a 4x4 input"));
  c.mutable_model()->set_kernel(3);  // 12x12 -> 10 -> 5 -> 3 -> 1: fits
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
  c.mutable_dataset()->set_name("synthetic");  // 16 -> 14 -> 7 -> 5 -> 2 < 3: does not
  s = ValidateTrialConfig(c);
  EXPECT_THAT(std::string(s.message()), StartsWith("model.conv: conv layer 3 gets a 2x2"));
  c = DefaultTrialConfig();
  c.mutable_model()->set_kernel(3);
  c.mutable_model()->set_pool(8);  // 28 -> 26 -> 3 -> 1 < 8
  s = ValidateTrialConfig(c);
  EXPECT_THAT(std::string(s.message()), StartsWith("model.conv: conv layer 2 outputs 1x1"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.pool"));
}

TEST(TrialConfigTest, AcceptsEveryFormatAndIterationsWithoutEpochs) {
  for (const char* format : {"fp16", "bf16", "tf32", "fp8e5m2", "fp8e4m3", "float:3,4", "mask:9",
                             "mask:32", "fixed:16,8", "int:8", "dynfixed:16", "dps:4,12"}) {
    v1::TrialConfig c = DefaultTrialConfig();
    c.mutable_precision()->mutable_default_()->set_format(format);
    c.mutable_precision()->mutable_default_()->set_rounding("stochastic");
    EXPECT_TRUE(ValidateTrialConfig(c).ok()) << format;
  }
  for (const char* optimizer : {"sgd", "momentum", "adam", "adagrad", "rmsprop"}) {
    for (const char* schedule : {"", "const", "step", "inv", "cosine"}) {
      v1::TrialConfig c = DefaultTrialConfig();
      c.mutable_train()->set_optimizer(optimizer);
      c.mutable_train()->set_lr_schedule(schedule);
      EXPECT_TRUE(ValidateTrialConfig(c).ok()) << optimizer << " " << schedule;
    }
  }
  v1::TrialConfig c = DefaultTrialConfig();
  c.mutable_train()->set_epochs(0);
  c.mutable_train()->set_iterations(10);
  c.mutable_model()->clear_conv();
  c.mutable_model()->clear_dense();
  c.mutable_model()->set_kernel(0);
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
}

TEST(TrialConfigTest, PerSiteOverridesMasterWeightsAndCifarAreAccepted) {
  v1::TrialConfig c = DefaultTrialConfig();
  v1::PrecisionConfig* p = c.mutable_precision();
  p->add_sites("gradients");
  p->add_sites("optimizer");
  p->mutable_gradients()->set_format("dps:2,14");
  p->mutable_optimizer()->set_rounding("stochastic");
  p->mutable_weights()->set_format("int:8");
  p->set_master_weights("fp32");
  c.mutable_dataset()->set_name("cifar10");
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
  // Configs built without DefaultTrialConfig: empty schedule / master weights are the defaults.
  c.mutable_train()->clear_lr_schedule();
  c.mutable_precision()->clear_master_weights();
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
}

// fp64 rounds every other site through float32 (worker/trainer/network.h), and an fp32
// accumulator is the plain dot product: both are accepted.
TEST(TrialConfigTest, Fp64AcceptsQuantisedSitesAndAnFp32Accumulator) {
  v1::TrialConfig c = DefaultTrialConfig();
  c.mutable_train()->set_compute("fp64");
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format("dps:8,8");
  p->clear_sites();
  for (const char* site : {"weights", "activations", "errors", "gradients", "optimizer"}) {
    p->add_sites(site);
  }
  p->add_sites("accumulator");
  p->mutable_accumulator()->set_format("fp32");
  p->set_master_weights("fp32");
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
  c.mutable_train()->set_compute("fp32");
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
}

}  // namespace
}  // namespace bitsweep::trainer
