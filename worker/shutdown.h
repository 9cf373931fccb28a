// A one-way "the worker is shutting down" flag whose waits wake up as soon as it is raised, so
// that backoff sleeps and heartbeat intervals never delay a SIGTERM.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace bitsweep::worker {

class ShutdownNotifier {
 public:
  ShutdownNotifier() = default;
  ShutdownNotifier(const ShutdownNotifier&) = delete;
  ShutdownNotifier& operator=(const ShutdownNotifier&) = delete;

  // Raises the flag and wakes every waiter. Idempotent; safe from any thread (not from a
  // signal handler).
  void Notify();
  bool IsShutdown() const;
  // Waits up to `timeout`. Returns true when shutdown was raised (before or during the wait).
  bool WaitFor(std::chrono::milliseconds timeout) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool shutdown_ = false;  // Guarded by mu_.
};

}  // namespace bitsweep::worker
