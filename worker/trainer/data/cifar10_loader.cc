#include "worker/trainer/data/cifar10_loader.h"

#include "absl/strings/str_cat.h"
#include "worker/trainer/data/dataset.h"
#include "worker/trainer/data/idx_loader.h"

namespace bitsweep::trainer {
namespace {

constexpr int kCifarClasses = 10;
// The official batches hold 10,000 records; allow ten times that before calling a file absurd.
constexpr uint64_t kMaxBatchBytes = uint64_t{100000} * kCifarRecordBytes;

// (This abseil's string_view is its own type, not std::string_view.)
absl::Status Corrupt(std::string_view name, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(absl::string_view(name.data(), name.size()), ": ", what));
}

}  // namespace

absl::Status ParseCifar10Batch(std::string_view bytes, std::string_view name,
                               std::vector<float>* images, std::vector<uint8_t>* labels) {
  if (bytes.empty()) return Corrupt(name, "empty");
  const auto size = static_cast<int64_t>(bytes.size());
  if (size % kCifarRecordBytes != 0) {
    return Corrupt(name, absl::StrCat(size, " bytes is not a whole number of ", kCifarRecordBytes,
                                      "-byte records (truncated?)"));
  }
  const int64_t records = size / kCifarRecordBytes;
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  // Check every label first, so a bad file appends nothing.
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t label = data[r * kCifarRecordBytes];
    if (label >= kCifarClasses) {
      return Corrupt(name, absl::StrCat("record ", r, " has label ", int{label}, ", not 0-9"));
    }
  }
  images->reserve(images->size() + static_cast<size_t>(records * kCifarImageBytes));
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* record = data + r * kCifarRecordBytes;
    labels->push_back(record[0]);
    for (int64_t i = 1; i < kCifarRecordBytes; ++i) {
      images->push_back(static_cast<float>(record[i]) / 255.0f);
    }
  }
  return absl::OkStatus();
}

absl::Status ReadCifarBatch(const std::filesystem::path& path, std::vector<float>* images,
                            std::vector<uint8_t>* labels) {
  absl::StatusOr<std::string> bytes = ReadFileBytes(path, kMaxBatchBytes);
  if (!bytes.ok()) return bytes.status();
  return ParseCifar10Batch(*bytes, path.string(), images, labels);
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
