#include "server/lease_reaper.h"

#include <spdlog/spdlog.h>

namespace bitsweep::server {

LeaseReaper::LeaseReaper(Scheduler* scheduler, std::chrono::milliseconds interval)
    : scheduler_(scheduler), interval_(interval), thread_([this] { Run(); }) {}

LeaseReaper::~LeaseReaper() { Stop(); }

void LeaseReaper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaseReaper::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, interval_, [this] { return stop_; })) {
    lock.unlock();
    absl::StatusOr<int> expired = scheduler_->ExpireLeases();
    if (!expired.ok()) {
      spdlog::error("lease expiry pass failed: {}", expired.status().ToString());
    } else if (*expired > 0) {
      spdlog::warn("{} trial lease(s) expired: requeued or failed", *expired);
    }
    lock.lock();
  }
}

}  // namespace bitsweep::server
