// SweepService and WorkerService over real gRPC on 127.0.0.1 port 0, in-process.
#include "server/sweep_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <thread>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "bitsweep/v1/worker.grpc.pb.h"
#include "server/server.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

using ::testing::HasSubstr;

v1::SweepSpec BatchSweep(const std::string& name, int seeds = 2) {
  v1::SweepSpec spec;
  spec.set_name(name);
  spec.set_seeds(seeds);
  v1::SweepParameter* parameter = spec.add_parameters();
  parameter->set_path("train.batch_size");
  parameter->mutable_values()->add_values()->set_number_value(32);
  parameter->mutable_values()->add_values()->set_number_value(64);
  return spec;
}

class SweepServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "";
    options.db_path = dir_.File("service.db");
    options.clock = &clock_;
    options.max_trials = 1000;
    ASSERT_TRUE(server_.Start(options).ok());
    ASSERT_GT(server_.grpc_port(), 0);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_.grpc_port()),
                                       grpc::InsecureChannelCredentials());
    sweeps_ = v1::SweepService::NewStub(channel);
    workers_ = v1::WorkerService::NewStub(channel);
  }

  int64_t Submit(const v1::SweepSpec& spec) {
    grpc::ClientContext context;
    v1::SubmitSweepRequest request;
    *request.mutable_spec() = spec;
    v1::SubmitSweepResponse response;
    grpc::Status status = sweeps_->SubmitSweep(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.sweep_id();
  }

  void Register(const std::string& worker) {
    grpc::ClientContext context;
    v1::RegisterWorkerRequest request;
    request.set_worker_id(worker);
    request.set_incarnation("inc");
    request.set_slots(1);
    v1::RegisterWorkerResponse response;
    ASSERT_TRUE(workers_->RegisterWorker(&context, request, &response).ok());
    EXPECT_EQ(response.lease_timeout_ms(), 15'000);
    // At most 500 ms: a cancel reaches the running worker within a second.
    EXPECT_EQ(response.heartbeat_interval_ms(), 500);
  }

  v1::LeaseTrialResponse Lease(const std::string& worker, int64_t wait_ms = 0) {
    grpc::ClientContext context;
    v1::LeaseTrialRequest request;
    request.set_worker_id(worker);
    request.set_incarnation("inc");
    request.set_wait_ms(wait_ms);
    v1::LeaseTrialResponse response;
    grpc::Status status = workers_->LeaseTrial(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status Complete(const std::string& worker, const v1::TrialRef& ref, double accuracy) {
    grpc::ClientContext context;
    v1::CompleteTrialRequest request;
    request.set_worker_id(worker);
    *request.mutable_ref() = ref;
    request.mutable_result()->set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
    request.mutable_result()->set_final_test_accuracy(accuracy);
    v1::CompleteTrialResponse response;
    return workers_->CompleteTrial(&context, request, &response);
  }

  testing::TempDir dir_;
  common::FakeClock clock_;
  Server server_;
  std::unique_ptr<v1::SweepService::Stub> sweeps_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

TEST_F(SweepServiceTest, SubmitSweep_StoresExpandedTrials) {
  int64_t id = Submit(BatchSweep("a"));
  grpc::ClientContext context;
  v1::ListTrialsRequest request;
  request.set_sweep_id(id);
  v1::ListTrialsResponse response;
  ASSERT_TRUE(sweeps_->ListTrials(&context, request, &response).ok());
  ASSERT_EQ(response.trials_size(), 4);
  EXPECT_EQ(response.trials(1).seed(), 1u);
  EXPECT_EQ(response.trials(2).config().train().batch_size(), 64);
  EXPECT_EQ(response.trials(2).params(0).value(), "64");
  EXPECT_EQ(response.trials(0).config_hash().size(), 64u);
}

TEST(SweepServiceLimitTest, SubmitSweep_HundredThousandTrials) {
  testing::TempDir dir;
  Server server;
  ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "";
  options.db_path = dir.File("big.db");
  ASSERT_TRUE(server.Start(options).ok());
  auto stub = v1::SweepService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server.grpc_port()), grpc::InsecureChannelCredentials()));
  v1::SubmitSweepRequest request;
  v1::SweepSpec* spec = request.mutable_spec();
  spec->set_name("max size");
  spec->set_seeds(100);
  v1::SweepParameter* parameter = spec->add_parameters();
  parameter->set_path("train.batch_size");
  for (int i = 1; i <= 1000; ++i) parameter->mutable_values()->add_values()->set_number_value(i);
  grpc::ClientContext context;
  v1::SubmitSweepResponse response;
  grpc::Status status = stub->SubmitSweep(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.trial_count(), 100'000);
  auto sweep = server.store()->GetSweep(response.sweep_id());
  ASSERT_TRUE(sweep.ok());
  EXPECT_EQ(sweep->counts().queued(), 100'000);
}

TEST_F(SweepServiceTest, SubmitSweep_InvalidSpecNamesPathAndStoresNothing) {
  v1::SweepSpec spec = BatchSweep("bad");
  spec.mutable_parameters(0)->mutable_values()->add_values()->set_string_value("abc");
  grpc::ClientContext context;
  v1::SubmitSweepRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitSweepResponse response;
  grpc::Status status = sweeps_->SubmitSweep(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "sweep.parameters.train.batch_size: value \"abc\" is not an integer");

  grpc::ClientContext too_many_context;
  *request.mutable_spec() = BatchSweep("huge", /*seeds=*/1000);  // 2000 > max_trials 1000
  status = sweeps_->SubmitSweep(&too_many_context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("exceed the limit of 1000"));

  grpc::ClientContext list_context;
  v1::ListSweepsResponse list;
  ASSERT_TRUE(sweeps_->ListSweeps(&list_context, v1::ListSweepsRequest(), &list).ok());
  EXPECT_EQ(list.sweeps_size(), 0);
}

TEST_F(SweepServiceTest, SubmitSweep_DryRunCountsWithoutStoring) {
  grpc::ClientContext context;
  v1::SubmitSweepRequest request;
  *request.mutable_spec() = BatchSweep("dry", 3);
  request.set_dry_run(true);
  v1::SubmitSweepResponse response;
  ASSERT_TRUE(sweeps_->SubmitSweep(&context, request, &response).ok());
  EXPECT_EQ(response.trial_count(), 6);
  EXPECT_EQ(response.sweep_id(), 0);
  EXPECT_TRUE(server_.store()->ListSweeps()->empty());
}

TEST_F(SweepServiceTest, UnknownIds_AreNotFound) {
  grpc::ClientContext get_context;
  v1::GetSweepRequest get;
  get.set_sweep_id(77);
  v1::Sweep sweep;
  EXPECT_EQ(sweeps_->GetSweep(&get_context, get, &sweep).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext trial_context;
  v1::GetTrialRequest trial;
  trial.set_trial_id(77);
  v1::GetTrialResponse trial_response;
  EXPECT_EQ(sweeps_->GetTrial(&trial_context, trial, &trial_response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext watch_context;
  v1::WatchSweepRequest watch;
  watch.set_sweep_id(77);
  auto reader = sweeps_->WatchSweep(&watch_context, watch);
  v1::SweepEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SweepServiceTest, WorkerFlow_LeaseProgressCompleteAndStaleReportsRefused) {
  int64_t id = Submit(BatchSweep("flow", 1));
  Register("w1");
  v1::LeaseTrialResponse leased = Lease("w1");
  ASSERT_TRUE(leased.has_trial());
  EXPECT_EQ(leased.ref().attempt(), 1);
  EXPECT_EQ(leased.config().train().batch_size(), 32);

  {
    grpc::ClientContext context;
    v1::ReportProgressRequest request;
    request.set_worker_id("w1");
    *request.mutable_ref() = leased.ref();
    for (int i = 1; i <= 3; ++i) {
      v1::CurvePoint* point = request.add_points();
      point->set_iteration(100 * i);
      point->set_test_accuracy(0.3 * i);
    }
    v1::ReportProgressResponse response;
    ASSERT_TRUE(workers_->ReportProgress(&context, request, &response).ok());
    EXPECT_FALSE(response.stop());
  }
  {
    grpc::ClientContext context;
    v1::ReportProgressRequest request;
    request.set_worker_id("w1");
    *request.mutable_ref() = leased.ref();
    request.mutable_ref()->set_attempt(5);
    v1::ReportProgressResponse response;
    EXPECT_EQ(workers_->ReportProgress(&context, request, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  v1::TrialRef missing;
  missing.set_trial_id(999);
  missing.set_attempt(1);
  EXPECT_EQ(Complete("w1", missing, 0.9).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Complete("w1", leased.ref(), 0.9).ok());

  grpc::ClientContext context;
  v1::GetTrialRequest request;
  request.set_trial_id(leased.ref().trial_id());
  request.set_include_curve(true);
  v1::GetTrialResponse trial;
  ASSERT_TRUE(sweeps_->GetTrial(&context, request, &trial).ok());
  EXPECT_EQ(trial.trial().state(), v1::TRIAL_STATE_DONE);
  EXPECT_DOUBLE_EQ(trial.trial().result().final_test_accuracy(), 0.9);
  EXPECT_EQ(trial.curve_size(), 3);

  ASSERT_TRUE(Complete("w1", Lease("w1").ref(), 0.8).ok());
  EXPECT_EQ(server_.store()->GetSweep(id)->state(), v1::SWEEP_STATE_DONE);
  EXPECT_FALSE(Lease("w1").has_trial());

  grpc::ClientContext workers_context;
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(sweeps_->ListWorkers(&workers_context, v1::ListWorkersRequest(), &workers).ok());
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).trials_done(), 2);
  EXPECT_TRUE(workers.workers(0).alive());
}

// Issue 8: a trial that keeps its final weights serves them to `bitsweep predict TRIAL`, and
// the prediction is recorded on a sweep.
TEST_F(SweepServiceTest, KeptCheckpoint_FetchedAfterCompletion_PredictionRecordedOnTheSweep) {
  v1::SweepSpec spec = BatchSweep("keep", 1);
  (*(*spec.mutable_base()->mutable_fields())["train"]
        .mutable_struct_value()
        ->mutable_fields())["keep_final_checkpoint"]
      .set_bool_value(true);
  const int64_t sweep = Submit(spec);
  Register("w1");
  v1::LeaseTrialResponse kept = Lease("w1");
  ASSERT_TRUE(kept.config().train().keep_final_checkpoint());
  {
    grpc::ClientContext context;
    v1::UploadCheckpointRequest request;
    request.set_worker_id("w1");
    *request.mutable_ref() = kept.ref();
    request.set_iteration(300);
    request.set_state("final weights");
    v1::UploadCheckpointResponse response;
    ASSERT_TRUE(workers_->UploadCheckpoint(&context, request, &response).ok());
  }
  ASSERT_TRUE(Complete("w1", kept.ref(), 0.9).ok());
  const auto fetch = [this](int64_t trial_id, v1::GetTrialCheckpointResponse* response) {
    grpc::ClientContext context;
    v1::GetTrialCheckpointRequest request;
    request.set_trial_id(trial_id);
    return sweeps_->GetTrialCheckpoint(&context, request, response);
  };
  v1::GetTrialCheckpointResponse checkpoint;
  ASSERT_TRUE(fetch(kept.ref().trial_id(), &checkpoint).ok());
  EXPECT_EQ(checkpoint.state(), "final weights");
  EXPECT_EQ(checkpoint.iteration(), 300);
  EXPECT_EQ(checkpoint.attempt(), 1);
  EXPECT_EQ(checkpoint.trial_state(), v1::TRIAL_STATE_DONE);

  // The other trial is still queued: nothing to fetch, and the message says why.
  const int64_t queued = kept.ref().trial_id() + 1;
  grpc::Status none = fetch(queued, &checkpoint);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(none.error_message(),
            "trial " + std::to_string(queued) +
                " (queued) kept no checkpoint: set train.keep_final_checkpoint: true in its "
                "sweep to keep a finished trial's final weights");
  EXPECT_EQ(fetch(999, &checkpoint).error_message(), "trial 999 not found");

  const auto record = [this](int64_t sweep_id, int64_t trial_id, const std::string& json,
                             v1::RecordPredictionResponse* response) {
    grpc::ClientContext context;
    v1::RecordPredictionRequest request;
    request.set_sweep_id(sweep_id);
    request.set_source_trial_id(trial_id);
    request.set_source("trial " + std::to_string(trial_id));
    request.set_json(json);
    return sweeps_->RecordPrediction(&context, request, response);
  };
  const std::string prediction =
      R"({"uniform": {"min_bits": 7}, "bounds": [{"bits": 7, "bound": 0.01}]})";
  v1::RecordPredictionResponse recorded;
  ASSERT_TRUE(record(sweep, kept.ref().trial_id(), prediction, &recorded).ok());
  EXPECT_GT(recorded.prediction_id(), 0);
  absl::StatusOr<std::vector<StoredPrediction>> stored = server_.store()->ListPredictions(sweep);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ(stored->at(0).json, prediction);
  EXPECT_EQ(stored->at(0).source_trial_id, kept.ref().trial_id());
  EXPECT_EQ(stored->at(0).source, "trial " + std::to_string(kept.ref().trial_id()));

  // Bad input: each refusal names what is wrong, and nothing is stored.
  grpc::Status bad = record(sweep, 0, "{not json", &recorded);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("not valid JSON"));
  bad = record(sweep, 0, "[1, 2]", &recorded);
  EXPECT_THAT(bad.error_message(), HasSubstr("not a JSON object"));
  bad = record(sweep, 0, R"({"bounds": []})", &recorded);
  EXPECT_THAT(bad.error_message(), HasSubstr("uniform.min_bits"));
  bad = record(sweep, 0, R"({"uniform": {"min_bits": 7}})", &recorded);
  EXPECT_THAT(bad.error_message(), HasSubstr("bounds"));
  bad = record(sweep + 100, 0, prediction, &recorded);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(bad.error_message(), HasSubstr("sweep " + std::to_string(sweep + 100)));
  bad = record(sweep, 999, prediction, &recorded);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(bad.error_message(), HasSubstr("source trial 999"));
  EXPECT_EQ(server_.store()->ListPredictions(sweep)->size(), 1u);
  EXPECT_EQ(server_.store()->ListPredictions(sweep + 100).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SweepServiceTest, SubmitSweep_CellsFinishedByAnotherSweepAreReusedNotRerun) {
  Submit(BatchSweep("one seed", 1));
  Register("w1");
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Complete("w1", Lease("w1").ref(), 0.5 + i).ok());
  // The same grid with a second seed: the first seed's cells are already done.
  grpc::ClientContext context;
  v1::SubmitSweepRequest request;
  *request.mutable_spec() = BatchSweep("two seeds", 2);
  v1::SubmitSweepResponse response;
  ASSERT_TRUE(sweeps_->SubmitSweep(&context, request, &response).ok());
  EXPECT_FALSE(response.existing());
  EXPECT_EQ(response.trial_count(), 4);
  EXPECT_EQ(response.reused(), 2);
  v1::Sweep sweep = *server_.store()->GetSweep(response.sweep_id());
  EXPECT_EQ(sweep.counts().done(), 2);
  EXPECT_EQ(sweep.counts().queued(), 2);
  for (int i = 0; i < 2; ++i) {
    v1::LeaseTrialResponse leased = Lease("w1");
    ASSERT_TRUE(leased.has_trial());
    ASSERT_TRUE(Complete("w1", leased.ref(), 0.7).ok());
  }
  EXPECT_FALSE(Lease("w1").has_trial());
  EXPECT_EQ(server_.store()->GetSweep(response.sweep_id())->state(), v1::SWEEP_STATE_DONE);
}

TEST_F(SweepServiceTest, LeaseTrial_UnregisteredWorkerIsNotFound) {
  grpc::ClientContext context;
  v1::LeaseTrialRequest request;
  request.set_worker_id("ghost");
  request.set_incarnation("x");
  v1::LeaseTrialResponse response;
  EXPECT_EQ(workers_->LeaseTrial(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(SweepServiceTest, LeaseTrial_LongPollWakesWhenASweepArrives) {
  Register("w1");
  v1::LeaseTrialResponse leased;
  std::thread poller([&] { leased = Lease("w1", /*wait_ms=*/10'000); });
  // Whether the poll is already waiting or not, the submit must hand it the trial well
  // before the 10 s wait ends.
  auto start = std::chrono::steady_clock::now();
  Submit(BatchSweep("late", 1));
  poller.join();
  EXPECT_TRUE(leased.has_trial());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(SweepServiceTest, WatchSweep_StreamsChangesAndEndsWhenDone) {
  int64_t id = Submit(BatchSweep("watched", 1));
  Register("w1");
  grpc::ClientContext context;
  v1::WatchSweepRequest request;
  request.set_sweep_id(id);
  auto reader = sweeps_->WatchSweep(&context, request);
  v1::SweepEvent first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(first.sweep().state(), v1::SWEEP_STATE_QUEUED);
  EXPECT_EQ(first.trials_size(), 2);

  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Complete("w1", Lease("w1").ref(), 0.5).ok());

  v1::SweepEvent event;
  v1::SweepEvent last;
  int events = 0;
  while (reader->Read(&event)) {
    ++events;
    EXPECT_LE(event.trials_size(), 2);  // only changed trials after the first event
    last = event;
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_GE(events, 1);
  EXPECT_EQ(last.sweep().state(), v1::SWEEP_STATE_DONE);
  EXPECT_EQ(last.sweep().counts().done(), 2);
}

TEST_F(SweepServiceTest, WatchSweep_EndsAfterCancel) {
  int64_t id = Submit(BatchSweep("cancelled", 1));
  grpc::ClientContext context;
  v1::WatchSweepRequest request;
  request.set_sweep_id(id);
  auto reader = sweeps_->WatchSweep(&context, request);
  v1::SweepEvent event;
  ASSERT_TRUE(reader->Read(&event));
  grpc::ClientContext cancel_context;
  v1::CancelSweepRequest cancel;
  cancel.set_sweep_id(id);
  v1::Sweep cancelled;
  ASSERT_TRUE(sweeps_->CancelSweep(&cancel_context, cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::SWEEP_STATE_CANCELLED);
  v1::SweepEvent last;
  while (reader->Read(&event)) last = event;
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last.sweep().state(), v1::SWEEP_STATE_CANCELLED);
  EXPECT_EQ(last.trials_size(), 2);
}

TEST_F(SweepServiceTest, Shutdown_EndsOpenWatchStreams) {
  int64_t id = Submit(BatchSweep("open", 1));
  grpc::ClientContext context;
  v1::WatchSweepRequest request;
  request.set_sweep_id(id);
  auto reader = sweeps_->WatchSweep(&context, request);
  v1::SweepEvent event;
  ASSERT_TRUE(reader->Read(&event));
  server_.Shutdown();
  while (reader->Read(&event)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
}

TEST(ServerRestartTest, KeepsSweepsAndLetsWorkersReattachRunningTrials) {
  testing::TempDir dir;
  common::FakeClock clock;
  ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "";
  options.db_path = dir.File("restart.db");
  options.clock = &clock;
  v1::TrialRef ref;
  {
    Server first;
    ASSERT_TRUE(first.Start(options).ok());
    v1::SweepSpec spec = BatchSweep("survivor", 1);
    SweepExpander expander;
    auto sweep_id = first.store()->CreateSweep(spec, *expander.Expand(spec), clock.NowUnixMs());
    ASSERT_TRUE(sweep_id.ok());
    ASSERT_TRUE(first.scheduler()->RegisterWorker({"w1", "inc", "h", 1}).ok());
    auto leased = first.scheduler()->LeaseTrial("w1", "inc");
    ASSERT_TRUE(leased.ok() && leased->has_value());
    ref.set_trial_id((*leased)->trial_id);
    ref.set_attempt((*leased)->attempt);
    first.Shutdown();
  }
  clock.AdvanceMs(60'000);  // down for longer than a lease
  Server second;
  ASSERT_TRUE(second.Start(options).ok());
  auto sweeps = second.store()->ListSweeps();
  ASSERT_TRUE(sweeps.ok());
  ASSERT_EQ(sweeps->size(), 1u);
  EXPECT_EQ((*sweeps)[0].counts().running(), 1);
  auto stop = second.scheduler()->Heartbeat("w1", "inc", {ref});
  ASSERT_TRUE(stop.ok()) << stop.status();
  EXPECT_TRUE(stop->empty());
}

}  // namespace
}  // namespace bitsweep::server
