// Dataset names in a trial config are names, never paths (docs/security.md, "Limits and bad
// input"): whatever the name, the worker reads only its --data-dir/<known name>/ files. Each
// test puts valid dataset files where an escaping name would find them, so a loader that
// followed the name would succeed and the test would fail.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "worker/dataset_cache.h"

namespace bitsweep::worker {
namespace {

namespace fs = std::filesystem;

void WriteBigEndian(std::ofstream& out, uint32_t value) {
  const char bytes[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                         static_cast<char>(value >> 8), static_cast<char>(value)};
  out.write(bytes, 4);
}

// A valid MNIST-shaped IDX dataset of two 2x2 images in `dir`.
void WriteTinyIdxDataset(const fs::path& dir) {
  fs::create_directories(dir);
  for (const char* split : {"train", "t10k"}) {
    std::ofstream images(dir / (std::string(split) + "-images-idx3-ubyte"), std::ios::binary);
    WriteBigEndian(images, 0x00000803);
    for (uint32_t size : {2u, 2u, 2u}) WriteBigEndian(images, size);
    images.write("\x00\x40\x80\xff\x10\x20\x30\x40", 8);
    std::ofstream labels(dir / (std::string(split) + "-labels-idx1-ubyte"), std::ios::binary);
    WriteBigEndian(labels, 0x00000801);
    WriteBigEndian(labels, 2);
    labels.write("\x01\x07", 2);
  }
}

class DatasetConfinementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "bitsweep-confine-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    data_dir_ = root_ / "data";
    outside_ = root_ / "outside";
    WriteTinyIdxDataset(data_dir_ / "mnist");
    // A complete dataset outside the data directory, and inside it under an unknown name.
    WriteTinyIdxDataset(outside_);
    WriteTinyIdxDataset(outside_ / "mnist");
    fs::create_directory_symlink(outside_, data_dir_ / "escape");
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  // Expects `name` to be refused as an unknown dataset, without reading any file.
  void ExpectRefused(const std::string& name) {
    DatasetCache cache(data_dir_);
    absl::StatusOr<DatasetPtr> dataset = cache.Get(name);
    ASSERT_FALSE(dataset.ok()) << "loaded '" << name << "'";
    EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument) << dataset.status();
    EXPECT_NE(dataset.status().message().find("unknown dataset"), std::string::npos)
        << dataset.status();
  }

  fs::path root_;
  fs::path data_dir_;
  fs::path outside_;
};

TEST_F(DatasetConfinementTest, KnownName_LoadsFromTheDataDir) {
  // The control: the files the other tests could reach are valid and loadable.
  DatasetCache cache(data_dir_);
  absl::StatusOr<DatasetPtr> dataset = cache.Get("mnist");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->train_size(), 2);
  EXPECT_EQ((*dataset)->height, 2);
}

TEST_F(DatasetConfinementTest, ParentDirectoryName_IsRefused) { ExpectRefused("../outside"); }

TEST_F(DatasetConfinementTest, DotDotInsideKnownName_IsRefused) {
  ExpectRefused("mnist/../../outside");
  ExpectRefused("./mnist");
  ExpectRefused("mnist/");
}

TEST_F(DatasetConfinementTest, AbsolutePathName_IsRefused) {
  ExpectRefused(outside_.string());
  ExpectRefused((outside_ / "mnist").string());
}

TEST_F(DatasetConfinementTest, SymlinkInDataDirUnderUnknownName_IsNotFollowed) {
  ExpectRefused("escape");
  ExpectRefused("escape/mnist");
}

TEST_F(DatasetConfinementTest, EmbeddedNulAfterKnownName_IsRefused) {
  ExpectRefused(std::string("mnist\0/../../outside", 20));
}

}  // namespace
}  // namespace bitsweep::worker
