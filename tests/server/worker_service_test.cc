#include "server/worker_service.h"

#include <grpcpp/server_context.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

// Polls `condition` up to 10 s; a bounded wait for a state, never a timing assertion.
template <typename Condition>
bool Await(Condition condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

class WorkerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = TrialStore::Open(dir_.File("worker_service.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    scheduler_ = std::make_unique<Scheduler>(store_.get(), &clock_,
                                             SchedulerOptions{.lease_timeout_ms = 60'000});
    service_ = std::make_unique<WorkerService>(store_.get(), scheduler_.get(), nullptr);
    ASSERT_TRUE(scheduler_->RegisterWorker({"w1", "inc1", "host1", 8}).ok());
  }

  int64_t AddSweep(const std::string& name, int trials) {
    v1::SweepSpec spec;
    spec.set_name(name);
    std::vector<PlannedTrial> planned(trials);
    for (int i = 0; i < trials; ++i) planned[i].config.set_seed(static_cast<uint64_t>(i));
    auto id = store_->CreateSweep(spec, planned, clock_.NowUnixMs());
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  // Starts `n` long polls of worker w1 (60 s each); each adds one to `leased` when it got a
  // trial and to `returned` when it came back. The caller joins them.
  std::vector<std::thread> StartLongPolls(int n, std::atomic<int>& leased,
                                          std::atomic<int>& returned) {
    std::vector<std::thread> polls;
    for (int i = 0; i < n; ++i) {
      polls.emplace_back([this, &leased, &returned] {
        grpc::ServerContext context;
        v1::LeaseTrialRequest request;
        request.set_worker_id("w1");
        request.set_incarnation("inc1");
        request.set_wait_ms(60'000);
        v1::LeaseTrialResponse response;
        grpc::Status status = service_->LeaseTrial(&context, &request, &response);
        if (status.ok() && response.has_trial()) ++leased;
        ++returned;
      });
    }
    return polls;
  }

  testing::TempDir dir_;
  common::FakeClock clock_;
  std::unique_ptr<TrialStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<WorkerService> service_;
};

TEST_F(WorkerServiceTest, NewTrial_WakesOneLongPollNotEveryIdleSlot) {
  constexpr int kWaiters = 6;
  std::atomic<int> leased{0};
  std::atomic<int> returned{0};
  std::vector<std::thread> polls = StartLongPolls(kWaiters, leased, returned);
  // Every poll tried once (nothing queued) and lined up.
  ASSERT_TRUE(Await([&] { return store_->changes().waiting_turns() == kWaiters; }));
  EXPECT_EQ(scheduler_->lease_attempts(), kWaiters);

  AddSweep("one", 1);
  // One waiter leases the trial; its lease commit wakes the next, which finds nothing queued
  // with a read and lines up again. Nobody else was woken.
  ASSERT_TRUE(Await(
      [&] { return leased.load() == 1 && store_->changes().waiting_turns() == kWaiters - 1; }));
  EXPECT_EQ(scheduler_->lease_attempts(), kWaiters + 1);

  store_->changes().Shutdown();
  for (std::thread& poll : polls) poll.join();
  EXPECT_EQ(returned.load(), kWaiters);
  EXPECT_EQ(leased.load(), 1);
  EXPECT_EQ(scheduler_->lease_attempts(), kWaiters + 1);
}

TEST_F(WorkerServiceTest, ThreeNewTrials_AreHandedDownTheLineOneLeaseEach) {
  constexpr int kWaiters = 5;
  std::atomic<int> leased{0};
  std::atomic<int> returned{0};
  std::vector<std::thread> polls = StartLongPolls(kWaiters, leased, returned);
  ASSERT_TRUE(Await([&] { return store_->changes().waiting_turns() == kWaiters; }));
  AddSweep("three", 3);
  ASSERT_TRUE(Await(
      [&] { return leased.load() == 3 && store_->changes().waiting_turns() == kWaiters - 3; }));
  // Three leases, no failed attempt: each lease commit woke exactly the next waiter, and the
  // one woken after the last lease found the queue empty with a read.
  EXPECT_EQ(scheduler_->lease_attempts(), kWaiters + 3);
  store_->changes().Shutdown();
  for (std::thread& poll : polls) poll.join();
}

// Leases one trial for w1 through the service.
v1::LeaseTrialResponse LeaseOne(WorkerService& service) {
  grpc::ServerContext context;
  v1::LeaseTrialRequest request;
  request.set_worker_id("w1");
  request.set_incarnation("inc1");
  v1::LeaseTrialResponse response;
  EXPECT_TRUE(service.LeaseTrial(&context, &request, &response).ok());
  EXPECT_TRUE(response.has_trial());
  return response;
}

v1::CompleteTrialRequest Completion(const v1::LeaseTrialResponse& lease) {
  v1::CompleteTrialRequest request;
  request.set_worker_id("w1");
  *request.mutable_ref() = lease.ref();
  request.mutable_result()->set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
  v1::CurvePoint* point = request.add_points();
  point->set_iteration(10);
  point->set_test_accuracy(0.5);
  return request;
}

TEST_F(WorkerServiceTest, CompleteTrial_WithLeaseNext_AnswersTheNextTrialAsLeaseTrialWould) {
  AddSweep("two", 2);
  const v1::LeaseTrialResponse first = LeaseOne(*service_);
  v1::CompleteTrialRequest request = Completion(first);
  request.set_lease_next_incarnation("inc1");
  grpc::ServerContext context;
  v1::CompleteTrialResponse response;
  ASSERT_TRUE(service_->CompleteTrial(&context, &request, &response).ok());
  ASSERT_TRUE(response.has_next());
  const v1::LeaseTrialResponse& next = response.next();
  EXPECT_TRUE(next.has_trial());
  EXPECT_NE(next.ref().trial_id(), first.ref().trial_id());
  EXPECT_EQ(next.ref().attempt(), 1);
  EXPECT_EQ(next.checkpoint_every(), first.checkpoint_every());
  EXPECT_TRUE(next.accepts_points_with_reports());
  EXPECT_EQ(next.config().seed(), 1u);
  EXPECT_EQ(store_->GetTrial(first.ref().trial_id())->state(), v1::TRIAL_STATE_DONE);
  EXPECT_EQ(store_->GetCurve(first.ref().trial_id())->size(), 1u);
  EXPECT_EQ(store_->GetTrial(next.ref().trial_id())->state(), v1::TRIAL_STATE_RUNNING);

  // Nothing queued: an answer at once, saying so.
  v1::CompleteTrialRequest last = Completion(next);
  last.set_lease_next_incarnation("inc1");
  grpc::ServerContext last_context;
  v1::CompleteTrialResponse last_response;
  ASSERT_TRUE(service_->CompleteTrial(&last_context, &last, &last_response).ok());
  ASSERT_TRUE(last_response.has_next());
  EXPECT_FALSE(last_response.next().has_trial());
}

TEST_F(WorkerServiceTest, CompleteTrial_WithoutLeaseNext_LeasesNothing) {
  AddSweep("two", 2);
  const v1::LeaseTrialResponse first = LeaseOne(*service_);
  v1::CompleteTrialRequest request = Completion(first);
  grpc::ServerContext context;
  v1::CompleteTrialResponse response;
  ASSERT_TRUE(service_->CompleteTrial(&context, &request, &response).ok());
  EXPECT_FALSE(response.has_next());
  EXPECT_EQ(store_->GetSweep(1)->counts().queued(), 1);
}

TEST_F(WorkerServiceTest, CompleteTrial_StaleWithLeaseNext_IsRefusedAndLeasesNothing) {
  AddSweep("two", 2);
  const v1::LeaseTrialResponse first = LeaseOne(*service_);
  v1::CompleteTrialRequest request = Completion(first);
  request.mutable_ref()->set_attempt(first.ref().attempt() + 1);
  request.set_lease_next_incarnation("inc1");
  grpc::ServerContext context;
  v1::CompleteTrialResponse response;
  EXPECT_EQ(service_->CompleteTrial(&context, &request, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(store_->GetSweep(1)->counts().queued(), 1);
}

}  // namespace
}  // namespace bitsweep::server
