#include "server/change_notifier.h"

namespace bitsweep::server {

uint64_t ChangeNotifier::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

void ChangeNotifier::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++version_;
  }
  cv_.notify_all();
}

uint64_t ChangeNotifier::WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return version_ != seen || shut_down_; });
  return version_;
}

void ChangeNotifier::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shut_down_ = true;
  }
  cv_.notify_all();
}

bool ChangeNotifier::is_shut_down() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shut_down_;
}

}  // namespace bitsweep::server
