// Bad dataset files (issue 3, "Bad inputs"): malformed, truncated or corrupt IDX, gzip and
// CIFAR-10 input is a clear DataLoss / NotFound naming the file, never a crash; and the
// in-memory parsers the fuzz targets call survive arbitrary mutations of valid files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/trainer/data/cifar10_loader.h"
#include "worker/trainer/data/dataset.h"
#include "worker/trainer/data/idx_loader.h"
#include "worker/trainer/quant/rng.h"

namespace bitsweep::trainer {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Header(uint32_t magic, const std::vector<uint32_t>& dims) {
  std::string out;
  auto put = [&out](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>(v >> s));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  return out;
}

std::string Images(uint32_t n, uint32_t rows, uint32_t cols) {
  std::string f = Header(0x803, {n, rows, cols});
  for (uint32_t i = 0; i < n * rows * cols; ++i) f.push_back(static_cast<char>(i * 7));
  return f;
}

std::string Labels(const std::vector<uint8_t>& labels) {
  std::string f = Header(0x801, {static_cast<uint32_t>(labels.size())});
  for (uint8_t l : labels) f.push_back(static_cast<char>(l));
  return f;
}

std::string Gzip(const std::string& plain) {
  z_stream s{};
  EXPECT_EQ(deflateInit2(&s, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&s, plain.size()) + 64, '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  s.avail_in = static_cast<uInt>(plain.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

std::string CifarBatch(const std::vector<uint8_t>& labels) {
  std::string bytes;
  for (size_t r = 0; r < labels.size(); ++r) {
    bytes.push_back(static_cast<char>(labels[r]));
    bytes.append(static_cast<size_t>(kCifarImageBytes), static_cast<char>(r));
  }
  return bytes;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("bitsweep_bad_input_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path Write(const std::string& name, const std::string& bytes) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }

  fs::path dir_;
};

TEST_F(BadInputTest, ParsersWorkInMemoryOnPlainAndGzipBytes) {
  auto plain = ParseIdxImages(Images(2, 3, 4), "mem");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->count, 2);
  auto gz = ParseIdxImages(Gzip(Images(2, 3, 4)), "mem.gz");
  ASSERT_TRUE(gz.ok()) << gz.status();
  EXPECT_EQ(gz->pixels, plain->pixels);
  auto labels = ParseIdxLabels(Gzip(Labels({3, 1, 4})), "labels.gz", 10);
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(*labels, (std::vector<uint8_t>{3, 1, 4}));
  // Concatenated gzip members (gzip -c a b) are one file, as gzip(1) reads them.
  const std::string whole = Labels({3, 1, 4, 1, 5});
  auto two = ParseIdxLabels(Gzip(whole.substr(0, 7)) + Gzip(whole.substr(7)), "two.gz", 10);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->size(), 5u);
}

TEST_F(BadInputTest, EveryMalformedIdxFileIsDataLossNamingTheFileAndTheProblem) {
  struct Case {
    std::string bytes;
    const char* problem;
  };
  std::string short_data = Images(3, 2, 2);
  short_data.pop_back();
  std::string huge_dims = Header(0x803, {0xFFFFFFFFu, 0xFFFFFFFFu, 2});
  const Case cases[] = {
      {"", "empty file"},
      {std::string("\0\0", 2), "truncated header (2 bytes)"},
      {Header(0x803, {3}), "truncated header (8 bytes, expected 16)"},
      {Labels({1, 2}), "bad magic 0x00000801, expected 0x00000803 (IDX images)"},
      {Header(0x0803, {0, 2, 2}), "dimension 0 is zero"},
      {short_data, "truncated: 11 data bytes, the header says 12"},
      {Images(3, 2, 2) + "xy", "2 trailing bytes"},
      {huge_dims, "dimensions ask for more than"},
      {Header(0x803, {1, 5000, 1}) + std::string(5000, 'a'), "larger than 4096x4096"},
      {std::string("\x1f\x8b garbage that is not deflate data"), "corrupt gzip data"},
      {Gzip(Images(3, 2, 2)).substr(0, 20), "truncated gzip data"},
      {Gzip(Images(3, 2, 2)) + "junk", "4 bytes of trailing garbage after the gzip data"},
  };
  for (const Case& c : cases) {
    const fs::path p = Write("train-images-idx3-ubyte", c.bytes);
    auto images = ReadIdxImages(p);
    ASSERT_FALSE(images.ok()) << c.problem;
    EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss) << c.problem;
    EXPECT_THAT(Message(images.status()),
                AllOf(StartsWith(p.string() + ": "), HasSubstr(c.problem)));
  }
}

TEST_F(BadInputTest, CorruptGzipChecksumIsDataLoss) {
  std::string gz = Gzip(Labels({1, 2, 3, 4, 5, 6, 7, 8, 9}));
  gz[gz.size() - 6] ^= 0x55;  // inside the CRC-32 trailer
  auto labels = ParseIdxLabels(gz, "labels.gz", 10);
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(labels.status()), AllOf(StartsWith("labels.gz: "), HasSubstr("corrupt")));
}

