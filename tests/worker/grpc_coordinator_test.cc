// The worker's gRPC edge against a small fake WorkerService on loopback port 0: status codes
// cross the wire intact, long polls can be cancelled, a dead server reads as Unavailable, and a
// whole WorkerAgent runs a trial over real gRPC.
#include "worker/grpc_coordinator.h"

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "tests/worker/test_configs.h"
#include "worker/backoff.h"
#include "worker/worker_agent.h"

namespace bitsweep::worker {
namespace {

using std::chrono::milliseconds;

class FakeWorkerService final : public v1::WorkerService::Service {
 public:
  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    registered_.insert(request->worker_id());
    auto authorization = context->client_metadata().find("authorization");
    last_authorization_ =
        authorization == context->client_metadata().end()
            ? ""
            : std::string(authorization->second.data(), authorization->second.size());
    response->set_lease_timeout_ms(1000);
    response->set_heartbeat_interval_ms(50);
    return grpc::Status::OK;
  }

  grpc::Status LeaseTrial(grpc::ServerContext* context, const v1::LeaseTrialRequest* request,
                          v1::LeaseTrialResponse* response) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!registered_.count(request->worker_id())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "worker not registered");
    }
    const auto deadline = std::chrono::steady_clock::now() + milliseconds(request->wait_ms());
    // Test-only: wake in slices so that a cancelled call frees its server thread.
    while (!has_trial_ && !context->IsCancelled() && std::chrono::steady_clock::now() < deadline) {
      cv_.wait_for(lock, milliseconds(10));
    }
    if (has_trial_) {
      has_trial_ = false;
      response->set_has_trial(true);
      response->mutable_ref()->set_trial_id(5);
      response->mutable_ref()->set_attempt(1);
      *response->mutable_config() = testing::TinySyntheticConfig();
    }
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!registered_.count(request->worker_id())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "worker not registered");
    }
    return grpc::Status::OK;
  }

  grpc::Status ReportProgress(grpc::ServerContext*, const v1::ReportProgressRequest* request,
                              v1::ReportProgressResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (request->ref().attempt() == 0) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "stale attempt");
    }
    points_ += request->points_size();
    return grpc::Status::OK;
  }

  grpc::Status CompleteTrial(grpc::ServerContext*, const v1::CompleteTrialRequest* request,
                             v1::CompleteTrialResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    completions_.push_back(*request);
    cv_.notify_all();
    return grpc::Status::OK;
  }

  void OfferTrial() {
    std::lock_guard<std::mutex> lock(mu_);
    has_trial_ = true;
    cv_.notify_all();
  }
  std::vector<v1::CompleteTrialRequest> completions() {
    std::lock_guard<std::mutex> lock(mu_);
    return completions_;
  }
  int points() {
    std::lock_guard<std::mutex> lock(mu_);
    return points_;
  }
  std::string last_authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_authorization_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> registered_;
  std::string last_authorization_;  // of the last RegisterWorker
  bool has_trial_ = false;
  int points_ = 0;
  std::vector<v1::CompleteTrialRequest> completions_;
};

class GrpcCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    coordinator_ = GrpcCoordinator::Connect("127.0.0.1:" + std::to_string(port_)).value();
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
  }

  v1::LeaseTrialRequest Lease(const std::string& worker_id, int64_t wait_ms) {
    v1::LeaseTrialRequest request;
    request.set_worker_id(worker_id);
    request.set_wait_ms(wait_ms);
    return request;
  }

  FakeWorkerService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<GrpcCoordinator> coordinator_;
};

TEST_F(GrpcCoordinatorTest, Register_ReturnsTheServersTimings) {
  v1::RegisterWorkerRequest request;
  request.set_worker_id("w1");
  absl::StatusOr<v1::RegisterWorkerResponse> response = coordinator_->RegisterWorker(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->lease_timeout_ms(), 1000);
  EXPECT_EQ(response->heartbeat_interval_ms(), 50);
}

TEST_F(GrpcCoordinatorTest, Token_SentAsBearerMetadataOnEveryCall) {
  v1::RegisterWorkerRequest request;
  request.set_worker_id("w1");
  ASSERT_TRUE(coordinator_->RegisterWorker(request).ok());
  EXPECT_EQ(service_.last_authorization(), "");

  common::ChannelSecurity security;
  security.token = "worker-token-123";
  absl::StatusOr<std::unique_ptr<GrpcCoordinator>> with_token =
      GrpcCoordinator::Connect("127.0.0.1:" + std::to_string(port_), security);
  ASSERT_TRUE(with_token.ok()) << with_token.status();
  ASSERT_TRUE((*with_token)->RegisterWorker(request).ok());
  EXPECT_EQ(service_.last_authorization(), "Bearer worker-token-123");
}

TEST_F(GrpcCoordinatorTest, Connect_UnreadableCaFile_IsAnErrorNamingTheFlag) {
  common::ChannelSecurity security;
  security.tls_ca_file = "/nonexistent/ca.pem";
  absl::StatusOr<std::unique_ptr<GrpcCoordinator>> coordinator =
      GrpcCoordinator::Connect("127.0.0.1:1", security);
  EXPECT_TRUE(absl::IsNotFound(coordinator.status())) << coordinator.status();
  EXPECT_NE(coordinator.status().message().find("--tls-ca"), absl::string_view::npos);
}

