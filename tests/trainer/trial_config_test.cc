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
      {[](auto& c) { c.mutable_precision()->mutable_default_()->set_format("int:8"); },
       "precision.default.format: ", "not supported yet"},
      {[](auto& c) { c.mutable_precision()->mutable_default_()->set_rounding("up"); },
       "precision.default.rounding: ", "unknown rounding"},
      {[](auto& c) { c.mutable_precision()->add_sites("gradients"); },
       "precision.sites[3]: ", "not supported yet; supported: weights, activations, errors"},
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
      {[](auto& c) { c.mutable_train()->set_optimizer("adam"); },
       "train.optimizer: ", "not supported yet; supported: sgd, momentum"},
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
                             "mask:32", "fixed:16,8"}) {
    v1::TrialConfig c = DefaultTrialConfig();
    c.mutable_precision()->mutable_default_()->set_format(format);
    c.mutable_precision()->mutable_default_()->set_rounding("stochastic");
    EXPECT_TRUE(ValidateTrialConfig(c).ok()) << format;
  }
  v1::TrialConfig c = DefaultTrialConfig();
  c.mutable_train()->set_epochs(0);
  c.mutable_train()->set_iterations(10);
  c.mutable_model()->clear_conv();
  c.mutable_model()->clear_dense();
  c.mutable_model()->set_kernel(0);
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
}

}  // namespace
}  // namespace bitsweep::trainer
