// End-to-end trainer throughput: trains one trial on a real data set and prints its curve and
// result. Not a Google Benchmark: an epoch (or a fixed number of iterations) of MNIST is the
// unit of interest.
//
//   bitsweep_train_epoch DATA_DIR [--preset quickstart|reference] [--format F] [--rounding R]
//       [--sites weights,activations,errors] [--accumulator F] [--accumulator-chunk N]
//       [--epochs E | --iterations N] [--threads T] [--dataset D] [--compute fp32|fp64]
//       [--eval-every N] [--test-limit N] [--momentum M] [--quiet] [--weights-hash]
//
// quickstart = conv [16], kernel 5, pool 2, dense [128], batch 64; reference = the default
// config (conv [32,32], dense [256], batch 128). The last line is one JSON object with the
// figures (images_per_second over wall time, cpu_images_per_second over this process's CPU
// time, which a busy machine disturbs less). --weights-hash checkpoints at every evaluation and
// adds a hash of the last checkpoint's weights, to check that a kernel change keeps them bitwise.
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_split.h"
#include "worker/trainer/data/dataset.h"
#include "worker/trainer/ops/gemm.h"
#include "worker/trainer/trainer.h"
#include "worker/trainer/trial_config.h"

namespace {

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace bitsweep;
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr,
                 "usage: %s DATA_DIR [--preset quickstart|reference] [--format F] [--rounding R] "
                 "[--sites a,b] [--accumulator F] [--accumulator-chunk N] [--epochs E | "
                 "--iterations N] [--threads T] [--dataset D] [--compute fp32|fp64] "
                 "[--eval-every N] [--test-limit N] [--momentum M] [--quiet] [--weights-hash]\n",
                 argv[0]);
    return 2;
  }
  v1::TrialConfig config = trainer::DefaultTrialConfig();
  config.mutable_train()->set_eval_every(200);
  std::string preset = "reference";
  trainer::TrainOptions options;
  bool quiet = false;
  std::string last_checkpoint;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--quiet") {
      quiet = true;
      continue;
    }
    if (flag == "--weights-hash") {
      options.checkpoint_every = 1;
      options.on_checkpoint = [&last_checkpoint](int64_t, std::string state) {
        last_checkpoint = std::move(state);
      };
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", flag.c_str());
      return 2;
    }
    const std::string value = argv[++i];
    v1::PrecisionConfig* p = config.mutable_precision();
    if (flag == "--preset") {
      preset = value;
    } else if (flag == "--format") {
      p->mutable_default_()->set_format(value);
    } else if (flag == "--rounding") {
      p->mutable_default_()->set_rounding(value);
    } else if (flag == "--sites") {
      p->clear_sites();
      for (absl::string_view s : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        p->add_sites(std::string(s));
      }
    } else if (flag == "--accumulator") {
      p->mutable_accumulator()->set_format(value);
      p->add_sites("accumulator");
    } else if (flag == "--accumulator-chunk") {
      p->set_accumulator_chunk(std::atoi(value.c_str()));
    } else if (flag == "--epochs") {
      config.mutable_train()->set_epochs(std::atoi(value.c_str()));
    } else if (flag == "--iterations") {
      config.mutable_train()->set_iterations(std::atoll(value.c_str()));
    } else if (flag == "--threads") {
      options.threads = std::atoi(value.c_str());
    } else if (flag == "--dataset") {
      config.mutable_dataset()->set_name(value);
    } else if (flag == "--compute") {
      config.mutable_train()->set_compute(value);
    } else if (flag == "--eval-every") {
      config.mutable_train()->set_eval_every(std::atoll(value.c_str()));
    } else if (flag == "--test-limit") {
      config.mutable_dataset()->set_test_limit(std::atoi(value.c_str()));
    } else if (flag == "--momentum") {
      config.mutable_train()->set_momentum(std::atof(value.c_str()));
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
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

  auto data = trainer::LoadDataset(config.dataset().name(), argv[1]);
  if (!data.ok()) {
    std::fprintf(stderr, "%s\n", data.status().ToString().c_str());
    return 1;
  }
  const double cpu_start = CpuSeconds();
  auto result = trainer::Train(
      config, **data,
      [quiet](const v1::CurvePoint& p) {
        if (!quiet) {
          std::printf("iter %6lld epoch %.2f train loss %.4f acc %.4f test loss %.4f acc %.4f\n",
                      static_cast<long long>(p.iteration()), p.epoch(), p.train_loss(),
                      p.train_accuracy(), p.test_loss(), p.test_accuracy());
          std::fflush(stdout);
        }
        return true;
      },
      options);
  const double cpu = CpuSeconds() - cpu_start;
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    return 1;
  }
  if (options.on_checkpoint) {
    auto weights = trainer::CheckpointWeights(last_checkpoint);
    if (!weights.ok()) {
      std::fprintf(stderr, "%s\n", weights.status().ToString().c_str());
      return 1;
    }
    uint64_t hash = 1469598103934665603ull;  // FNV-1a over the weights' bytes
    for (const std::vector<float>& w : *weights) {
      const auto* bytes = reinterpret_cast<const unsigned char*>(w.data());
      for (size_t i = 0; i < w.size() * sizeof(float); ++i)
        hash = (hash ^ bytes[i]) * 1099511628211ull;
    }
    std::printf("weights_hash %016llx after iteration %lld\n",
                static_cast<unsigned long long>(hash),
                static_cast<long long>(*trainer::CheckpointIteration(last_checkpoint)));
  }
  const double images = result->images_per_second() * result->train_seconds();
  std::printf(
      "{\"preset\": \"%s\", \"format\": \"%s\", \"rounding\": \"%s\", \"threads\": %d, "
      "\"gemm\": \"%s\", \"outcome\": %d, \"iterations\": %lld, \"final_test_accuracy\": %.4f, "
      "\"train_seconds\": %.3f, \"images_per_second\": %.0f, "
      "\"cpu_seconds_incl_eval\": %.3f, \"images\": %.0f}\n",
      preset.c_str(), config.precision().default_().format().c_str(),
      config.precision().default_().rounding().c_str(), options.threads, trainer::GemmKernelName(),
      result->outcome(), static_cast<long long>(result->iterations()),
      result->final_test_accuracy(), result->train_seconds(), result->images_per_second(), cpu,
      images);
  return 0;
}
