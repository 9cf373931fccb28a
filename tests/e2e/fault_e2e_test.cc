// Fault tests over real processes (issue 4): kill -9 of a worker in the middle of a real
// trainer trial, kill -9 of the server in the middle of a sweep, stale reports, duplicated
// submits, cancellation of a running trial, SIGTERM on a worker. Every wait is bounded and
// polls a condition through gRPC; nothing sleeps for a fixed time.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/cluster.h"
#include "worker/dataset_cache.h"
#include "worker/trainer/trainer.h"

namespace bitsweep::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kWait = seconds(45);

int64_t NowUnixMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One real trainer trial: tiny CNN on the synthetic set, stochastic rounding (so the RNG
// state must survive the checkpoint too), `iterations` iterations, a point every 100.
constexpr int kRealEvalEvery = 100;
v1::SweepSpec RealTrainerSweep(const std::string& name, int iterations) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.set_method("grid");
  spec.set_seeds(1);
  *spec.mutable_base() =
      Map({{"dataset", Map({{"name", Str("synthetic")},
                            {"train_limit", Num(2000)},
                            {"test_limit", Num(300)}})},
           {"model", Map({{"conv", List({Num(4)})},
                          {"kernel", Num(3)},
                          {"pool", Num(2)},
                          {"dense", List({Num(16)})},
                          {"activation", Str("relu")},
                          {"init", Str("he")}})},
           {"train", Map({{"iterations", Num(iterations)},
                          {"batch_size", Num(16)},
                          {"optimizer", Str("momentum")},
                          {"momentum", Num(0.9)},
                          {"lr", Num(0.02)},
                          {"eval_every", Num(kRealEvalEvery)}})},
           {"precision",
            Map({{"default", Map({{"format", Str("mask:14")}, {"rounding", Str("stochastic")}})},
                 {"sites", List({Str("weights"), Str("activations"), Str("errors")})}})}})
          .struct_value();
  return spec;
}

// The columns the server stores for a point.
std::string StoredPoint(const v1::CurvePoint& p) {
  char buffer[256];
  std::snprintf(buffer, sizeof(buffer), "%lld %.17g %.17g %.17g %.17g %.17g %.17g",
                static_cast<long long>(p.iteration()), p.epoch(), p.train_loss(),
                p.train_accuracy(), p.test_loss(), p.test_accuracy(), p.learning_rate());
  return buffer;
}

v1::TrialResult WithoutWallClock(v1::TrialResult result) {
  result.clear_train_seconds();
  result.clear_images_per_second();
  return result;
}

class FaultE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Cluster>> cluster = Cluster::Create();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }
  void TearDown() override {
    if (HasFailure()) cluster_->DumpLogs();
    cluster_.reset();
  }

  // The only trial of a one-trial sweep.
  int64_t OnlyTrial(int64_t sweep_id) {
    absl::StatusOr<std::vector<v1::Trial>> trials = cluster_->ListTrials(sweep_id);
    EXPECT_TRUE(trials.ok()) << trials.status();
    if (!trials.ok() || trials->size() != 1) {
      ADD_FAILURE() << "expected one trial";
      return 0;
    }
    return (*trials)[0].id();
  }

  // Waits until the trial is running with at least `points` points stored.
  bool WaitRunningWithPoints(int64_t trial_id, int points) {
    return Cluster::WaitUntil(
        [&] {
          absl::StatusOr<v1::GetTrialResponse> t = cluster_->GetTrial(trial_id, true);
          return t.ok() && t->trial().state() == v1::TRIAL_STATE_RUNNING &&
                 t->curve_size() >= points;
        },
        kWait);
  }

  bool WaitTrialState(int64_t trial_id, v1::TrialState state,
                      std::chrono::milliseconds timeout = kWait) {
    return Cluster::WaitUntil(
        [&] {
          absl::StatusOr<v1::GetTrialResponse> t = cluster_->GetTrial(trial_id);
          return t.ok() && t->trial().state() == state;
        },
        timeout);
  }

  std::string WorkerLog(const ChildProcess* worker) { return ReadFile(worker->stderr_path()); }

  std::unique_ptr<Cluster> cluster_;
};

