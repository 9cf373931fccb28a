// Datasets loaded once per worker process and shared read-only by all slots: MNIST is tens of
// megabytes, so loading it per trial (or per slot) would waste both time and memory.
#pragma once

#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "worker/trainer/data/dataset.h"

namespace bitsweep::worker {

using DatasetPtr = std::shared_ptr<const trainer::Dataset>;
// Same contract as trainer::LoadDataset; injectable so tests can count loads.
using DatasetLoader =
    std::function<absl::StatusOr<DatasetPtr>(const std::string&, const std::filesystem::path&)>;

class DatasetCache {
 public:
  // `loader` defaults to trainer::LoadDataset.
  explicit DatasetCache(std::filesystem::path data_dir, DatasetLoader loader = nullptr);
  DatasetCache(const DatasetCache&) = delete;
  DatasetCache& operator=(const DatasetCache&) = delete;

  // Returns the dataset called `name`, loading it on first use. Thread-safe: concurrent first
  // requests for one name load it once and all wait for that load; different names load in
  // parallel. A failed load is not remembered, so a file added later is picked up.
  // Errors: those of the loader (InvalidArgument unknown name, NotFound missing file,
  // DataLoss corrupt file).
  absl::StatusOr<DatasetPtr> Get(const std::string& name);

 private:
  using Future = std::shared_future<absl::StatusOr<DatasetPtr>>;

  const std::filesystem::path data_dir_;
  const DatasetLoader loader_;
  std::mutex mu_;
  std::map<std::string, Future> entries_;  // Guarded by mu_. Loaded or loading.
};

}  // namespace bitsweep::worker
