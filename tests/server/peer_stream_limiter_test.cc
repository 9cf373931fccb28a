// PeerStreamLimiter on its own, and the WatchSweep cap it enforces over real gRPC on loopback.
#include "server/peer_stream_limiter.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "server/server.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

TEST(PeerStreamLimiterTest, PeerHost_DropsThePortAndKeepsOtherPeersAsTheyAre) {
  EXPECT_EQ(PeerStreamLimiter::PeerHost("ipv4:10.0.0.5:41234"), "10.0.0.5");
  EXPECT_EQ(PeerStreamLimiter::PeerHost("ipv6:[::1]:50051"), "::1");
  EXPECT_EQ(PeerStreamLimiter::PeerHost("ipv6:%5B::1%5D:1"), "::1");
  EXPECT_EQ(PeerStreamLimiter::PeerHost("unix:/tmp/sock"), "unix:/tmp/sock");
  EXPECT_EQ(PeerStreamLimiter::PeerHost(""), "");
}

TEST(PeerStreamLimiterTest, OverTheLimit_IsResourceExhaustedNamingHostAndLimit) {
  PeerStreamLimiter limiter("WatchSweep streams", 2);
  auto a = limiter.Acquire("ipv4:10.0.0.5:1000");
  auto b = limiter.Acquire("ipv4:10.0.0.5:1001");  // another connection, same host
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  auto c = limiter.Acquire("ipv4:10.0.0.5:1002");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(c.status().message(),
            "10.0.0.5 already has 2 open WatchSweep streams (the limit); close some before "
            "opening another");
  // Other hosts are counted separately.
  EXPECT_TRUE(limiter.Acquire("ipv4:10.0.0.6:1000").ok());
  EXPECT_EQ(limiter.OpenFor("ipv4:10.0.0.5:9"), 2);
}

TEST(PeerStreamLimiterTest, ReleasedSlot_MakesRoomAgain) {
  PeerStreamLimiter limiter("streams", 1);
  {
    auto a = limiter.Acquire("ipv4:1.2.3.4:5");
    ASSERT_TRUE(a.ok());
    EXPECT_FALSE(limiter.Acquire("ipv4:1.2.3.4:6").ok());
    // A moved-from slot releases nothing; the moved-to one releases once.
    PeerStreamLimiter::Slot moved = *std::move(a);
    EXPECT_EQ(limiter.OpenFor("ipv4:1.2.3.4:5"), 1);
  }
  EXPECT_EQ(limiter.OpenFor("ipv4:1.2.3.4:5"), 0);
  EXPECT_TRUE(limiter.Acquire("ipv4:1.2.3.4:7").ok());
}

// One open WatchSweep stream, read up to its first event.
struct OpenWatch {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::SweepEvent>> reader;
};

TEST(WatchStreamLimitTest, StreamsBeyondThePerPeerLimit_AreRefusedUntilOneCloses) {
  testing::TempDir dir;
  ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "";
  options.db_path = dir.File("watch.db");
  options.max_watch_streams_per_peer = 2;
  Server server;
  ASSERT_TRUE(server.Start(options).ok());
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server.grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::SweepService::NewStub(channel);
  v1::SubmitSweepRequest submit;
  submit.mutable_spec()->set_name("never-leased");
  submit.mutable_spec()->set_seeds(1);
  v1::SweepParameter* parameter = submit.mutable_spec()->add_parameters();
  parameter->set_path("train.batch_size");
  parameter->mutable_values()->add_values()->set_number_value(32);
  v1::SubmitSweepResponse submitted;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->SubmitSweep(&context, submit, &submitted).ok());
  }
  v1::WatchSweepRequest request;
  request.set_sweep_id(submitted.sweep_id());
  v1::SweepEvent event;

  std::vector<std::unique_ptr<OpenWatch>> open;
  for (int i = 0; i < 2; ++i) {
    auto watch = std::make_unique<OpenWatch>();
    watch->reader = stub->WatchSweep(&watch->context, request);
    ASSERT_TRUE(watch->reader->Read(&event)) << "stream " << i;
    open.push_back(std::move(watch));
  }
  {
    grpc::ClientContext context;
    auto refused = stub->WatchSweep(&context, request);
    EXPECT_FALSE(refused->Read(&event));
    grpc::Status status = refused->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(status.error_message().find("already has 2 open WatchSweep streams"),
              std::string::npos)
        << status.error_message();
  }

  // Closing one stream frees its slot once the server notices (its next poll, ~1 s).
  open.front()->context.TryCancel();
  open.front()->reader->Finish();
  open.erase(open.begin());
  bool reopened = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!reopened && std::chrono::steady_clock::now() < deadline) {
    auto watch = std::make_unique<OpenWatch>();
    watch->reader = stub->WatchSweep(&watch->context, request);
    if (watch->reader->Read(&event)) {
      reopened = true;
      open.push_back(std::move(watch));
    } else {
      EXPECT_EQ(watch->reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // bounded poll
    }
  }
  EXPECT_TRUE(reopened);
  for (auto& watch : open) watch->context.TryCancel();
  for (auto& watch : open) watch->reader->Finish();
  server.Shutdown();
}

}  // namespace
}  // namespace bitsweep::server
