// A scriptable in-memory Coordinator for worker tests: records every request, hands out queued
// assignments, and answers with scripted errors or stop requests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "worker/coordinator.h"

namespace bitsweep::worker::testing {

class FakeCoordinator final : public Coordinator {
 public:
  // Scripted answers, consumed in order; an empty queue means "succeed".
  std::deque<absl::Status> register_errors;
  std::deque<absl::Status> lease_errors;
  std::deque<absl::Status> heartbeat_errors;
  std::deque<absl::Status> progress_errors;
  std::deque<absl::Status> complete_errors;
  std::deque<absl::Status> checkpoint_errors;
  std::deque<absl::Status> release_errors;
  // ReportProgress answers stop=true once this many reports have succeeded (0 = never).
  int stop_after_reports = 0;
  // ReportProgress answers prune=true (and stop) once this many reports have succeeded.
  int prune_after_reports = 0;
  // RegisterWorker answers these refs in `stop`.
  std::vector<v1::TrialRef> register_stop;
  // Heartbeat answers list these refs in `stop`.
  std::vector<v1::TrialRef> heartbeat_stop;
  int64_t heartbeat_interval_ms = 20;
  // UploadCheckpoint answers prune=true (and stop) once this many have succeeded (0 = never).
  int prune_after_checkpoints = 0;
  // Answers CompleteTrial's lease_next_incarnation with `next` (a queued assignment, never
  // waiting) like a current server; false: ignores it like an older one.
  bool lease_with_completions = false;
  // Called after every CompleteTrial answer is made (without the lock).
  std::function<void()> after_complete;

  // Queues a lease; `checkpoint` (with its iteration) makes it a resumed attempt.
  void AddAssignment(int64_t trial_id, int32_t attempt, const v1::TrialConfig& config,
                     int32_t checkpoint_every = 0, const std::string& checkpoint = "",
                     int64_t checkpoint_iteration = 0) {
    std::lock_guard<std::mutex> lock(mu);
    v1::LeaseTrialResponse response;
    response.set_has_trial(true);
    response.mutable_ref()->set_trial_id(trial_id);
    response.mutable_ref()->set_attempt(attempt);
    *response.mutable_config() = config;
    response.set_checkpoint_every(checkpoint_every);
    response.set_checkpoint(checkpoint);
    response.set_checkpoint_iteration(checkpoint_iteration);
    assignments.push_back(response);
    cv.notify_all();
  }

  absl::StatusOr<v1::RegisterWorkerResponse> RegisterWorker(
      const v1::RegisterWorkerRequest& request) override {
    std::lock_guard<std::mutex> lock(mu);
    registers.push_back(request);
    cv.notify_all();
    if (absl::Status s = Pop(register_errors); !s.ok()) return s;
    v1::RegisterWorkerResponse response;
    response.set_lease_timeout_ms(1000);
    response.set_heartbeat_interval_ms(heartbeat_interval_ms);
    for (const v1::TrialRef& ref : register_stop) *response.add_stop() = ref;
    return response;
  }

