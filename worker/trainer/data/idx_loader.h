// Reader for the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
// a big-endian magic 0x000008DD (0x08 = unsigned byte, DD = number of dimensions), DD big-endian
// uint32 sizes, then the bytes. Files may be plain or gzip-compressed; zlib's gzread reads both.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "absl/status/statusor.h"

namespace bitsweep::trainer {

struct IdxImages {
  int64_t count = 0;
  int rows = 0;
  int cols = 0;
  std::vector<float> pixels;  // [count, rows, cols], byte / 255
};

// Reads an idx3 image file (magic 0x00000803).
// Errors: NotFound (no such file), DataLoss naming the file (unreadable or corrupt gzip, wrong
// magic, zero or absurd dimensions, truncated data or trailing bytes).
absl::StatusOr<IdxImages> ReadIdxImages(const std::filesystem::path& path);

// Reads an idx1 label file (magic 0x00000801); every label must be < num_classes.
// Errors: as ReadIdxImages, plus DataLoss for a label out of range.
absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::filesystem::path& path,
                                                   int num_classes);

// Finds `dir/base` or `dir/base.gz` (the plain file first).
// Errors: NotFound naming both candidates.
absl::StatusOr<std::filesystem::path> FindIdxFile(const std::filesystem::path& dir,
                                                  const std::string& base);

}  // namespace bitsweep::trainer
