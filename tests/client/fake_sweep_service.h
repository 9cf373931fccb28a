// FakeSweepService: an in-process SweepService for client tests, serving canned sweeps,
// trials, workers and watch events and recording the submissions it receives.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bitsweep/v1/sweep.grpc.pb.h"

namespace bitsweep::client {

// Thread-safe: gRPC calls the handlers on its own threads.
class FakeSweepService final : public v1::SweepService::Service {
 public:
  grpc::Status SubmitSweep(grpc::ServerContext*, const v1::SubmitSweepRequest* request,
                           v1::SubmitSweepResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    submits_.push_back(*request);
    if (!submit_error_.ok()) return submit_error_;
    response->set_sweep_id(7);
    response->set_trial_count(36);
    if (existing_sweep_) {
      response->set_existing(true);
      if (request->resume()) {
        response->set_requeued(requeue_on_resume_);
        response->set_reused(36 - requeue_on_resume_);
      }
    }
    return grpc::Status::OK;
  }

  // Pause/resume flip the stored sweep's state; an ended sweep cannot be paused.
  grpc::Status PauseSweep(grpc::ServerContext*, const v1::PauseSweepRequest* request,
                          v1::Sweep* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sweeps_.find(request->sweep_id());
    if (it == sweeps_.end()) return NotFound(request->sweep_id());
    if (it->second.state() == v1::SWEEP_STATE_DONE ||
        it->second.state() == v1::SWEEP_STATE_CANCELLED) {
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          "sweep " + std::to_string(request->sweep_id()) + " has ended: there is nothing to pause");
    }
    it->second.set_state(v1::SWEEP_STATE_PAUSED);
    *response = it->second;
    return grpc::Status::OK;
  }

  grpc::Status ResumeSweep(grpc::ServerContext*, const v1::ResumeSweepRequest* request,
                           v1::Sweep* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sweeps_.find(request->sweep_id());
    if (it == sweeps_.end()) return NotFound(request->sweep_id());
    if (it->second.state() == v1::SWEEP_STATE_PAUSED) {
      it->second.set_state(v1::SWEEP_STATE_RUNNING);
    }
    *response = it->second;
    return grpc::Status::OK;
  }

  // Requeues the matching trials of the stored trial list (all belong to the asked sweep).
  grpc::Status RerunSweep(grpc::ServerContext*, const v1::RerunSweepRequest* request,
                          v1::RerunSweepResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    reruns_.push_back(*request);
    if (!sweeps_.contains(request->sweep_id())) return NotFound(request->sweep_id());
    int requeued = 0;
    for (v1::Trial& trial : trials_) {
      if ((request->failed() && trial.state() == v1::TRIAL_STATE_FAILED) ||
          (request->cancelled() && trial.state() == v1::TRIAL_STATE_CANCELLED)) {
        trial.set_state(v1::TRIAL_STATE_QUEUED);
        ++requeued;
      }
    }
    response->set_requeued(requeued);
    return grpc::Status::OK;
  }

  grpc::Status CancelTrial(grpc::ServerContext*, const v1::CancelTrialRequest* request,
                           v1::Trial* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (v1::Trial& trial : trials_) {
      if (trial.id() != request->trial_id()) continue;
      if (trial.state() == v1::TRIAL_STATE_QUEUED || trial.state() == v1::TRIAL_STATE_RUNNING) {
        trial.set_state(v1::TRIAL_STATE_CANCELLED);
      }
      *response = trial;
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "trial " + std::to_string(request->trial_id()) + " not found");
  }

  grpc::Status GetSweep(grpc::ServerContext*, const v1::GetSweepRequest* request,
                        v1::Sweep* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sweeps_.find(request->sweep_id());
    if (it == sweeps_.end()) return NotFound(request->sweep_id());
    *response = it->second;
    return grpc::Status::OK;
  }

