#include "worker/trainer/data/dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "worker/trainer/data/synthetic.h"

namespace bitsweep::trainer {
namespace {

TEST(DatasetTest, SyntheticIsDeterministicAndWellFormed) {
  auto a = LoadDataset("synthetic", "/nonexistent");
  ASSERT_TRUE(a.ok()) << a.status();
  const Dataset b = MakeSyntheticDataset();
  EXPECT_EQ((*a)->train_images, b.train_images);
  EXPECT_EQ((*a)->test_labels, b.test_labels);
  EXPECT_EQ((*a)->train_size(), kSyntheticTrain);
  EXPECT_EQ((*a)->test_size(), kSyntheticTest);
  EXPECT_EQ((*a)->image_size(), 256);
  EXPECT_EQ((*a)->train_images.size(), static_cast<size_t>(kSyntheticTrain * 256));
  for (float v : b.train_images) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
  for (uint8_t l : b.train_labels) ASSERT_LT(l, 10);
  EXPECT_NE(b.train_images, std::vector<float>(b.train_images.size(), b.train_images[0]));
}

TEST(DatasetTest, UnknownNameIsInvalidArgumentListingTheKnownOnes) {
  auto d = LoadDataset("cifar-100", "/tmp");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(d.status().message()),
              ::testing::HasSubstr("known: mnist, fashion-mnist, cifar10, synthetic"));
}

}  // namespace
}  // namespace bitsweep::trainer