  absl::StatusOr<v1::LeaseTrialResponse> LeaseTrial(const v1::LeaseTrialRequest& request) override {
    std::unique_lock<std::mutex> lock(mu);
    leases.push_back(request);
    cv.notify_all();
    if (cancelled) return absl::CancelledError("cancelled");
    if (absl::Status s = Pop(lease_errors); !s.ok()) return s;
    // Long poll like the server: wait for an assignment, a cancel or the timeout.
    cv.wait_for(lock, std::chrono::milliseconds(request.wait_ms()),
                [this] { return !assignments.empty() || cancelled; });
    if (cancelled) return absl::CancelledError("cancelled");
    if (assignments.empty()) return v1::LeaseTrialResponse();
    v1::LeaseTrialResponse response = assignments.front();
    assignments.pop_front();
    return response;
  }

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) override {
    std::lock_guard<std::mutex> lock(mu);
    heartbeats.push_back(request);
    cv.notify_all();
    if (absl::Status s = Pop(heartbeat_errors); !s.ok()) return s;
    v1::HeartbeatResponse response;
    for (const v1::TrialRef& ref : heartbeat_stop) *response.add_stop() = ref;
    return response;
  }

  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const v1::ReportProgressRequest& request) override {
    std::lock_guard<std::mutex> lock(mu);
    progress_requests.push_back(request);
    cv.notify_all();
    if (absl::Status s = Pop(progress_errors); !s.ok()) return s;
    for (const v1::CurvePoint& p : request.points()) delivered_points.push_back(p);
    v1::ReportProgressResponse response;
    ++successful_reports;
    response.set_stop(stop_after_reports > 0 && successful_reports >= stop_after_reports);
    if (prune_after_reports > 0 && successful_reports >= prune_after_reports) {
      response.set_prune(true);
      response.set_stop(true);
    }
    return response;
  }

  absl::StatusOr<v1::UploadCheckpointResponse> UploadCheckpoint(
      const v1::UploadCheckpointRequest& request) override {
    std::lock_guard<std::mutex> lock(mu);
    checkpoint_attempts.push_back(request);
    cv.notify_all();
    if (absl::Status s = Pop(checkpoint_errors); !s.ok()) return s;
    checkpoints.push_back(request);
    for (const v1::CurvePoint& p : request.points()) delivered_points.push_back(p);
    // What the server relies on: every point up to the checkpoint was delivered with or
    // before it.
    checkpoint_points_delivered.push_back(delivered_points.size());
    v1::UploadCheckpointResponse response;
    if (prune_after_checkpoints > 0 &&
        static_cast<int>(checkpoints.size()) >= prune_after_checkpoints) {
      response.set_prune(true);
      response.set_stop(true);
    }
    return response;
  }

  absl::StatusOr<v1::ReleaseTrialResponse> ReleaseTrial(
      const v1::ReleaseTrialRequest& request) override {
    std::lock_guard<std::mutex> lock(mu);
    release_attempts.push_back(request);
    cv.notify_all();
    if (absl::Status s = Pop(release_errors); !s.ok()) return s;
    releases.push_back(request);
    return v1::ReleaseTrialResponse();
  }

  absl::StatusOr<v1::CompleteTrialResponse> CompleteTrial(
      const v1::CompleteTrialRequest& request) override {
    absl::StatusOr<v1::CompleteTrialResponse> response = CompleteLocked(request);
    if (after_complete) after_complete();
    return response;
  }
  absl::StatusOr<v1::CompleteTrialResponse> CompleteLocked(
      const v1::CompleteTrialRequest& request) {
    std::lock_guard<std::mutex> lock(mu);
    complete_attempts.push_back(request);
    cv.notify_all();
    if (absl::Status s = Pop(complete_errors); !s.ok()) return s;
    completions.push_back(request);
    for (const v1::CurvePoint& p : request.points()) delivered_points.push_back(p);
    v1::CompleteTrialResponse response;
    if (lease_with_completions && !request.lease_next_incarnation().empty()) {
      if (assignments.empty()) {
        response.mutable_next()->set_has_trial(false);
      } else {
        *response.mutable_next() = assignments.front();
        assignments.pop_front();
        ++chained_leases;
      }
    }
    cv.notify_all();
    return response;
  }

  void CancelAll() override {
    std::lock_guard<std::mutex> lock(mu);
    cancelled = true;
    cv.notify_all();
  }

  // Waits until `predicate` (called under the lock) holds; false after `timeout`.
  bool WaitUntil(const std::function<bool()>& predicate,
                 std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, predicate);
  }

  std::mutex mu;
  std::condition_variable cv;
  std::deque<v1::LeaseTrialResponse> assignments;
  std::vector<v1::RegisterWorkerRequest> registers;
  std::vector<v1::LeaseTrialRequest> leases;
  std::vector<v1::HeartbeatRequest> heartbeats;
  std::vector<v1::ReportProgressRequest> progress_requests;
  std::vector<v1::CurvePoint> delivered_points;
  std::vector<v1::CompleteTrialRequest> complete_attempts;
  std::vector<v1::CompleteTrialRequest> completions;
  std::vector<v1::UploadCheckpointRequest> checkpoint_attempts;
  std::vector<v1::UploadCheckpointRequest> checkpoints;
  // delivered_points.size() when each accepted checkpoint arrived.
  std::vector<size_t> checkpoint_points_delivered;
  std::vector<v1::ReleaseTrialRequest> release_attempts;
  std::vector<v1::ReleaseTrialRequest> releases;
  int successful_reports = 0;
  // Assignments handed out with a completion's `next`.
  int chained_leases = 0;
  bool cancelled = false;

 private:
  static absl::Status Pop(std::deque<absl::Status>& queue) {
    if (queue.empty()) return absl::OkStatus();
    absl::Status s = queue.front();
    queue.pop_front();
    return s;
  }
};

}  // namespace bitsweep::worker::testing
