// Reader for the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
// a big-endian magic 0x000008DD (0x08 = unsigned byte, DD = number of dimensions), DD big-endian
// uint32 sizes, then the bytes. Files may be plain or gzip-compressed (recognised by their
// content, not their name); gzip is inflated in memory with zlib.
//
// The Parse* functions work on bytes in memory (for fuzzing and tests); the Read* functions
// read a file and parse it. Nothing here aborts or reads out of bounds on any input.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bitsweep::trainer {

// The largest (decompressed) IDX content accepted: guards against corrupt headers and gzip
// bombs asking for absurd allocations.
inline constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 32;

struct IdxImages {
  int64_t count = 0;
  int rows = 0;
  int cols = 0;
  std::vector<float> pixels;  // [count, rows, cols], byte / 255
};

// Parses an idx3 image file (magic 0x00000803) held in `bytes`, plain or gzip; `name` (a path)
// starts every error message. At most `max_bytes` of (decompressed) content are accepted.
// Errors: DataLoss "NAME: what is wrong" (corrupt or truncated gzip, wrong magic, truncated
// header, zero or absurd dimensions, truncated data or trailing bytes, more than max_bytes).
absl::StatusOr<IdxImages> ParseIdxImages(std::string_view bytes, std::string_view name,
                                         uint64_t max_bytes = kMaxIdxBytes);

// Parses an idx1 label file (magic 0x00000801); every label must be < num_classes.
// Errors: as ParseIdxImages, plus DataLoss for a label out of range (naming the example).
absl::StatusOr<std::vector<uint8_t>> ParseIdxLabels(std::string_view bytes, std::string_view name,
                                                    int num_classes,
                                                    uint64_t max_bytes = kMaxIdxBytes);

// Reads an idx3 image file.
// Errors: NotFound (no such file), DataLoss naming the file (unreadable, or as ParseIdxImages).
absl::StatusOr<IdxImages> ReadIdxImages(const std::filesystem::path& path);

// Reads an idx1 label file.
// Errors: NotFound (no such file), DataLoss naming the file (unreadable, or as ParseIdxLabels).
absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::filesystem::path& path,
                                                   int num_classes);

// Finds `dir/base` or `dir/base.gz` (the plain file first).
// Errors: NotFound naming both candidates.
absl::StatusOr<std::filesystem::path> FindIdxFile(const std::filesystem::path& dir,
                                                  const std::string& base);

// The whole content of a regular file, at most `max_bytes` of it.
// Errors: NotFound (no such file), DataLoss naming the file (not a regular file, unreadable,
// larger than max_bytes).
absl::StatusOr<std::string> ReadFileBytes(const std::filesystem::path& path, uint64_t max_bytes);

}  // namespace bitsweep::trainer
