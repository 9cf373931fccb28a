#include "worker/trainer/data/idx_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "worker/trainer/data/dataset.h"

namespace bitsweep::trainer {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::vector<uint8_t> Header(uint32_t magic, const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> out;
  auto put = [&out](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  return out;
}

std::vector<uint8_t> Images(uint32_t n, uint32_t rows, uint32_t cols) {
  std::vector<uint8_t> f = Header(0x803, {n, rows, cols});
  for (uint32_t i = 0; i < n * rows * cols; ++i) f.push_back(static_cast<uint8_t>(i * 7));
  return f;
}

std::vector<uint8_t> Labels(const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> f = Header(0x801, {static_cast<uint32_t>(labels.size())});
  f.insert(f.end(), labels.begin(), labels.end());
  return f;
}

class IdxLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() /
        ("bitsweep_idx_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path Write(const std::string& name, const std::vector<uint8_t>& bytes) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  fs::path WriteGz(const std::string& name, const std::vector<uint8_t>& bytes) {
    const fs::path p = dir_ / name;
    gzFile f = gzopen(p.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return p;
  }

  fs::path dir_;
};

TEST_F(IdxLoaderTest, ReadsPlainImagesScaledToUnitRange) {
  auto images = ReadIdxImages(Write("img", Images(3, 2, 4)));
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_EQ(images->count, 3);
  EXPECT_EQ(images->rows, 2);
  EXPECT_EQ(images->cols, 4);
  ASSERT_EQ(images->pixels.size(), 24u);
  EXPECT_FLOAT_EQ(images->pixels[1], 7.0f / 255);
  EXPECT_FLOAT_EQ(images->pixels[23], static_cast<uint8_t>(23 * 7) / 255.0f);
}

TEST_F(IdxLoaderTest, ReadsGzipFilesLikePlainOnes) {
  auto plain = ReadIdxImages(Write("img", Images(3, 2, 4)));
  auto gz = ReadIdxImages(WriteGz("img.gz", Images(3, 2, 4)));
  ASSERT_TRUE(gz.ok()) << gz.status();
  EXPECT_EQ(gz->pixels, plain->pixels);
  auto labels = ReadIdxLabels(WriteGz("lab.gz", Labels({1, 2, 9})), 10);
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(*labels, (std::vector<uint8_t>{1, 2, 9}));
}

TEST_F(IdxLoaderTest, TruncatedFileIsDataLossNamingTheFile) {
  std::vector<uint8_t> bytes = Images(3, 2, 4);
  bytes.resize(bytes.size() - 5);
  auto images = ReadIdxImages(Write("short", bytes));
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(images.status().message()), HasSubstr("short"));
  EXPECT_THAT(std::string(images.status().message()), HasSubstr("truncated"));

  auto header = ReadIdxImages(Write("tiny", {0, 0, 8}));
  EXPECT_EQ(header.status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(IdxLoaderTest, TruncatedGzipStreamIsDataLoss) {
  const fs::path p = WriteGz("cut.gz", Images(50, 28, 28));
  const auto size = fs::file_size(p);
  fs::resize_file(p, size / 2);
  auto images = ReadIdxImages(p);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss) << images.status();
  EXPECT_THAT(std::string(images.status().message()), HasSubstr("cut.gz"));
}

TEST_F(IdxLoaderTest, BadMagicIsDataLoss) {
  auto images = ReadIdxImages(Write("labels-as-images", Labels({1, 2})));
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(images.status().message()), HasSubstr("bad magic"));
  auto labels = ReadIdxLabels(Write("images-as-labels", Images(1, 2, 2)), 10);
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(IdxLoaderTest, TrailingBytesAreDataLoss) {
  std::vector<uint8_t> bytes = Labels({1, 2});
  bytes.push_back(0);
  EXPECT_EQ(ReadIdxLabels(Write("long", bytes), 10).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(IdxLoaderTest, LabelOutOfRangeIsDataLoss) {
  auto labels = ReadIdxLabels(Write("lab", Labels({1, 10, 2})), 10);
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(labels.status().message()), HasSubstr("label 10 of example 1"));
}

TEST_F(IdxLoaderTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadIdxImages(dir_ / "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FindIdxFile(dir_, "nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(IdxLoaderTest, LoadDatasetReadsAMixOfPlainAndGzipFiles) {
  fs::create_directories(dir_ / "mnist");
  Write("mnist/train-images-idx3-ubyte", Images(4, 3, 3));
  WriteGz("mnist/train-labels-idx1-ubyte.gz", Labels({0, 1, 2, 3}));
  WriteGz("mnist/t10k-images-idx3-ubyte.gz", Images(2, 3, 3));
  Write("mnist/t10k-labels-idx1-ubyte", Labels({4, 5}));
  auto data = LoadDataset("mnist", dir_);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->train_size(), 4);
  EXPECT_EQ((*data)->test_size(), 2);
  EXPECT_EQ((*data)->height, 3);
  EXPECT_EQ((*data)->image_size(), 9);
  EXPECT_EQ((*data)->test_labels[1], 5);
}

TEST_F(IdxLoaderTest, LoadDatasetRejectsMismatchedCounts) {
  fs::create_directories(dir_ / "fashion-mnist");
  Write("fashion-mnist/train-images-idx3-ubyte", Images(4, 3, 3));
  Write("fashion-mnist/train-labels-idx1-ubyte", Labels({0, 1, 2}));
  Write("fashion-mnist/t10k-images-idx3-ubyte", Images(2, 3, 3));
  Write("fashion-mnist/t10k-labels-idx1-ubyte", Labels({4, 5}));
  auto data = LoadDataset("fashion-mnist", dir_);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(data.status().message()), HasSubstr("3 labels but"));
}

TEST_F(IdxLoaderTest, LoadDatasetWithMissingFilesIsNotFound) {
  EXPECT_EQ(LoadDataset("mnist", dir_).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace bitsweep::trainer
