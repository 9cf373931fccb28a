#include "worker/dataset_cache.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <utility>

namespace bitsweep::worker {

DatasetCache::DatasetCache(std::filesystem::path data_dir, DatasetLoader loader)
    : data_dir_(std::move(data_dir)),
      loader_(loader ? std::move(loader) : DatasetLoader(&trainer::LoadDataset)) {}

absl::StatusOr<DatasetPtr> DatasetCache::Get(const std::string& name) {
  std::promise<absl::StatusOr<DatasetPtr>> promise;
  Future future;
  bool owner = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) {
      future = it->second;
    } else {
      future = promise.get_future().share();
      entries_.emplace(name, future);
      owner = true;
    }
  }
  if (!owner) return future.get();

  // Load outside the lock so that other names are not blocked behind this one.
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<DatasetPtr> loaded = loader_(name, data_dir_);
  if (loaded.ok() && *loaded == nullptr) {
    loaded = absl::InternalError("dataset '" + name + "': loader returned no data");
  }
  if (loaded.ok()) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("loaded dataset {}: {} train / {} test examples in {:.2f}s", name,
                 (*loaded)->train_size(), (*loaded)->test_size(), seconds);
  } else {
    // Forget the failure: waiters already holding the future still see it, later calls retry.
    std::lock_guard<std::mutex> lock(mu_);
    entries_.erase(name);
  }
  promise.set_value(loaded);
  return loaded;
}

}  // namespace bitsweep::worker
