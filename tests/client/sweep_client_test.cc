#include "client/sweep_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/client/fake_sweep_service.h"

namespace bitsweep::client {
namespace {

using ::testing::StartsWith;

class SweepClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServeOnLoopback(&service_, &address_);
    ASSERT_NE(server_, nullptr);
    v1::Sweep sweep;
    sweep.set_id(4);
    sweep.set_name("s");
    service_.AddSweep(sweep);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  FakeSweepService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

TEST_F(SweepClientTest, UnaryCall_ReturnsTheServersAnswer) {
  SweepClient client({.address = address_});
  absl::StatusOr<v1::Sweep> sweep = client.GetSweep(4);
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->name(), "s");
}

TEST_F(SweepClientTest, ServerError_KeepsItsCodeAndMessage) {
  SweepClient client({.address = address_});
  absl::StatusOr<v1::Sweep> sweep = client.GetSweep(5);
  EXPECT_EQ(sweep.status(), absl::NotFoundError("sweep 5 not found"));
}

TEST_F(SweepClientTest, WatchSweep_DeliversEveryEventUntilTheStreamEnds) {
  for (int done = 0; done < 3; ++done) {
    v1::SweepEvent event;
    event.mutable_sweep()->set_id(4);
    event.mutable_sweep()->mutable_counts()->set_done(done);
    service_.AddEvent(event);
  }
  SweepClient client({.address = address_});
  std::vector<int> seen;
  const absl::Status status = client.WatchSweep(4, [&](const v1::SweepEvent& event) {
    seen.push_back(event.sweep().counts().done());
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
}

TEST_F(SweepClientTest, WatchSweep_CallbackErrorStopsTheStreamAndIsReturned) {
  for (int i = 0; i < 3; ++i) service_.AddEvent(v1::SweepEvent());
  SweepClient client({.address = address_});
  int calls = 0;
  const absl::Status status = client.WatchSweep(4, [&](const v1::SweepEvent&) {
    ++calls;
    return absl::AbortedError("enough");
  });
  EXPECT_EQ(status, absl::AbortedError("enough"));
  EXPECT_EQ(calls, 1);
}

TEST_F(SweepClientTest, RefusedConnection_IsUnavailableNamingTheAddress) {
  server_->Shutdown();
  server_.reset();
  SweepClient client({.address = address_});
  absl::StatusOr<std::vector<v1::Sweep>> sweeps = client.ListSweeps();
  EXPECT_EQ(sweeps.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(sweeps.status().message()),
              StartsWith("cannot reach bitsweep server at " + address_ + ": "));
}

}  // namespace
}  // namespace bitsweep::client