TEST_F(BadInputTest, GzipBombsStopAtTheSizeLimit) {
  const std::string zeros = Header(0x801, {1 << 20}) + std::string(1 << 20, '\0');
  auto labels = ParseIdxLabels(Gzip(zeros), "bomb.gz", 10, /*max_bytes=*/1 << 16);
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(labels.status()), HasSubstr("decompresses to more than 65536 bytes"));
  EXPECT_TRUE(ParseIdxLabels(Gzip(zeros), "ok.gz", 10, 2 << 20).ok());
}

TEST_F(BadInputTest, ADirectoryWhereAFileShouldBeIsDataLoss) {
  fs::create_directories(dir_ / "a-directory");
  auto images = ReadIdxImages(dir_ / "a-directory");
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(images.status()), HasSubstr("not a regular file"));
  EXPECT_EQ(ReadIdxLabels(dir_ / "missing", 10).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(BadInputTest, LabelAndImageCountMismatchNamesBothFiles) {
  Write("mnist/train-images-idx3-ubyte", Images(4, 3, 3));
  Write("mnist/train-labels-idx1-ubyte.gz", Gzip(Labels({0, 1, 2, 3, 4})));
  Write("mnist/t10k-images-idx3-ubyte", Images(2, 3, 3));
  Write("mnist/t10k-labels-idx1-ubyte", Labels({4, 5}));
  auto d = LoadDataset("mnist", dir_);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(d.status()),
              AllOf(HasSubstr("train-labels-idx1-ubyte.gz"), HasSubstr("5 labels but"),
                    HasSubstr("train-images-idx3-ubyte has 4 images")));
}

TEST_F(BadInputTest, TrainAndTestImagesOfDifferentSizesAreDataLoss) {
  Write("fashion-mnist/train-images-idx3-ubyte", Images(2, 3, 3));
  Write("fashion-mnist/train-labels-idx1-ubyte", Labels({0, 1}));
  Write("fashion-mnist/t10k-images-idx3-ubyte", Images(2, 4, 4));
  Write("fashion-mnist/t10k-labels-idx1-ubyte", Labels({4, 5}));
  auto d = LoadDataset("fashion-mnist", dir_);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(d.status()),
              AllOf(HasSubstr("t10k-images-idx3-ubyte"), HasSubstr("images are 4x4, not 3x3")));
}

TEST_F(BadInputTest, WrongMagicInTheLabelFileNamesIt) {
  Write("mnist/train-images-idx3-ubyte", Images(2, 3, 3));
  Write("mnist/train-labels-idx1-ubyte", Images(2, 3, 3));  // images where labels belong
  Write("mnist/t10k-images-idx3-ubyte", Images(2, 3, 3));
  Write("mnist/t10k-labels-idx1-ubyte", Labels({4, 5}));
  auto d = LoadDataset("mnist", dir_);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(d.status()),
              AllOf(HasSubstr("train-labels-idx1-ubyte: bad magic"), HasSubstr("(IDX labels)")));
}

