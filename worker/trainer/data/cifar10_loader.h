// Reader for CIFAR-10's binary version (https://www.cs.toronto.edu/~kriz/cifar.html):
// data_batch_1.bin .. data_batch_5.bin (training) and test_batch.bin, each a sequence of
// 3073-byte records: 1 label byte (0-9), then 3072 pixel bytes, the 1024 red, then green, then
// blue values of a 32x32 image in row-major order (already our channels x height x width).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bitsweep::trainer {

struct Dataset;

inline constexpr int kCifarSide = 32;
inline constexpr int kCifarChannels = 3;
inline constexpr int64_t kCifarImageBytes = int64_t{kCifarChannels} * kCifarSide * kCifarSide;
inline constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;

// Appends the records of one batch held in memory: pixels as byte / 255, labels as they are.
// `name` (a path) starts every error message. On error nothing is appended.
// Errors: DataLoss "NAME: what is wrong" (empty, a size that is not a whole number of records,
// a label above 9, naming the record).
absl::Status ParseCifar10Batch(std::string_view bytes, std::string_view name,
                               std::vector<float>* images, std::vector<uint8_t>* labels);

// Reads one batch file and appends its records (ParseCifar10Batch).
// Errors: NotFound (no such file), DataLoss naming the file (unreadable, larger than a
// plausible batch, or as ParseCifar10Batch).
absl::Status ReadCifarBatch(const std::filesystem::path& path, std::vector<float>* images,
                            std::vector<uint8_t>* labels);

// Loads dir/data_batch_{1..5}.bin and dir/test_batch.bin into a 3x32x32, 10-class Dataset.
// Errors: as ReadCifarBatch.
absl::StatusOr<Dataset> LoadCifar10(const std::filesystem::path& dir);

}  // namespace bitsweep::trainer
