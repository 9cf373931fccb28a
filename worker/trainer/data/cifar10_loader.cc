#include "worker/trainer/data/cifar10_loader.h"

#include <fstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "worker/trainer/data/dataset.h"

namespace bitsweep::trainer {
namespace {

constexpr int kCifarClasses = 10;

absl::Status Corrupt(const std::filesystem::path& path, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(path.string(), ": ", what));
}

}  // namespace

absl::Status ReadCifarBatch(const std::filesystem::path& path, std::vector<float>* images,
                            std::vector<uint8_t>* labels) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file"));
  }
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return Corrupt(path, absl::StrCat("cannot read its size: ", ec.message()));
  if (size == 0) return Corrupt(path, "empty");
  if (size % kCifarRecordBytes != 0) {
    return Corrupt(path, absl::StrCat(size, " bytes is not a whole number of ", kCifarRecordBytes,
                                      "-byte records (truncated?)"));
  }
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes(size);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    return Corrupt(path, "read failed");
  }
  const int64_t records = static_cast<int64_t>(size) / kCifarRecordBytes;
  images->reserve(images->size() + records * kCifarImageBytes);
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* record = bytes.data() + r * kCifarRecordBytes;
    if (record[0] >= kCifarClasses) {
      return Corrupt(path, absl::StrCat("record ", r, " has label ", int{record[0]}, ", not 0-9"));
    }
    labels->push_back(record[0]);
    for (int64_t i = 1; i < kCifarRecordBytes; ++i) {
      images->push_back(static_cast<float>(record[i]) / 255.0f);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Dataset> LoadCifar10(const std::filesystem::path& dir) {
  Dataset d;
  d.name = "cifar10";
  d.channels = kCifarChannels;
  d.height = kCifarSide;
  d.width = kCifarSide;
  d.num_classes = kCifarClasses;
  for (int b = 1; b <= 5; ++b) {
    absl::Status s = ReadCifarBatch(dir / absl::StrCat("data_batch_", b, ".bin"), &d.train_images,
                                    &d.train_labels);
    if (!s.ok()) return s;
  }
  absl::Status s = ReadCifarBatch(dir / "test_batch.bin", &d.test_images, &d.test_labels);
  if (!s.ok()) return s;
  return d;
}

}  // namespace bitsweep::trainer