TEST_F(BadInputTest, BadCifarBatchesAreDataLossAndAppendNothing) {
  struct Case {
    std::string bytes;
    const char* problem;
  };
  std::string bad_label = CifarBatch({1, 2, 3});
  bad_label[2 * kCifarRecordBytes] = 10;
  const Case cases[] = {
      {"", "empty"},
      {CifarBatch({1, 2}).substr(1), "6145 bytes is not a whole number of 3073-byte records"},
      {CifarBatch({1}) + "x", "3074 bytes is not a whole number"},
      {bad_label, "record 2 has label 10, not 0-9"},
  };
  for (const Case& c : cases) {
    std::vector<float> images = {0.5f};
    std::vector<uint8_t> labels = {7};
    const absl::Status s = ParseCifar10Batch(c.bytes, "data_batch_2.bin", &images, &labels);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << c.problem;
    EXPECT_THAT(Message(s), AllOf(StartsWith("data_batch_2.bin: "), HasSubstr(c.problem)));
    EXPECT_EQ(images.size(), 1u) << c.problem;
    EXPECT_EQ(labels.size(), 1u) << c.problem;
  }
  std::vector<float> images;
  std::vector<uint8_t> labels;
  ASSERT_TRUE(ParseCifar10Batch(CifarBatch({9, 0}), "ok", &images, &labels).ok());
  EXPECT_EQ(labels, (std::vector<uint8_t>{9, 0}));
  EXPECT_EQ(images.size(), 2u * kCifarImageBytes);
  EXPECT_FLOAT_EQ(images[kCifarImageBytes], 1.0f / 255);
}

TEST_F(BadInputTest, CifarDirectoryWithABadBatchNamesTheFile) {
  for (int b = 1; b <= 5; ++b)
    Write(absl::StrCat("cifar10/data_batch_", b, ".bin"), CifarBatch({1}));
  Write("cifar10/test_batch.bin", CifarBatch({1}) + "trailing");
  auto d = LoadDataset("cifar10", dir_);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(d.status()), HasSubstr((dir_ / "cifar10/test_batch.bin").string()));
}

// A deterministic mini-fuzz: random byte flips, truncations and insertions of valid files
// (plain and gzip) must give a value or an error, never a crash, hang or sanitizer report.
TEST_F(BadInputTest, MutatedFilesNeverCrashTheParsers) {
  const std::string seeds[] = {Images(3, 4, 4), Gzip(Images(3, 4, 4)), Labels({1, 2, 3, 9}),
                               Gzip(Labels({1, 2, 3, 9})), CifarBatch({1, 2})};
  CounterRng rng(7);
  int rejected = 0;
  for (int i = 0; i < 4000; ++i) {
    const size_t seed = rng.Below(std::size(seeds));
    std::string bytes = seeds[seed];
    const int edits = 1 + static_cast<int>(rng.Below(4));
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      const size_t at = rng.Below(bytes.size());
      switch (rng.Below(4)) {
        case 0:
          bytes[at] = static_cast<char>(rng.Next());
          break;
        case 1:
          bytes.resize(at);
          break;
        case 2:
          bytes.insert(at, 1, static_cast<char>(rng.Next()));
          break;
        default:
          bytes[at] = static_cast<char>(bytes[at] ^ (1 << rng.Below(8)));
      }
    }
    std::vector<float> images;
    std::vector<uint8_t> labels;
    const bool images_ok = ParseIdxImages(bytes, "fuzz", 1 << 20).ok();
    const bool labels_ok = ParseIdxLabels(bytes, "fuzz", 10, 1 << 20).ok();
    const bool cifar_ok = ParseCifar10Batch(bytes, "fuzz", &images, &labels).ok();
    // Count rejections by the parser the unmutated file was written for.
    rejected += !(seed < 2 ? images_ok : seed < 4 ? labels_ok : cifar_ok);
  }
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace bitsweep::trainer