TEST_F(GrpcCoordinatorTest, ServerErrors_ArriveWithTheirCodeAndMessage) {
  absl::StatusOr<v1::LeaseTrialResponse> lease = coordinator_->LeaseTrial(Lease("unknown", 10));
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(lease.status().message(), "worker not registered");

  v1::ReportProgressRequest report;
  report.mutable_ref()->set_attempt(0);
  EXPECT_EQ(coordinator_->ReportProgress(report).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(GrpcCoordinatorTest, LeaseTrial_LongPollReturnsEmptyAfterWaiting) {
  v1::RegisterWorkerRequest request;
  request.set_worker_id("w1");
  ASSERT_TRUE(coordinator_->RegisterWorker(request).ok());
  absl::StatusOr<v1::LeaseTrialResponse> lease = coordinator_->LeaseTrial(Lease("w1", 100));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_FALSE(lease->has_trial());
}

TEST_F(GrpcCoordinatorTest, CancelAll_EndsALongPollAtOnceAndRefusesNewCalls) {
  v1::RegisterWorkerRequest request;
  request.set_worker_id("w1");
  ASSERT_TRUE(coordinator_->RegisterWorker(request).ok());
  absl::Status status;
  const auto start = std::chrono::steady_clock::now();
  std::thread poll([&] { status = coordinator_->LeaseTrial(Lease("w1", 60'000)).status(); });
  std::this_thread::sleep_for(milliseconds(100));  // let the call reach the server
  coordinator_->CancelAll();
  poll.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(coordinator_->RegisterWorker(request).status().code(), absl::StatusCode::kCancelled);
  // Reports still go through, so that a finished result is not lost on shutdown.
  v1::CompleteTrialRequest complete;
  EXPECT_TRUE(coordinator_->CompleteTrial(complete).ok());
}

// A port that was free a moment ago: bound, then closed again.
int FreeLoopbackPort() {
  int port = 0;
  {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return 0;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
    port = ntohs(addr.sin_port);
    close(fd);
  }
  return port;
}

TEST(GrpcCoordinatorDeadServerTest, NothingListening_CallsFailAsTransient) {
  const int port = FreeLoopbackPort();
  GrpcCoordinator coordinator(GrpcCoordinator::MakeChannel("127.0.0.1:" + std::to_string(port)),
                              milliseconds(300));
  // Control calls wait for the server until their deadline; progress reports fail fast.
  v1::RegisterWorkerRequest request;
  absl::Status registered = coordinator.RegisterWorker(request).status();
  EXPECT_EQ(registered.code(), absl::StatusCode::kDeadlineExceeded) << registered;
  EXPECT_TRUE(IsTransient(registered));
  absl::Status progress = coordinator.ReportProgress(v1::ReportProgressRequest()).status();
  EXPECT_EQ(progress.code(), absl::StatusCode::kUnavailable) << progress;
}

// Regression: after a failed connect, fail-fast calls kept getting the cached "connection
// refused" for several seconds after the server was back, so a worker took up to its backoff cap
// plus gRPC's re-resolution delay to return.
TEST(GrpcCoordinatorDeadServerTest, RegressionServerStartsLate_CallsGoThroughOnceItListens) {
  const int port = FreeLoopbackPort();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  GrpcCoordinator coordinator(GrpcCoordinator::MakeChannel(address), std::chrono::seconds(3));
  v1::RegisterWorkerRequest request;
  request.set_worker_id("w1");
  ASSERT_FALSE(coordinator.RegisterWorker(request).ok());  // puts the channel in backoff

  FakeWorkerService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<v1::RegisterWorkerResponse> response = coordinator.RegisterWorker(request);
  EXPECT_TRUE(response.ok()) << response.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  server->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
}

TEST_F(GrpcCoordinatorTest, WorkerAgent_RunsATrialOverRealGrpc) {
  ShutdownNotifier shutdown;
  DatasetCache datasets("/nonexistent");
  TrialRunner runner("w1", coordinator_.get(), &datasets, &shutdown,
                     [](const v1::TrialConfig&, const trainer::Dataset&,
                        const trainer::ProgressCallback& on_progress,
                        const trainer::TrainOptions&) -> absl::StatusOr<v1::TrialResult> {
                       for (int i = 1; i <= 3; ++i) {
                         v1::CurvePoint point;
                         point.set_iteration(i);
                         if (!on_progress(point)) return absl::CancelledError("stopped");
                       }
                       v1::TrialResult result;
                       result.set_num_classes(10);
                       return result;
                     });
  WorkerOptions options;
  options.worker_id = "w1";
  options.slots = 1;
  options.max_trials = 1;
  options.lease_wait = milliseconds(200);
  WorkerAgent agent(options, coordinator_.get(), &runner, &shutdown);
  service_.OfferTrial();
  ASSERT_TRUE(agent.Run().ok());
  ASSERT_EQ(service_.completions().size(), 1u);
  EXPECT_EQ(service_.completions()[0].ref().trial_id(), 5);
  EXPECT_EQ(service_.completions()[0].result().num_classes(), 10);
  EXPECT_EQ(service_.points(), 3);
}

}  // namespace
}  // namespace bitsweep::worker
