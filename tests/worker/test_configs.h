// Small trial configs that train in well under a second on the synthetic dataset.
#pragma once

#include "bitsweep/v1/config.pb.h"

namespace bitsweep::worker::testing {

inline v1::TrialConfig TinySyntheticConfig(int64_t iterations = 40, int32_t eval_every = 10) {
  v1::TrialConfig config;
  config.mutable_dataset()->set_name("synthetic");
  config.mutable_dataset()->set_train_limit(512);
  config.mutable_dataset()->set_test_limit(256);
  config.mutable_model()->add_conv(4);
  config.mutable_model()->set_kernel(3);
  config.mutable_model()->set_pool(2);
  config.mutable_model()->add_dense(16);
  config.mutable_model()->set_activation("relu");
  config.mutable_model()->set_init("he");
  config.mutable_model()->set_init_scale(1.0);
  config.mutable_train()->set_iterations(iterations);
  config.mutable_train()->set_epochs(1);
  config.mutable_train()->set_batch_size(16);
  config.mutable_train()->set_optimizer("sgd");
  config.mutable_train()->set_lr(0.05);
  config.mutable_train()->set_eval_every(eval_every);
  config.mutable_train()->set_target_accuracy(0.9);
  config.mutable_train()->set_loss("cross_entropy");
  config.mutable_precision()->mutable_default_()->set_format("fp32");
  config.mutable_precision()->mutable_default_()->set_rounding("nearest");
  config.set_seed(1);
  return config;
}

}  // namespace bitsweep::worker::testing
