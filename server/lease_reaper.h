// LeaseReaper: a background thread that runs the scheduler's expiry pass every interval, so a
// worker that vanishes does not leave its trials running forever even when no other worker
// asks for work (leasing also expires leases).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/scheduler.h"

namespace bitsweep::server {

class LeaseReaper {
 public:
  // Starts the thread. `scheduler` must outlive the reaper.
  LeaseReaper(Scheduler* scheduler, std::chrono::milliseconds interval);
  // Stops and joins the thread.
  ~LeaseReaper();
  LeaseReaper(const LeaseReaper&) = delete;
  LeaseReaper& operator=(const LeaseReaper&) = delete;

  // Stops and joins the thread; idempotent.
  void Stop();

 private:
  void Run();

  Scheduler* const scheduler_;
  const std::chrono::milliseconds interval_;
  std::mutex mu_;  // guards stop_
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace bitsweep::server
