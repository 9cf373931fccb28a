#include "worker/dataset_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace bitsweep::worker {
namespace {

TEST(DatasetCacheTest, ConcurrentFirstRequests_LoadTheDatasetOnce) {
  std::atomic<int> loads{0};
  DatasetCache cache("/nonexistent",
                     [&](const std::string& name, const std::filesystem::path& dir) {
                       ++loads;
                       // Widen the window in which the other threads arrive while the load is in
                       // progress.
                       std::this_thread::sleep_for(std::chrono::milliseconds(50));
                       return trainer::LoadDataset(name, dir);
                     });

  constexpr int kThreads = 8;
  std::vector<DatasetPtr> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<DatasetPtr> dataset = cache.Get("synthetic");
      ASSERT_TRUE(dataset.ok()) << dataset.status();
      got[i] = *dataset;
    });
  }
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(loads.load(), 1);
  ASSERT_NE(got[0], nullptr);
  EXPECT_GT(got[0]->train_size(), 0);
  for (const DatasetPtr& d : got) EXPECT_EQ(d.get(), got[0].get());
  // Later requests are served from the cache too.
  ASSERT_TRUE(cache.Get("synthetic").ok());
  EXPECT_EQ(loads.load(), 1);
}

TEST(DatasetCacheTest, DifferentNames_LoadSeparately) {
  std::atomic<int> loads{0};
  DatasetCache cache("/nonexistent", [&](const std::string& name, const std::filesystem::path&) {
    ++loads;
    auto dataset = std::make_shared<trainer::Dataset>();
    dataset->name = name;
    return absl::StatusOr<DatasetPtr>(dataset);
  });
  ASSERT_EQ((*cache.Get("a"))->name, "a");
  ASSERT_EQ((*cache.Get("b"))->name, "b");
  ASSERT_EQ((*cache.Get("a"))->name, "a");
  EXPECT_EQ(loads.load(), 2);
}

TEST(DatasetCacheTest, FailedLoad_IsNotRememberedSoALaterRequestRetries) {
  int loads = 0;
  DatasetCache cache(
      "/nonexistent",
      [&](const std::string&, const std::filesystem::path&) -> absl::StatusOr<DatasetPtr> {
        if (++loads == 1) return absl::NotFoundError("train-images-idx3-ubyte");
        return std::make_shared<trainer::Dataset>();
      });
  absl::StatusOr<DatasetPtr> first = cache.Get("mnist");
  EXPECT_EQ(first.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(cache.Get("mnist").ok());
  EXPECT_EQ(loads, 2);
}

TEST(DatasetCacheTest, UnknownName_ReturnsTheLoaderError) {
  DatasetCache cache("/nonexistent");
  absl::StatusOr<DatasetPtr> dataset = cache.Get("no-such-dataset");
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DatasetCacheTest, MissingFiles_ReturnNotFound) {
  DatasetCache cache("/nonexistent");
  EXPECT_EQ(cache.Get("mnist").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace bitsweep::worker
