// A version counter with a condition variable: writers bump it after every committed change,
// waiters (WatchSweep streams, LeaseTrial long polls) block until it moves, a timeout passes or
// the server shuts down. Waiting is bounded so callers can notice client cancellation.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace bitsweep::server {

class ChangeNotifier {
 public:
  ChangeNotifier() = default;
  ChangeNotifier(const ChangeNotifier&) = delete;
  ChangeNotifier& operator=(const ChangeNotifier&) = delete;

  // The current version; starts at 0.
  uint64_t version() const;

  // Bumps the version and wakes every waiter.
  void Notify();

  // Blocks until the version differs from `seen`, `timeout` passes or Shutdown() was called.
  // Returns the current version.
  uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const;

  // Wakes every waiter for good: later waits return at once.
  void Shutdown();
  bool is_shut_down() const;

 private:
  mutable std::mutex mu_;  // guards version_ and shut_down_
  mutable std::condition_variable cv_;
  uint64_t version_ = 0;
  bool shut_down_ = false;
};

}  // namespace bitsweep::server