// (a) kill -9 of a worker in the middle of a real trainer trial.
TEST_F(FaultE2ETest, WorkerKilledMidTrial_ResumesOnTheOtherWorkerFromItsCheckpointIdentically) {
  constexpr int kIterations = 2000;
  ASSERT_TRUE(
      cluster_->StartServer({"--lease-timeout-ms", "1500", "--checkpoint-every", "2"}).ok());
  ChildProcess* first = cluster_->StartWorker("fault-a");
  ASSERT_NE(first, nullptr);
  absl::StatusOr<v1::SubmitSweepResponse> submitted =
      cluster_->Submit(RealTrainerSweep("kill-worker", kIterations));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const int64_t trial_id = OnlyTrial(submitted->sweep_id());
  ASSERT_GT(trial_id, 0);

  // Five points stored: the checkpoint after the fourth has been uploaded (the worker uploads
  // it before it reports the fifth).
  ASSERT_TRUE(WaitRunningWithPoints(trial_id, 5)) << "the trial never got 5 points while running";
  kill(first->pid(), SIGKILL);
  ASSERT_TRUE(first->Wait(seconds(10)).has_value());
  ChildProcess* second = cluster_->StartWorker("fault-b");
  ASSERT_NE(second, nullptr);

  ASSERT_TRUE(WaitTrialState(trial_id, v1::TRIAL_STATE_DONE)) << "the trial did not finish";
  absl::StatusOr<v1::GetTrialResponse> done = cluster_->GetTrial(trial_id, true);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->trial().attempt(), 2);
  EXPECT_EQ(done->trial().worker_id(), "fault-b");
  EXPECT_NE(WorkerLog(second).find("resuming after iteration"), std::string::npos)
      << "the second attempt did not resume from a checkpoint";

  // The uninterrupted run of the same config and seed, in this process.
  worker::DatasetCache datasets(cluster_->dir());
  absl::StatusOr<worker::DatasetPtr> dataset = datasets.Get("synthetic");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  std::vector<v1::CurvePoint> expected_curve;
  absl::StatusOr<v1::TrialResult> expected = trainer::Train(
      done->trial().config(), **dataset,
      [&](const v1::CurvePoint& p) {
        expected_curve.push_back(p);
        return true;
      },
      trainer::TrainOptions{});
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(WithoutWallClock(done->trial().result()).SerializeAsString(),
            WithoutWallClock(*expected).SerializeAsString())
      << "resumed: " << done->trial().result().DebugString()
      << "\nuninterrupted: " << expected->DebugString();

  ASSERT_EQ(done->curve_size(), kIterations / kRealEvalEvery) << "duplicated or lost points";
  ASSERT_EQ(expected_curve.size(), static_cast<size_t>(done->curve_size()));
  for (int i = 0; i < done->curve_size(); ++i) {
    EXPECT_EQ(StoredPoint(done->curve(i)), StoredPoint(expected_curve[i])) << "point " << i;
  }
}

