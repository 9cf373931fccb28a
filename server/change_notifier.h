// A version counter with a condition variable: writers bump it after every committed change,
// waiters (WatchSweep streams, LeaseTrial long polls) block until it moves, a timeout passes or
// the server shuts down. Waiting is bounded so callers can notice client cancellation.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>

namespace bitsweep::server {

class ChangeNotifier {
 public:
  ChangeNotifier() = default;
  ChangeNotifier(const ChangeNotifier&) = delete;
  ChangeNotifier& operator=(const ChangeNotifier&) = delete;

  // The current version; starts at 0.
  uint64_t version() const;

  // Bumps the version, wakes every WaitForChange waiter and the first WaitForTurn waiter.
  void Notify();

  // Blocks until the version differs from `seen`, `timeout` passes or Shutdown() was called.
  // Returns the current version.
  uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const;

  // For waiters that compete for the same work (LeaseTrial long polls): they line up, and a
  // change wakes only the first in line, so one queued trial costs one lease attempt rather
  // than one per idle slot. Returns at once when the version already differs from `seen`
  // (a change came before the wait began); otherwise blocks until a Notify()
  // picks this waiter, `timeout` passes or Shutdown(). Returns the current version. A picked
  // waiter that takes work commits a change itself, which picks the next: the work is handed
  // down the line one waiter at a time.
  uint64_t WaitForTurn(uint64_t seen, std::chrono::milliseconds timeout);
  // WaitForTurn waiters in line (not yet picked): for tests.
  int waiting_turns() const;

  // Wakes every waiter for good: later waits return at once.
  void Shutdown();
  bool is_shut_down() const;

 private:
  mutable std::mutex mu_;  // guards version_, line_ and shut_down_
  mutable std::condition_variable cv_;
  // One per WaitForTurn waiter, in arrival order; `picked` is set when it leaves the line.
  struct Turn {
    std::condition_variable cv;
    bool picked = false;
  };
  // Picks the first waiter in line, if any. Caller holds mu_.
  void PickFirstLocked();
  std::list<Turn*> line_;  // guarded by mu_
  uint64_t version_ = 0;
  bool shut_down_ = false;
};

}  // namespace bitsweep::server
