#include "worker/trainer/data/cifar10_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/trainer/data/dataset.h"

namespace bitsweep::trainer {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Writes `labels.size()` records; pixel j of record r is (r + j) % 256.
void WriteBatch(const fs::path& path, const std::vector<uint8_t>& labels, int64_t cut = 0) {
  std::string bytes;
  for (size_t r = 0; r < labels.size(); ++r) {
    bytes.push_back(static_cast<char>(labels[r]));
    for (int64_t j = 0; j < kCifarImageBytes; ++j) {
      bytes.push_back(static_cast<char>((static_cast<int64_t>(r) + j) % 256));
    }
  }
  // erase, not resize: with precompiled headers GCC 12 inlines resize here into a memset it
  // then reports as a (false) -Wstringop-overflow.
  bytes.erase(bytes.size() - static_cast<size_t>(cut));
  std::ofstream(path, std::ios::binary) << bytes;
}

class Cifar10LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            absl::StrCat("cifar10_test_", ::testing::UnitTest::GetInstance()->random_seed(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    dir_ = root_ / "cifar10";
    fs::create_directories(dir_);
    for (int b = 1; b <= 5; ++b) {
      WriteBatch(dir_ / absl::StrCat("data_batch_", b, ".bin"), {uint8_t(b), uint8_t(9)});
    }
    WriteBatch(dir_ / "test_batch.bin", {0, 3, 7});
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path root_, dir_;
};

TEST_F(Cifar10LoaderTest, LoadsEveryBatchAsThreeChannel32x32Images) {
  auto d = LoadDataset("cifar10", root_);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->channels, 3);
  EXPECT_EQ((*d)->height, 32);
  EXPECT_EQ((*d)->width, 32);
  EXPECT_EQ((*d)->num_classes, 10);
  EXPECT_EQ((*d)->train_labels, (std::vector<uint8_t>{1, 9, 2, 9, 3, 9, 4, 9, 5, 9}));
  EXPECT_EQ((*d)->test_labels, (std::vector<uint8_t>{0, 3, 7}));
  ASSERT_EQ((*d)->train_images.size(), 10u * 3072);
  // Record 1 of a batch, pixel j: (1 + j) % 256 / 255; the green plane starts at 1024.
  EXPECT_FLOAT_EQ((*d)->train_images[3072 + 0], 1.0f / 255);
  EXPECT_FLOAT_EQ((*d)->train_images[3072 + 254], 1.0f);
  EXPECT_FLOAT_EQ((*d)->test_images[2 * 3072 + 1024], static_cast<float>((2 + 1024) % 256) / 255);
}

TEST_F(Cifar10LoaderTest, TruncatedFileIsDataLossNamingIt) {
  WriteBatch(dir_ / "data_batch_3.bin", {1, 2}, 100);
  auto d = LoadDataset("cifar10", root_);
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("data_batch_3.bin"));
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("whole number of 3073-byte records"));
}

TEST_F(Cifar10LoaderTest, EmptyFileIsDataLoss) {
  WriteBatch(dir_ / "test_batch.bin", {});
  auto d = LoadDataset("cifar10", root_);
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("test_batch.bin: empty"));
}

TEST_F(Cifar10LoaderTest, BadLabelIsDataLossNamingTheFileAndRecord) {
  WriteBatch(dir_ / "test_batch.bin", {0, 10});
  auto d = LoadDataset("cifar10", root_);
  ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("test_batch.bin"));
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("record 1 has label 10"));
}

TEST_F(Cifar10LoaderTest, MissingFileIsNotFound) {
  fs::remove(dir_ / "data_batch_5.bin");
  auto d = LoadDataset("cifar10", root_);
  ASSERT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("data_batch_5.bin"));
}

}  // namespace
}  // namespace bitsweep::trainer
