// End-to-end trainer throughput: trains one trial on a real data set and prints its curve and
// result. Not a Google Benchmark: one epoch of MNIST is the unit of interest.
//
//   bitsweep_train_epoch DATA_DIR [quickstart|reference] [FORMAT] [ROUNDING] [EPOCHS] [DATASET]
//
// quickstart = conv [16], kernel 5, pool 2, dense [128], batch 64; reference = the default
// config (conv [32,32], dense [256], batch 128). Precision applies to weights, activations and
// errors.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker/trainer/data/dataset.h"
#include "worker/trainer/trainer.h"
#include "worker/trainer/trial_config.h"

int main(int argc, char** argv) {
  using namespace bitsweep;
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s DATA_DIR [quickstart|reference] [FORMAT] [ROUNDING] [EPOCHS] "
                 "[DATASET]\n",
                 argv[0]);
    return 2;
  }
  const std::string preset = argc > 2 ? argv[2] : "quickstart";
  v1::TrialConfig config = trainer::DefaultTrialConfig();
  if (argc > 6) config.mutable_dataset()->set_name(argv[6]);
  if (preset == "quickstart") {
    config.mutable_model()->clear_conv();
    config.mutable_model()->add_conv(16);
    config.mutable_model()->clear_dense();
    config.mutable_model()->add_dense(128);
    config.mutable_train()->set_batch_size(64);
  } else if (preset != "reference") {
    std::fprintf(stderr, "unknown preset %s\n", preset.c_str());
    return 2;
  }
  if (argc > 3) config.mutable_precision()->mutable_default_()->set_format(argv[3]);
  if (argc > 4) config.mutable_precision()->mutable_default_()->set_rounding(argv[4]);
  if (argc > 5) config.mutable_train()->set_epochs(std::atoi(argv[5]));
  config.mutable_train()->set_eval_every(200);

  auto data = trainer::LoadDataset(config.dataset().name(), argv[1]);
  if (!data.ok()) {
    std::fprintf(stderr, "%s\n", data.status().ToString().c_str());
    return 1;
  }
  auto result = trainer::Train(config, **data, [](const v1::CurvePoint& p) {
    std::printf("iter %6lld epoch %.2f train loss %.4f acc %.4f test loss %.4f acc %.4f\n",
                static_cast<long long>(p.iteration()), p.epoch(), p.train_loss(),
                p.train_accuracy(), p.test_loss(), p.test_accuracy());
    std::fflush(stdout);
    return true;
  });
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "%s %s %s: outcome %d, final test accuracy %.4f, %lld iterations, "
      "%.2f s training, %.0f images/s, kappa %.4f %s\n",
      preset.c_str(), config.precision().default_().format().c_str(),
      config.precision().default_().rounding().c_str(), result->outcome(),
      result->final_test_accuracy(), static_cast<long long>(result->iterations()),
      result->train_seconds(), result->images_per_second(), result->kappa(),
      result->detail().c_str());
  return 0;
}
