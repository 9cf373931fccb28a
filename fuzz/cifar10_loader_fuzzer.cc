// Fuzz target: the CIFAR-10 binary batch parser (worker/trainer/data/cifar10_loader.h), in
// memory. A corrupt batch must give DataLoss and append nothing; an accepted one appends whole
// records with labels 0-9.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "worker/trainer/data/cifar10_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // One record already there, as when a later batch file of the training set is parsed.
  std::vector<float> images(bitsweep::trainer::kCifarImageBytes, 0.5f);
  std::vector<uint8_t> labels(1, 7);
  const absl::Status status =
      bitsweep::trainer::ParseCifar10Batch(bytes, "fuzz.bin", &images, &labels);
  if (status.ok()) {
    if (labels.size() < 2) abort();
    if (static_cast<int64_t>(images.size()) !=
        static_cast<int64_t>(labels.size()) * bitsweep::trainer::kCifarImageBytes) {
      abort();
    }
    for (uint8_t label : labels) {
      if (label > 9) abort();
    }
  } else if (status.code() != absl::StatusCode::kDataLoss || labels.size() != 1 ||
             static_cast<int64_t>(images.size()) != bitsweep::trainer::kCifarImageBytes) {
    abort();
  }
  return 0;
}