// (b) kill -9 of the server in the middle of a sweep of simulated trials.
TEST_F(FaultE2ETest, ServerKilledMidSweep_EveryTrialCompletesOnceWithExactCurvesAndIntactDb) {
  constexpr int kTrials = 40;
  constexpr int kPoints = 10;
  constexpr int kEvalEvery = 10;
  const std::vector<std::string> flags = {"--lease-timeout-ms", "3000", "--checkpoint-every", "3"};
  ASSERT_TRUE(cluster_->StartServer(flags).ok());
  std::vector<ChildProcess*> workers;
  for (const char* id : {"fault-a", "fault-b"}) workers.push_back(cluster_->StartWorker(id, 4));
  absl::StatusOr<v1::SubmitSweepResponse> submitted =
      cluster_->Submit(SimulatedSweep("kill-server", kTrials, kPoints, 40, kEvalEvery));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ASSERT_EQ(submitted->trial_count(), kTrials);
  const int64_t sweep_id = submitted->sweep_id();

  ASSERT_TRUE(Cluster::WaitUntil(
      [&] {
        absl::StatusOr<v1::Sweep> sweep = cluster_->GetSweep(sweep_id);
        return sweep.ok() && sweep->counts().done() >= 8 && sweep->counts().running() >= 4;
      },
      kWait))
      << "the sweep never got going";
  cluster_->KillServer();
  ASSERT_TRUE(cluster_->StartServer(flags, cluster_->server_address()).ok());

  ASSERT_TRUE(cluster_->WaitSweepFinished(sweep_id, kWait)) << "the sweep did not finish";
  absl::StatusOr<std::vector<v1::Trial>> trials = cluster_->ListTrials(sweep_id);
  ASSERT_TRUE(trials.ok()) << trials.status();
  ASSERT_EQ(trials->size(), static_cast<size_t>(kTrials));
  for (const v1::Trial& listed : *trials) {
    absl::StatusOr<v1::GetTrialResponse> trial = cluster_->GetTrial(listed.id(), true);
    ASSERT_TRUE(trial.ok()) << trial.status();
    EXPECT_EQ(trial->trial().state(), v1::TRIAL_STATE_DONE) << "trial " << listed.id();
    EXPECT_EQ(trial->trial().result().iterations(), kPoints * kEvalEvery);
    ASSERT_EQ(trial->curve_size(), kPoints) << "trial " << listed.id();
    for (int i = 0; i < kPoints; ++i) {
      EXPECT_EQ(trial->curve(i).iteration(), (i + 1) * kEvalEvery) << "trial " << listed.id();
    }
  }
  for (ChildProcess* worker : workers) EXPECT_FALSE(worker->Exited()) << "a worker died";

  EXPECT_EQ(cluster_->StopServer(), 0) << "the server did not shut down cleanly";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(cluster_->db_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  const auto query = [db](const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3_stmt* statement = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    while (statement != nullptr && sqlite3_step(statement) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(statement, 0);
      rows.push_back(text ? reinterpret_cast<const char*>(text) : "");
    }
    sqlite3_finalize(statement);
    return rows;
  };
  EXPECT_EQ(query("PRAGMA integrity_check"), std::vector<std::string>{"ok"});
  EXPECT_EQ(query("SELECT count(*) FROM trials WHERE state = 3 AND result IS NOT NULL AND "
                  "sweep_id = " +
                  std::to_string(sweep_id)),
            std::vector<std::string>{std::to_string(kTrials)});
  EXPECT_EQ(query("SELECT count(*) FROM curve_points"),
            std::vector<std::string>{std::to_string(kTrials * kPoints)});
  EXPECT_EQ(query("SELECT count(*) FROM (SELECT trial_id FROM curve_points GROUP BY trial_id "
                  "HAVING count(*) != " +
                  std::to_string(kPoints) + ")"),
            std::vector<std::string>{"0"});
  sqlite3_close(db);
}

// (c) A report of an old attempt is refused once the trial was leased again.
TEST_F(FaultE2ETest, StaleAttempt_ReportsOfTheOldLeaseAreRefused) {
  ASSERT_TRUE(cluster_->StartServer({"--lease-timeout-ms", "500"}).ok());
  v1::WorkerService::Stub& service = cluster_->workers();
  for (const char* id : {"rogue-a", "rogue-b"}) {
    v1::RegisterWorkerRequest request;
    request.set_worker_id(id);
    request.set_incarnation(std::string(id) + "-1");
    request.set_slots(1);
    v1::RegisterWorkerResponse response;
    ASSERT_TRUE(service.RegisterWorker(Cluster::Context().get(), request, &response).ok());
  }
  absl::StatusOr<v1::SubmitSweepResponse> submitted =
      cluster_->Submit(SimulatedSweep("stale", 1, 10, 0));
  ASSERT_TRUE(submitted.ok()) << submitted.status();

  const auto lease = [&](const std::string& worker_id) {
    v1::LeaseTrialRequest request;
    request.set_worker_id(worker_id);
    request.set_incarnation(worker_id + "-1");
    request.set_wait_ms(200);
    v1::LeaseTrialResponse response;
    const grpc::Status status = service.LeaseTrial(Cluster::Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  };
  const v1::LeaseTrialResponse first = lease("rogue-a");
  ASSERT_TRUE(first.has_trial());
  ASSERT_EQ(first.ref().attempt(), 1);

  v1::ReportProgressRequest progress;
  progress.set_worker_id("rogue-a");
  *progress.mutable_ref() = first.ref();
  progress.add_points()->set_iteration(10);
  v1::ReportProgressResponse progress_response;
  ASSERT_TRUE(service.ReportProgress(Cluster::Context().get(), progress, &progress_response).ok());

  // rogue-a never heartbeats: its lease runs out and rogue-b gets attempt 2.
  v1::LeaseTrialResponse second;
  ASSERT_TRUE(Cluster::WaitUntil(
      [&] {
        second = lease("rogue-b");
        return second.has_trial();
      },
      kWait));
  EXPECT_EQ(second.ref().trial_id(), first.ref().trial_id());
  EXPECT_EQ(second.ref().attempt(), 2);

  progress.clear_points();
  progress.add_points()->set_iteration(20);
  grpc::Status status =
      service.ReportProgress(Cluster::Context().get(), progress, &progress_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();

  v1::UploadCheckpointRequest checkpoint;
  checkpoint.set_worker_id("rogue-a");
  *checkpoint.mutable_ref() = first.ref();
  checkpoint.set_iteration(10);
  checkpoint.set_state("1");
  v1::UploadCheckpointResponse checkpoint_response;
  status = service.UploadCheckpoint(Cluster::Context().get(), checkpoint, &checkpoint_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();

  v1::CompleteTrialRequest complete;
  complete.set_worker_id("rogue-a");
  *complete.mutable_ref() = first.ref();
  complete.mutable_result()->set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  complete.mutable_result()->set_final_test_accuracy(0.123);
  v1::CompleteTrialResponse complete_response;
  status = service.CompleteTrial(Cluster::Context().get(), complete, &complete_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();

  // The current attempt is accepted.
  complete.set_worker_id("rogue-b");
  *complete.mutable_ref() = second.ref();
  complete.mutable_result()->set_final_test_accuracy(0.456);
  status = service.CompleteTrial(Cluster::Context().get(), complete, &complete_response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  absl::StatusOr<v1::GetTrialResponse> trial = cluster_->GetTrial(first.ref().trial_id(), true);
  ASSERT_TRUE(trial.ok());
  EXPECT_EQ(trial->trial().state(), v1::TRIAL_STATE_DONE);
  EXPECT_EQ(trial->trial().attempt(), 2);
  EXPECT_EQ(trial->trial().worker_id(), "rogue-b");
  EXPECT_DOUBLE_EQ(trial->trial().result().final_test_accuracy(), 0.456);
  for (const v1::CurvePoint& p : trial->curve()) EXPECT_NE(p.iteration(), 20) << "stale point";
}

// (c) Submitting the same sweep again creates nothing new.
TEST_F(FaultE2ETest, DuplicateSubmit_CreatesNoNewTrials) {
  ASSERT_TRUE(cluster_->StartServer().ok());
  const v1::SweepSpec spec = SimulatedSweep("duplicate", 6, 3, 0);
  absl::StatusOr<v1::SubmitSweepResponse> first = cluster_->Submit(spec);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<v1::SubmitSweepResponse> again = cluster_->Submit(spec);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->existing());
  EXPECT_EQ(again->sweep_id(), first->sweep_id());
  v1::ListSweepsResponse sweeps;
  ASSERT_TRUE(cluster_->sweeps()
                  .ListSweeps(Cluster::Context().get(), v1::ListSweepsRequest(), &sweeps)
                  .ok());
  EXPECT_EQ(sweeps.sweeps_size(), 1);
  absl::StatusOr<std::vector<v1::Trial>> trials = cluster_->ListTrials(first->sweep_id());
  ASSERT_TRUE(trials.ok());
  EXPECT_EQ(trials->size(), 6u);
}

// (c) Cancelling a running trial stops it on its worker and frees the slot: the next queued
// trial starts there. The latency is printed, not asserted (timings belong to bench/).
TEST_F(FaultE2ETest, CancelTrial_ReachesTheRunningWorkerAndFreesItsSlot) {
  ASSERT_TRUE(cluster_->StartServer().ok());
  ASSERT_NE(cluster_->StartWorker("fault-a", 1), nullptr);
  // 1000 points of 50 ms: nowhere near finished when cancelled.
  absl::StatusOr<v1::SubmitSweepResponse> long_sweep =
      cluster_->Submit(SimulatedSweep("long", 1, 1000, 50));
  ASSERT_TRUE(long_sweep.ok()) << long_sweep.status();
  const int64_t long_trial = OnlyTrial(long_sweep->sweep_id());
  ASSERT_TRUE(WaitRunningWithPoints(long_trial, 1));
  absl::StatusOr<v1::SubmitSweepResponse> next_sweep =
      cluster_->Submit(SimulatedSweep("next", 1, 1, 0));
  ASSERT_TRUE(next_sweep.ok()) << next_sweep.status();
  const int64_t next_trial = OnlyTrial(next_sweep->sweep_id());
  absl::StatusOr<v1::GetTrialResponse> queued = cluster_->GetTrial(next_trial);
  ASSERT_TRUE(queued.ok());
  ASSERT_EQ(queued->trial().state(), v1::TRIAL_STATE_QUEUED) << "the only slot is busy";

  v1::CancelTrialRequest cancel;
  cancel.set_trial_id(long_trial);
  v1::Trial cancelled;
  const int64_t cancelled_at = NowUnixMs();
  const grpc::Status status =
      cluster_->sweeps().CancelTrial(Cluster::Context().get(), cancel, &cancelled);
  ASSERT_TRUE(status.ok()) << status.error_message();

  ASSERT_TRUE(WaitTrialState(next_trial, v1::TRIAL_STATE_DONE, seconds(20)))
      << "the cancelled trial's slot was not freed";
  absl::StatusOr<v1::GetTrialResponse> next = cluster_->GetTrial(next_trial);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->trial().worker_id(), "fault-a");
  std::cerr << "[ measure ] cancel -> next trial running on the freed slot: "
            << next->trial().started_unix_ms() - cancelled_at << " ms\n";
  absl::StatusOr<v1::GetTrialResponse> long_done = cluster_->GetTrial(long_trial, true);
  ASSERT_TRUE(long_done.ok());
  EXPECT_EQ(long_done->trial().state(), v1::TRIAL_STATE_CANCELLED);
  EXPECT_LT(long_done->curve_size(), 1000);
}

// (d) SIGTERM on a worker: its trial is released at once (the lease is far longer than the
// test's wait) and finishes on another worker from its checkpoint.
TEST_F(FaultE2ETest, WorkerSigterm_ReleasesItsTrialWhichFinishesElsewhereFromItsCheckpoint) {
  constexpr int kPoints = 40;
  ASSERT_TRUE(
      cluster_->StartServer({"--lease-timeout-ms", "120000", "--checkpoint-every", "2"}).ok());
  ChildProcess* first = cluster_->StartWorker("fault-a");
  ASSERT_NE(first, nullptr);
  absl::StatusOr<v1::SubmitSweepResponse> submitted =
      cluster_->Submit(SimulatedSweep("sigterm", 1, kPoints, 50, 10));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const int64_t trial_id = OnlyTrial(submitted->sweep_id());
  ASSERT_TRUE(WaitRunningWithPoints(trial_id, 5));

  kill(first->pid(), SIGTERM);
  const std::optional<int> code = first->Wait(seconds(15));
  ASSERT_TRUE(code.has_value()) << "the worker did not exit on SIGTERM";
  EXPECT_EQ(*code, 0);
  EXPECT_NE(WorkerLog(first).find("released"), std::string::npos);

  ChildProcess* second = cluster_->StartWorker("fault-b");
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(WaitTrialState(trial_id, v1::TRIAL_STATE_DONE, seconds(30)))
      << "the released trial did not finish elsewhere before its lease would have expired";
  absl::StatusOr<v1::GetTrialResponse> done = cluster_->GetTrial(trial_id, true);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->trial().worker_id(), "fault-b");
  EXPECT_EQ(done->trial().attempt(), 2);
  EXPECT_NE(WorkerLog(second).find("resuming after iteration"), std::string::npos);
  ASSERT_EQ(done->curve_size(), kPoints);
  for (int i = 0; i < kPoints; ++i) EXPECT_EQ(done->curve(i).iteration(), (i + 1) * 10);
}

}  // namespace
}  // namespace bitsweep::e2e
