// Golden weights: the final weights of short training runs, hashed, against values recorded
// before the speed work of issue 9. Every kernel change (GEMM blocking, fused im2col, vectorised
// quantisers, the fused accumulator GEMM) must keep the documented summation and rounding order
// (ops/gemm.h, ops/accumulator_gemm.h, quant/quantizer.h), so these hashes must never move unless
// the semantics change on purpose, and then the commit says so. The determinism tests compare
// runs of one build with each other; these compare a build with the past.
//
// The reference CNN's shapes (28x28 input, 5x5 kernels, 32 and 32 channels, dense 256) are the
// ones the fast paths specialise for, so the runs use them, on a generated 28x28 data set (no
// files: the same bytes on every machine).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/trainer/train_run.h"
#include "worker/trainer/trainer.h"
#include "worker/trainer/trial_config.h"

namespace bitsweep::trainer {
namespace {

// 28x28 images from a fixed integer generator (std:: distributions differ between standard
// libraries): each class a bright bar at its own position over uniform noise, with ReLU-dead and
// saturated pixels, so the activations span zeros, small values and large ones.
const Dataset& Mnist28() {
  static const Dataset* const data = [] {
    auto* d = new Dataset;
    d->name = "mnist";
    d->height = d->width = 28;
    uint64_t state = 0x9e3779b97f4a7c15ull;
    auto next = [&state] {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<uint32_t>(state >> 33);
    };
    auto fill = [&](std::vector<float>& images, std::vector<uint8_t>& labels, int count) {
      for (int n = 0; n < count; ++n) {
        const int label = static_cast<int>(next() % 10);
        labels.push_back(static_cast<uint8_t>(label));
        for (int y = 0; y < 28; ++y) {
          for (int x = 0; x < 28; ++x) {
            float v = static_cast<float>(next() % 256) / 255.0f;
            v = v < 0.6f ? 0.0f : v * 0.5f;
            if (y >= 2 + 2 * label && y < 6 + 2 * label && x > 3 && x < 24) v = 1.0f;
            images.push_back(v);
          }
        }
      }
    };
    fill(d->train_images, d->train_labels, 192);
    fill(d->test_images, d->test_labels, 32);
    return d;
  }();
  return *data;
}

// The reference CNN (DESIGN §3) at batch 32 (four 8-example gradient groups), lr 0.05.
v1::TrialConfig Reference(int iterations) {
  v1::TrialConfig c = DefaultTrialConfig();
  c.mutable_dataset()->set_name("mnist");  // 28x28, one channel: Mnist28() stands in
  v1::ModelConfig* m = c.mutable_model();
  m->clear_conv();
  m->add_conv(32);
  m->add_conv(32);
  m->set_kernel(5);
  m->set_pool(2);
  m->clear_dense();
  m->add_dense(256);
  c.mutable_train()->set_batch_size(32);
  c.mutable_train()->set_iterations(iterations);
  c.mutable_train()->set_eval_every(iterations);
  c.mutable_train()->set_optimizer("sgd");
  c.mutable_train()->set_lr(0.05);
  c.set_seed(11);
  return c;
}

void Quantise(v1::TrialConfig& c, const std::string& format, const std::string& rounding,
              const std::vector<std::string>& sites) {
  v1::PrecisionConfig* p = c.mutable_precision();
  p->mutable_default_()->set_format(format);
  p->mutable_default_()->set_rounding(rounding);
  p->clear_sites();
  for (const std::string& s : sites) p->add_sites(s);
}

// FNV-1a over the bytes of the last checkpoint's weights.
std::string FinalWeightsHash(const v1::TrialConfig& config, int threads) {
  std::string last;
  TrainOptions options;
  options.threads = threads;
  options.final_checkpoint = true;
  options.on_checkpoint = [&last](int64_t, std::string state) { last = std::move(state); };
  auto result = Train(
      config, Mnist28(), [](const v1::CurvePoint&) { return true; }, options);
  EXPECT_TRUE(result.ok()) << result.status();
  auto weights = CheckpointWeights(last);
  EXPECT_TRUE(weights.ok()) << weights.status();
  if (!result.ok() || !weights.ok()) return "";
  uint64_t hash = 1469598103934665603ull;
  for (const std::vector<float>& w : *weights) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(w.data());
    for (size_t i = 0; i < w.size() * sizeof(float); ++i)
      hash = (hash ^ bytes[i]) * 1099511628211ull;
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

const std::vector<std::string> kWae = {"weights", "activations", "errors"};

TEST(GoldenWeightsTest, Fp32) {
  const v1::TrialConfig c = Reference(6);
  EXPECT_EQ(FinalWeightsHash(c, 1), "51937176493d05f2");
  EXPECT_EQ(FinalWeightsHash(c, 2), "51937176493d05f2");
}

TEST(GoldenWeightsTest, Fp32WithMomentumTwoConvTwoDense) {
  v1::TrialConfig c = TwoConvTwoDenseConfig(9);
  c.mutable_train()->set_optimizer("momentum");
  EXPECT_EQ(FinalWeightsHash(c, 1), "d1969669120a643c");
}

TEST(GoldenWeightsTest, Mask12StochasticWeightsActivationsErrors) {
  v1::TrialConfig c = Reference(6);
  Quantise(c, "mask:12", "stochastic", kWae);
  EXPECT_EQ(FinalWeightsHash(c, 1), "393882eeaee21b0e");
  EXPECT_EQ(FinalWeightsHash(c, 2), "393882eeaee21b0e");
}

TEST(GoldenWeightsTest, Float5_10StochasticWeightsActivationsErrors) {
  v1::TrialConfig c = Reference(6);
  Quantise(c, "float:5,10", "stochastic", kWae);
  EXPECT_EQ(FinalWeightsHash(c, 1), "86b5b99e32f1ae6d");
}

TEST(GoldenWeightsTest, Fp8E4M3NearestAndFloat4_3Truncate) {
  v1::TrialConfig c = Reference(4);
  Quantise(c, "fp8e4m3", "nearest", kWae);
  EXPECT_EQ(FinalWeightsHash(c, 1), "e4414a81389c046c");
  v1::TrialConfig t = Reference(4);
  Quantise(t, "float:4,3", "truncate", kWae);
  EXPECT_EQ(FinalWeightsHash(t, 1), "b49dd62597710b1d");
}

TEST(GoldenWeightsTest, Fixed16_14StochasticAllSitesWithMomentum) {
  v1::TrialConfig c = Reference(6);
  c.mutable_train()->set_optimizer("momentum");
  Quantise(c, "fixed:16,14", "stochastic",
           {"weights", "activations", "errors", "gradients", "optimizer"});
  EXPECT_EQ(FinalWeightsHash(c, 1), "008629a076b49b82");
}

TEST(GoldenWeightsTest, Float5_10NearestAccumulator) {
  v1::TrialConfig c = Reference(2);
  Quantise(c, "float:5,10", "nearest", {"weights", "activations", "errors", "accumulator"});
  EXPECT_EQ(FinalWeightsHash(c, 1), "fb11d62f9c40afcc");
  EXPECT_EQ(FinalWeightsHash(c, 2), "fb11d62f9c40afcc");
}

TEST(GoldenWeightsTest, Float4_3TruncateAccumulatorChunked) {
  v1::TrialConfig c = Reference(2);
  c.mutable_precision()->add_sites("accumulator");
  c.mutable_precision()->mutable_accumulator()->set_format("float:4,3");
  c.mutable_precision()->mutable_accumulator()->set_rounding("truncate");
  c.mutable_precision()->set_accumulator_chunk(16);
  EXPECT_EQ(FinalWeightsHash(c, 1), "cb0f2eb76c377465");
}

// Stochastic accumulation takes the row path (ops/accumulator_gemm.h): the small network keeps
// it quick under the sanitizers.
TEST(GoldenWeightsTest, Fp16StochasticAccumulatorTwoConvTwoDense) {
  v1::TrialConfig c = TwoConvTwoDenseConfig(6);
  c.mutable_precision()->add_sites("accumulator");
  c.mutable_precision()->mutable_accumulator()->set_format("fp16");
  c.mutable_precision()->mutable_accumulator()->set_rounding("stochastic");
  EXPECT_EQ(FinalWeightsHash(c, 1), "ce8d1b4df287f969");
}

}  // namespace
}  // namespace bitsweep::trainer
