// Fuzz target: the IDX parser of MNIST / Fashion-MNIST (worker/trainer/data/idx_loader.h),
// plain or gzip-compressed, in memory. Each input is parsed both as an image file and as a
// label file; a corrupt one must give DataLoss, and an accepted one must be self-consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "worker/trainer/data/idx_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<bitsweep::trainer::IdxImages> images =
      bitsweep::trainer::ParseIdxImages(bytes, "fuzz.idx");
  if (images.ok()) {
    if (images->count <= 0 || images->rows <= 0 || images->cols <= 0) abort();
    const int64_t expected = images->count * images->rows * images->cols;
    if (static_cast<int64_t>(images->pixels.size()) != expected) abort();
    for (float pixel : images->pixels) {
      if (!(pixel >= 0.0f && pixel <= 1.0f)) abort();
    }
  } else if (images.status().code() != absl::StatusCode::kDataLoss) {
    abort();
  }
  absl::StatusOr<std::vector<uint8_t>> labels =
      bitsweep::trainer::ParseIdxLabels(bytes, "fuzz.idx", 10);
  if (labels.ok()) {
    for (uint8_t label : *labels) {
      if (label >= 10) abort();
    }
  } else if (labels.status().code() != absl::StatusCode::kDataLoss) {
    abort();
  }
  return 0;
}
