// The trials this worker is running right now, each with a stop flag: the heartbeat thread
// lists them to the server and raises the flags of those the server says to stop; the trial's
// progress callback reads its flag.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "bitsweep/v1/worker.pb.h"

namespace bitsweep::worker {

// Shared between the slot running the trial and whoever may stop it. A one-way flag that
// trials poll every iteration and that simulated trials wait on, so a stop wakes them at once.
class StopFlag {
 public:
  // Raises the flag and wakes WaitFor. Thread-safe, idempotent.
  void Raise();
  bool raised() const { return raised_.load(std::memory_order_acquire); }
  // Waits up to `timeout`; returns true when the flag was raised (before or during the wait).
  bool WaitFor(std::chrono::nanoseconds timeout) const;

 private:
  std::atomic<bool> raised_{false};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
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
