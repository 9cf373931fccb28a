#include "worker/worker_agent.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace bitsweep::worker {
namespace {

constexpr std::chrono::milliseconds kDefaultHeartbeatInterval{2000};
constexpr std::chrono::milliseconds kMinHeartbeatInterval{50};

}  // namespace

std::string NewIncarnation() {
  std::random_device device;
  const uint64_t value = (uint64_t{device()} << 32) ^ device();
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(value));
  return buffer;
}

WorkerAgent::WorkerAgent(WorkerOptions options, Coordinator* coordinator, TrialRunner* runner,
                         ShutdownNotifier* shutdown)
    : options_(std::move(options)),
      coordinator_(coordinator),
      runner_(runner),
      shutdown_(shutdown) {
  if (options_.incarnation.empty()) options_.incarnation = NewIncarnation();
  options_.slots = std::max(options_.slots, 1);
}

absl::Status WorkerAgent::Run() {
  if (started_.exchange(true))
    return absl::FailedPreconditionError("WorkerAgent::Run called twice");
  if (absl::Status registered = Register(); !registered.ok()) return registered;

  std::thread heartbeat([this] { HeartbeatLoop(); });
  std::vector<std::thread> slots;
  for (int slot = 0; slot < options_.slots; ++slot) {
    slots.emplace_back([this, slot] { SlotLoop(slot); });
  }
  for (std::thread& t : slots) t.join();
  // All slots are done (shutdown or max_trials): nothing left to keep alive.
  shutdown_->Notify();
  heartbeat.join();
  spdlog::info("worker {} stopped after {} trials", options_.worker_id, trials_run_.load());
  return absl::OkStatus();
}

void WorkerAgent::Shutdown() {
  shutdown_->Notify();
  running_.StopAll();
  coordinator_->CancelAll();
}

absl::Status WorkerAgent::Register() {
  v1::RegisterWorkerRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_incarnation(options_.incarnation);
  request.set_host(options_.host);
  request.set_slots(options_.slots);
  request.set_threads_per_slot(options_.threads_per_slot);
  Backoff backoff(options_.backoff);
  bool logged = false;
  while (true) {
    if (shutdown_->IsShutdown()) return absl::CancelledError("shut down before registering");
    // Listed afresh on every try: trials may have finished while the server was away.
    request.clear_running();
    for (v1::TrialRef& ref : running_.List()) *request.add_running() = std::move(ref);
    absl::StatusOr<v1::RegisterWorkerResponse> response = coordinator_->RegisterWorker(request);
    if (response.ok()) {
      for (const v1::TrialRef& ref : response->stop()) {
        if (running_.Stop(ref)) {
          spdlog::info("trial {}/{}: not re-attached by the server, stopping", ref.trial_id(),
                       ref.attempt());
        }
      }
      std::chrono::milliseconds interval(response->heartbeat_interval_ms());
      if (interval.count() <= 0) interval = kDefaultHeartbeatInterval;
      interval = std::max(interval, kMinHeartbeatInterval);
      {
        std::lock_guard<std::mutex> lock(register_mu_);
        ++generation_;
        heartbeat_interval_ = interval;
      }
      spdlog::info(
          "registered as {} (incarnation {}, {} slots x {} threads, {} running): lease {} ms, "
          "heartbeat {} ms",
          options_.worker_id, options_.incarnation, options_.slots, options_.threads_per_slot,
          request.running_size(), response->lease_timeout_ms(), interval.count());
      return absl::OkStatus();
    }
    if (shutdown_->IsShutdown()) return absl::CancelledError("shut down before registering");
    if (!logged) {
      // Once per outage: the server may simply not be up yet.
      spdlog::warn("cannot register with the server, retrying: {}", response.status().ToString());
      logged = true;
    } else {
      spdlog::debug("register failed again: {}", response.status().ToString());
    }
    if (!backoff.Wait(*shutdown_)) return absl::CancelledError("shut down before registering");
  }
}

absl::Status WorkerAgent::Reregister(int64_t seen_generation) {
  std::lock_guard<std::mutex> lock(reregister_mu_);
  if (generation() != seen_generation) return absl::OkStatus();
  spdlog::info("server does not know this worker (restarted?): registering again");
  return Register();
}

int64_t WorkerAgent::generation() const {
  std::lock_guard<std::mutex> lock(register_mu_);
  return generation_;
}

std::chrono::milliseconds WorkerAgent::heartbeat_interval() const {
  std::lock_guard<std::mutex> lock(register_mu_);
  return heartbeat_interval_;
}

void WorkerAgent::ReleaseForShutdown(int slot, const v1::TrialRef& ref) {
  v1::ReleaseTrialRequest release;
  release.set_worker_id(options_.worker_id);
  *release.mutable_ref() = ref;
  release.set_reason("worker shutting down");
  if (absl::Status released = coordinator_->ReleaseTrial(release).status(); !released.ok()) {
    spdlog::warn("slot {}: could not release trial {}/{}: {}", slot, ref.trial_id(), ref.attempt(),
                 released.ToString());
  }
}