  grpc::Status ListSweeps(grpc::ServerContext*, const v1::ListSweepsRequest*,
                          v1::ListSweepsResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, sweep] : sweeps_) *response->add_sweeps() = sweep;
    return grpc::Status::OK;
  }

  grpc::Status CancelSweep(grpc::ServerContext*, const v1::CancelSweepRequest* request,
                           v1::Sweep* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sweeps_.find(request->sweep_id());
    if (it == sweeps_.end()) return NotFound(request->sweep_id());
    v1::Sweep& sweep = it->second;
    sweep.set_state(v1::SWEEP_STATE_CANCELLED);
    sweep.mutable_counts()->set_cancelled(sweep.counts().queued());
    sweep.mutable_counts()->set_queued(0);
    *response = sweep;
    return grpc::Status::OK;
  }

  grpc::Status WatchSweep(grpc::ServerContext*, const v1::WatchSweepRequest* request,
                          grpc::ServerWriter<v1::SweepEvent>* writer) override {
    std::vector<v1::SweepEvent> events;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!sweeps_.contains(request->sweep_id())) return NotFound(request->sweep_id());
      events = events_;
    }
    for (const v1::SweepEvent& event : events) {
      // Another sweep's (events without a sweep id go to every watcher).
      if (event.sweep().id() != 0 && event.sweep().id() != request->sweep_id()) continue;
      if (!writer->Write(event)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status ListTrials(grpc::ServerContext*, const v1::ListTrialsRequest* request,
                          v1::ListTrialsResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sweeps_.contains(request->sweep_id())) return NotFound(request->sweep_id());
    for (const v1::Trial& trial : trials_) *response->add_trials() = trial;
    return grpc::Status::OK;
  }

  grpc::Status GetTrial(grpc::ServerContext*, const v1::GetTrialRequest* request,
                        v1::GetTrialResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const v1::Trial& trial : trials_) {
      if (trial.id() != request->trial_id()) continue;
      *response->mutable_trial() = trial;
      if (request->include_curve()) {
        for (const v1::CurvePoint& point : curves_[trial.id()]) *response->add_curve() = point;
      }
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "trial " + std::to_string(request->trial_id()) + " not found");
  }

  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const v1::WorkerInfo& worker : workers_) *response->add_workers() = worker;
    return grpc::Status::OK;
  }

  grpc::Status GetTrialCheckpoint(grpc::ServerContext*,
                                  const v1::GetTrialCheckpointRequest* request,
                                  v1::GetTrialCheckpointResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = checkpoints_.find(request->trial_id());
    if (it == checkpoints_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "trial " + std::to_string(request->trial_id()) +
                              " (done) kept no checkpoint: set train.keep_final_checkpoint: true "
                              "in its sweep to keep a finished trial's final weights");
    }
    *response = it->second;
    return grpc::Status::OK;
  }

  // Records every valid call; the server's JSON validation is the store's (tested there).
  grpc::Status RecordPrediction(grpc::ServerContext*, const v1::RecordPredictionRequest* request,
                                v1::RecordPredictionResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sweeps_.contains(request->sweep_id()) && request->sweep_id() != 7) {
      return NotFound(request->sweep_id());  // 7: the sweep SubmitSweep creates
    }
    predictions_.push_back(*request);
    response->set_prediction_id(static_cast<int64_t>(predictions_.size()));
    return grpc::Status::OK;
  }

  void AddCheckpoint(const v1::GetTrialCheckpointResponse& checkpoint) {
    std::lock_guard<std::mutex> lock(mu_);
    checkpoints_[checkpoint.trial_id()] = checkpoint;
  }
  std::vector<v1::RecordPredictionRequest> predictions() const {
    std::lock_guard<std::mutex> lock(mu_);
    return predictions_;
  }

  void AddSweep(const v1::Sweep& sweep) {
    std::lock_guard<std::mutex> lock(mu_);
    sweeps_[sweep.id()] = sweep;
  }
  void AddTrial(const v1::Trial& trial) {
    std::lock_guard<std::mutex> lock(mu_);
    trials_.push_back(trial);
  }
  void AddCurvePoint(int64_t trial_id, const v1::CurvePoint& point) {
    std::lock_guard<std::mutex> lock(mu_);
    curves_[trial_id].push_back(point);
  }
  void AddWorker(const v1::WorkerInfo& worker) {
    std::lock_guard<std::mutex> lock(mu_);
    workers_.push_back(worker);
  }
  void AddEvent(const v1::SweepEvent& event) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(event);
  }
  void FailSubmitWith(grpc::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    submit_error_ = std::move(status);
  }
  std::vector<v1::SubmitSweepRequest> submits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return submits_;
  }
  // Every submission matches an existing sweep; with resume, `requeued` of its 36 trials are
  // requeued and the rest reused.
  void SubmitsMatchExistingSweep(int requeued) {
    std::lock_guard<std::mutex> lock(mu_);
    existing_sweep_ = true;
    requeue_on_resume_ = requeued;
  }
  std::vector<v1::RerunSweepRequest> reruns() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reruns_;
  }
  std::vector<v1::Trial> trials() const {
    std::lock_guard<std::mutex> lock(mu_);
    return trials_;
  }

 private:
  static grpc::Status NotFound(int64_t id) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "sweep " + std::to_string(id) + " not found");
  }

  mutable std::mutex mu_;
  std::map<int64_t, v1::Sweep> sweeps_;
  std::vector<v1::Trial> trials_;
  std::map<int64_t, std::vector<v1::CurvePoint>> curves_;
  std::vector<v1::WorkerInfo> workers_;
  std::vector<v1::SweepEvent> events_;
  grpc::Status submit_error_;
  std::vector<v1::SubmitSweepRequest> submits_;
  bool existing_sweep_ = false;
  int requeue_on_resume_ = 0;
  std::vector<v1::RerunSweepRequest> reruns_;
  std::map<int64_t, v1::GetTrialCheckpointResponse> checkpoints_;
  std::vector<v1::RecordPredictionRequest> predictions_;
};

// Serves `service` on 127.0.0.1 at a port the OS picks and sets `address` to "127.0.0.1:PORT".
// Returns null when the server could not start.
inline std::unique_ptr<grpc::Server> ServeOnLoopback(grpc::Service* service, std::string* address) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port <= 0) return nullptr;
  *address = "127.0.0.1:" + std::to_string(port);
  return server;
}

}  // namespace bitsweep::client
