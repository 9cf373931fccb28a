// The trials this worker is running right now, each with a stop flag: the heartbeat thread
// lists them to the server and raises the flags of those the server says to stop; the trial's
// progress callback reads its flag.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "bitsweep/v1/worker.pb.h"

namespace bitsweep::worker {

// Shared between the slot running the trial and whoever may stop it.
struct StopFlag {
  std::atomic<bool> stop{false};
};

class RunningTrials {
 public:
  RunningTrials() = default;
  RunningTrials(const RunningTrials&) = delete;
  RunningTrials& operator=(const RunningTrials&) = delete;

  // Registers a trial; its flag is already raised when StopAll() happened before.
  std::shared_ptr<StopFlag> Add(const v1::TrialRef& ref);
  void Remove(const v1::TrialRef& ref);
  std::vector<v1::TrialRef> List() const;
  // Raises the flag of `ref` if it is running (same trial and attempt). Returns whether it was.
  bool Stop(const v1::TrialRef& ref);
  // Raises every flag, including those of trials added later (shutdown).
  void StopAll();
  size_t size() const;

 private:
  using Key = std::pair<int64_t, int32_t>;  // (trial_id, attempt)
  mutable std::mutex mu_;
  std::map<Key, std::shared_ptr<StopFlag>> trials_;  // Guarded by mu_.
  bool stop_all_ = false;                            // Guarded by mu_.
};

}  // namespace bitsweep::worker