bool WorkerAgent::TakeTicket() {
  if (options_.max_trials <= 0) return true;
  if (tickets_.fetch_add(1) < options_.max_trials) return true;
  tickets_.fetch_sub(1);
  return false;
}

void WorkerAgent::ReturnTicket() {
  if (options_.max_trials > 0) tickets_.fetch_sub(1);
}

void WorkerAgent::SlotLoop(int slot) {
  Backoff backoff(options_.backoff);
  bool logged = false;
  // The trial leased with the last completion (its ticket taken), if any.
  std::optional<v1::LeaseTrialResponse> chained;
  while (!shutdown_->IsShutdown()) {
    absl::StatusOr<v1::LeaseTrialResponse> lease;
    int64_t seen_generation = 0;
    if (chained) {
      lease = *std::move(chained);
      chained.reset();
      if (shutdown_->IsShutdown()) ReturnTicket();
    } else {
      if (!TakeTicket()) break;
      seen_generation = generation();
      v1::LeaseTrialRequest request;
      request.set_worker_id(options_.worker_id);
      request.set_incarnation(options_.incarnation);
      request.set_wait_ms(options_.lease_wait.count());
      lease = coordinator_->LeaseTrial(request);
      if (!lease.ok() || !lease->has_trial() || shutdown_->IsShutdown()) ReturnTicket();
    }
    if (!lease.ok()) {
      if (shutdown_->IsShutdown()) break;
      if (lease.status().code() == absl::StatusCode::kNotFound) {
        if (!Reregister(seen_generation).ok()) break;
        continue;
      }
      if (!logged) {
        spdlog::warn("slot {}: cannot lease, retrying with backoff: {}", slot,
                     lease.status().ToString());
        logged = true;
      }
      if (!backoff.Wait(*shutdown_)) break;
      continue;
    }
    backoff.Reset();
    if (logged) {
      spdlog::info("slot {}: server reachable again", slot);
      logged = false;
    }
    // An empty answer after the long poll: ask again straight away (the server did the waiting).
    if (!lease->has_trial()) continue;
    // Leased just as shutdown began: give it back at once (else the lease would expire first).
    if (shutdown_->IsShutdown()) {
      ReleaseForShutdown(slot, lease->ref());
      break;
    }

    std::shared_ptr<StopFlag> stop = running_.Add(lease->ref());
    // The next trial comes with this one's completion when the server leases that way; a
    // ticket is taken only as the completion goes out, so that no other slot is kept from
    // leasing meanwhile.
    NextLease next;
    next.incarnation = options_.incarnation;
    next.ask = [this] { return !shutdown_->IsShutdown() && TakeTicket(); };
    runner_->Run(*lease, *stop, &next);
    running_.Remove(lease->ref());
    trials_run_.fetch_add(1);
    if (next.asked) {
      if (next.lease && next.lease->has_trial()) {
        chained = std::move(next.lease);
      } else {
        ReturnTicket();
      }
    }
  }
  if (chained) {
    // Shutdown came with a chained lease in hand: give it back rather than let it expire.
    ReleaseForShutdown(slot, chained->ref());
    ReturnTicket();
  }
}

void WorkerAgent::HeartbeatLoop() {
  Backoff backoff(options_.backoff);
  std::chrono::milliseconds wait = heartbeat_interval();
  bool logged = false;
  while (!shutdown_->WaitFor(wait)) {
    const int64_t seen_generation = generation();
    v1::HeartbeatRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_incarnation(options_.incarnation);
    for (v1::TrialRef& ref : running_.List()) *request.add_running() = std::move(ref);
    absl::StatusOr<v1::HeartbeatResponse> response = coordinator_->Heartbeat(request);
    wait = heartbeat_interval();
    if (response.ok()) {
      backoff.Reset();
      logged = false;
      for (const v1::TrialRef& ref : response->stop()) {
        if (running_.Stop(ref)) {
          spdlog::info("trial {}/{}: server asked to stop", ref.trial_id(), ref.attempt());
        }
      }
      continue;
    }
    if (shutdown_->IsShutdown()) break;
    if (response.status().code() == absl::StatusCode::kNotFound) {
      // Registering again re-attaches the running trials: the next heartbeat lists them.
      if (!Reregister(seen_generation).ok()) break;
      wait = std::chrono::milliseconds(0);
      continue;
    }
    if (!logged) {
      spdlog::warn("heartbeat failed, retrying: {}", response.status().ToString());
      logged = true;
    }
    // Retry sooner than the interval, so that a short outage does not cost the leases.
    wait = std::min(wait, backoff.NextDelay());
  }
}

}  // namespace bitsweep::worker
