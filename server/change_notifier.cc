#include "server/change_notifier.h"

#include <iterator>

namespace bitsweep::server {

uint64_t ChangeNotifier::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

void ChangeNotifier::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++version_;
    PickFirstLocked();
  }
  cv_.notify_all();
}

void ChangeNotifier::PickFirstLocked() {
  if (line_.empty()) return;
  Turn* first = line_.front();
  line_.pop_front();
  first->picked = true;
  // Notified under mu_: the waiter cannot return (and destroy its Turn) before this call ends.
  first->cv.notify_one();
}

uint64_t ChangeNotifier::WaitForTurn(uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (version_ != seen || shut_down_) return version_;
  Turn turn;
  line_.push_back(&turn);
  auto position = std::prev(line_.end());
  turn.cv.wait_for(lock, timeout, [&] { return turn.picked || shut_down_; });
  if (!turn.picked) line_.erase(position);
  return version_;
}

int ChangeNotifier::waiting_turns() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(line_.size());
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
    for (Turn* turn : line_) turn->cv.notify_one();
  }
  cv_.notify_all();
}

bool ChangeNotifier::is_shut_down() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shut_down_;
}

}  // namespace bitsweep::server
