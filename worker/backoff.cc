#include "worker/backoff.h"

#include <algorithm>

#include "worker/shutdown.h"

namespace bitsweep::worker {

Backoff::Backoff(BackoffOptions options)
    : options_(options),
      ceiling_ms_(static_cast<double>(options.initial.count())),
      rng_(std::random_device{}()) {}

std::chrono::milliseconds Backoff::NextDelay() {
  const double ceiling = ceiling_ms_;
  ceiling_ms_ =
      std::min(ceiling_ms_ * options_.multiplier, static_cast<double>(options_.max.count()));
  std::uniform_real_distribution<double> jitter(ceiling / 2, ceiling);
  return std::chrono::milliseconds(static_cast<int64_t>(jitter(rng_)));
}

bool Backoff::Wait(const ShutdownNotifier& shutdown) { return !shutdown.WaitFor(NextDelay()); }

void Backoff::Reset() { ceiling_ms_ = static_cast<double>(options_.initial.count()); }

bool IsTransient(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kUnknown:  // e.g. a connection reset mid-call
      return true;
    default:
      return false;
  }
}

}  // namespace bitsweep::worker
