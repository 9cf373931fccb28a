#include "worker/shutdown.h"

namespace bitsweep::worker {

void ShutdownNotifier::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

bool ShutdownNotifier::IsShutdown() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shutdown_;
}

bool ShutdownNotifier::WaitFor(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return shutdown_; });
}

}  // namespace bitsweep::worker
