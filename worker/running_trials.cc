#include "worker/running_trials.h"

namespace bitsweep::worker {

void StopFlag::Raise() {
  {
    // Under the mutex, so that a waiter between its check and its wait cannot miss it.
    std::lock_guard<std::mutex> lock(mu_);
    raised_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
}

bool StopFlag::WaitFor(std::chrono::nanoseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return raised(); });
}

std::shared_ptr<StopFlag> RunningTrials::Add(const v1::TrialRef& ref) {
  auto flag = std::make_shared<StopFlag>();
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_all_) flag->Raise();
  trials_[{ref.trial_id(), ref.attempt()}] = flag;
  return flag;
}

void RunningTrials::Remove(const v1::TrialRef& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  trials_.erase({ref.trial_id(), ref.attempt()});
}

std::vector<v1::TrialRef> RunningTrials::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::TrialRef> refs;
  refs.reserve(trials_.size());
  for (const auto& [key, flag] : trials_) {
    v1::TrialRef ref;
    ref.set_trial_id(key.first);
    ref.set_attempt(key.second);
    refs.push_back(std::move(ref));
  }
  return refs;
}

bool RunningTrials::Stop(const v1::TrialRef& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = trials_.find({ref.trial_id(), ref.attempt()});
  if (it == trials_.end()) return false;
  it->second->Raise();
  return true;
}

void RunningTrials::StopAll() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_all_ = true;
  for (auto& [key, flag] : trials_) flag->Raise();
}

size_t RunningTrials::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return trials_.size();
}

}  // namespace bitsweep::worker
