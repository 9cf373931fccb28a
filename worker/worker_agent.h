// The worker process's logic: registers with the server, runs one thread per slot that
// long-polls LeaseTrial and runs what it gets, and a heartbeat thread that keeps the leases
// alive (at the server's heartbeat interval) and stops the trials the server lists. Survives
// server restarts: calls are retried with capped backoff, and a NOT_FOUND for the worker means
// "register again", listing the trials still running so the server re-attaches them (those it
// answers in `stop` are stopped).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "worker/backoff.h"
#include "worker/coordinator.h"
#include "worker/running_trials.h"
#include "worker/shutdown.h"
#include "worker/trial_runner.h"

namespace bitsweep::worker {

struct WorkerOptions {
  std::string worker_id;
  // New per process start, so the server can tell a restarted worker; empty = random.
  std::string incarnation;
  std::string host;
  int slots = 1;
  // Trainer threads per slot (reported to the server; the runner trains with them).
  int threads_per_slot = 1;
  // Stop after this many trials have been run (0 = unlimited).
  int64_t max_trials = 0;
  // How long each LeaseTrial long poll may wait on the server.
  std::chrono::milliseconds lease_wait{5000};
  BackoffOptions backoff;
};

// A random 64-bit hex string.
std::string NewIncarnation();

class WorkerAgent {
 public:
  // `coordinator` and `runner` are borrowed; `shutdown` is the notifier the runner also watches.
  WorkerAgent(WorkerOptions options, Coordinator* coordinator, TrialRunner* runner,
              ShutdownNotifier* shutdown);
  WorkerAgent(const WorkerAgent&) = delete;
  WorkerAgent& operator=(const WorkerAgent&) = delete;

  // Registers and serves until Shutdown() or until max_trials trials have run; blocks.
  // Errors: Cancelled (shut down before the first registration succeeded);
  // FailedPrecondition (Run called twice).
  absl::Status Run();

  // Stops leasing, stops the running trials within an iteration (the runner then releases
  // them with their latest checkpoint) and wakes every wait. Returns at once; Run() returns
  // when the slots have finished. Thread-safe, idempotent.
  void Shutdown();

  const std::string& incarnation() const { return options_.incarnation; }
  int64_t trials_run() const { return trials_run_.load(); }

 private:
  // Registers, retrying with backoff, listing the running trials and stopping those the
  // server does not re-attach. Errors: Cancelled (shutdown).
  absl::Status Register();
  // Registers again after a call answered NOT_FOUND, unless another thread already did since
  // `seen_generation`. Errors: Cancelled (shutdown).
  absl::Status Reregister(int64_t seen_generation);
  int64_t generation() const;
  std::chrono::milliseconds heartbeat_interval() const;

  void SlotLoop(int slot);
  void HeartbeatLoop();
  // max_trials accounting: a slot takes a ticket before leasing and gives it back when the
  // lease came back empty, so at most max_trials trials are ever started.
  bool TakeTicket();
  void ReturnTicket();
  // Gives back a trial leased as shutdown began (else its lease would have to expire first).
  void ReleaseForShutdown(int slot, const v1::TrialRef& ref);

  WorkerOptions options_;
  Coordinator* const coordinator_;
  TrialRunner* const runner_;
  ShutdownNotifier* const shutdown_;
  RunningTrials running_;
  std::atomic<bool> started_{false};
  std::atomic<int64_t> tickets_{0};
  std::atomic<int64_t> trials_run_{0};

  // Held across a re-registration so that threads hitting NOT_FOUND together register once.
  std::mutex reregister_mu_;
  // Registration state, shared by all slots and the heartbeat thread.
  mutable std::mutex register_mu_;
  int64_t generation_ = 0;                              // Guarded by register_mu_.
  std::chrono::milliseconds heartbeat_interval_{2000};  // Guarded by register_mu_.
};

}  // namespace bitsweep::worker
