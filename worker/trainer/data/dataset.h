// In-memory image classification data, loaded once per worker and shared (read-only) by all
// of its slots.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bitsweep::trainer {

struct Dataset {
  std::string name;
  int channels = 1;
  int height = 0;
  int width = 0;
  int num_classes = 10;
  // Images as float in [0, 1], example-major, channels x height x width each.
  std::vector<float> train_images;
  std::vector<uint8_t> train_labels;
  std::vector<float> test_images;
  std::vector<uint8_t> test_labels;

  int64_t train_size() const { return static_cast<int64_t>(train_labels.size()); }
  int64_t test_size() const { return static_cast<int64_t>(test_labels.size()); }
  int64_t image_size() const { return int64_t{channels} * height * width; }
};

// Loads a dataset by name:
//   mnist          IDX files under data_dir/mnist/
//   fashion-mnist  IDX files under data_dir/fashion-mnist/
//   cifar10        binary batches under data_dir/cifar10/ (data/cifar10_loader.h)
//   synthetic      generated, deterministic (no files needed)
// IDX files are named train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte, each optionally gzip-compressed with a .gz suffix.
// Errors: InvalidArgument (unknown name), NotFound (missing file), DataLoss (truncated or
// corrupt file; the message names the file and what is wrong).
absl::StatusOr<std::shared_ptr<const Dataset>> LoadDataset(const std::string& name,
                                                           const std::filesystem::path& data_dir);

}  // namespace bitsweep::trainer
