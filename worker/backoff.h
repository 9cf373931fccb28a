// Capped exponential backoff with full jitter, for retrying calls to an unreachable or
// restarting server without hammering it.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

#include "absl/status/status.h"

namespace bitsweep::worker {

class ShutdownNotifier;

struct BackoffOptions {
  std::chrono::milliseconds initial{100};
  std::chrono::milliseconds max{5000};
  double multiplier = 2.0;
};

class Backoff {
 public:
  explicit Backoff(BackoffOptions options = {});
  Backoff(const Backoff&) = delete;
  Backoff& operator=(const Backoff&) = delete;

  // The next delay: uniform in [ceiling/2, ceiling], where the ceiling grows by `multiplier`
  // per call from `initial` up to `max`. The jitter spreads out workers that lost the server
  // at the same moment.
  std::chrono::milliseconds NextDelay();
  // Sleeps for NextDelay(), waking early on shutdown. Returns false when shut down.
  bool Wait(const ShutdownNotifier& shutdown);
  // After a success: the next delay starts from `initial` again.
  void Reset();

 private:
  BackoffOptions options_;
  double ceiling_ms_;
  std::mt19937_64 rng_;
};

// Whether a failed call is worth retrying unchanged: the server was unreachable, restarting,
// overloaded or too slow. Everything else is an answer (e.g. NOT_FOUND, FAILED_PRECONDITION).
bool IsTransient(const absl::Status& status);

}  // namespace bitsweep::worker
