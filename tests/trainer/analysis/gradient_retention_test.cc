#include "worker/trainer/analysis/gradient_retention.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

using ::testing::HasSubstr;

constexpr int kBatch = 16;

std::unique_ptr<Network> SmallNetwork() {
  v1::ModelConfig m;
  m.add_conv(4);
  m.set_kernel(3);
  m.set_pool(2);
  m.add_dense(12);
  m.set_activation("relu");
  m.set_init("he");
  m.set_init_scale(1.0);
  auto net = Network::Create(m, 1, 10, 10, 5, kBatch, 3);
  EXPECT_TRUE(net.ok()) << net.status();
  return std::move(*net);
}

struct Batch {
  std::vector<float> images;
  std::vector<uint8_t> labels;
};

Batch RandomBatch() {
  CounterRng rng(17);
  Batch b;
  b.images.resize(kBatch * 100);
  for (float& v : b.images) v = static_cast<float>(rng.Uniform());
  for (int i = 0; i < kBatch; ++i) b.labels.push_back(static_cast<uint8_t>(i % 5));
  return b;
}

SitePrecision Accumulator(const std::string& format, const std::string& rounding) {
  v1::PrecisionConfig c;
  c.mutable_default_()->set_format("fp32");
  c.mutable_default_()->set_rounding("nearest");
  c.add_sites("accumulator");
  c.mutable_accumulator()->set_format(format);
  c.mutable_accumulator()->set_rounding(rounding);
  auto p = MakeSitePrecision(c, 3);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(*p);
}

std::vector<LayerGradientRetention> Measure(Network& net, const Batch& b, SitePrecision p) {
  auto r = MeasureGradientRetention(net, b.images.data(), b.labels.data(), kBatch,
                                    Loss::kCrossEntropy, p, 9);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : std::vector<LayerGradientRetention>{};
}

TEST(GradientRetentionTest, Float32GridKeepsEveryLayersGradient) {
  auto net = SmallNetwork();
  const Batch b = RandomBatch();
  // One bit short of float32, rounded to nearest: nearly everything is retained.
  const auto layers = Measure(*net, b, Accumulator("float:8,22", "nearest"));
  ASSERT_EQ(layers.size(), 3u);
  EXPECT_EQ(layers[0].layer, "conv0");
  EXPECT_EQ(layers[2].layer, "output");
  for (const auto& l : layers) {
    EXPECT_NEAR(l.retention, 1.0, 1e-4) << l.layer;
    EXPECT_GT(l.cosine, 0.9999) << l.layer;
  }
}

TEST(GradientRetentionTest, TruncatingAccumulatorLosesMoreWithFewerBits) {
  auto net = SmallNetwork();
  const Batch b = RandomBatch();
  const auto coarse = Measure(*net, b, Accumulator("float:8,2", "truncate"));
  const auto middle = Measure(*net, b, Accumulator("float:8,6", "truncate"));
  const auto fine = Measure(*net, b, Accumulator("float:8,14", "truncate"));
  ASSERT_EQ(coarse.size(), 3u);
  ASSERT_EQ(fine.size(), 3u);
  for (int l = 0; l < 3; ++l) {
    EXPECT_LT(coarse[l].cosine, middle[l].cosine) << coarse[l].layer;
    EXPECT_LT(middle[l].cosine, fine[l].cosine) << coarse[l].layer;
    EXPECT_GT(fine[l].retention, 0.99) << fine[l].layer;
  }
  // Truncation toward zero shrinks the long conv weight-gradient sums.
  EXPECT_LT(coarse[0].retention, 0.99);
  // The measurement leaves the weights alone: a second run gives the same numbers.
  const auto again = Measure(*net, b, Accumulator("float:8,6", "truncate"));
  EXPECT_EQ(again[0].retention, middle[0].retention);
}

TEST(GradientRetentionTest, BadInput_IsAnErrorNamingIt) {
  auto net = SmallNetwork();
  const Batch b = RandomBatch();
  SitePrecision fp32;
  auto r = MeasureGradientRetention(*net, b.images.data(), b.labels.data(), kBatch,
                                    Loss::kCrossEntropy, fp32, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("accumulator"));
  SitePrecision acc = Accumulator("float:8,6", "truncate");
  r = MeasureGradientRetention(*net, b.images.data(), b.labels.data(), kBatch + 1,
                               Loss::kCrossEntropy, acc, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("17"));
  r = MeasureGradientRetention(*net, b.images.data(), b.labels.data(), 0, Loss::kCrossEntropy, acc,
                               1);
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace bitsweep::trainer
