// AuthPolicy's decisions without gRPC, then the same rules over real gRPC on 127.0.0.1 port 0.
#include "server/auth_policy.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/support/byte_buffer.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "bitsweep/v1/worker.grpc.pb.h"
#include "client/cli.h"
#include "common/bearer_token.h"
#include "server/server.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kWorkerToken[] = "worker-secret-0123456789";
constexpr char kClientToken[] = "client-secret-9876543210";
constexpr char kSubmit[] = "/bitsweep.v1.SweepService/SubmitSweep";
constexpr char kCancel[] = "/bitsweep.v1.SweepService/CancelSweep";
constexpr char kListSweeps[] = "/bitsweep.v1.SweepService/ListSweeps";
constexpr char kLease[] = "/bitsweep.v1.WorkerService/LeaseTrial";

std::string Bearer(const std::string& token) { return "Bearer " + token; }

TEST(AuthPolicyTest, NoTokens_EverythingOpen) {
  AuthPolicy policy("", "");
  EXPECT_FALSE(policy.enabled());
  EXPECT_TRUE(policy.Authorize(kSubmit, "").ok());
  EXPECT_TRUE(policy.Authorize(kLease, "").ok());
}

TEST(AuthPolicyTest, MissingToken_Unauthenticated) {
  AuthPolicy policy(kWorkerToken, kClientToken);
  absl::Status status = policy.Authorize(kSubmit, "");
  EXPECT_TRUE(absl::IsUnauthenticated(status));
  EXPECT_THAT(status.message(), HasSubstr("missing bearer token"));
  EXPECT_TRUE(absl::IsUnauthenticated(policy.Authorize(kLease, "")));
}

TEST(AuthPolicyTest, WrongToken_UnauthenticatedWithoutEchoingIt) {
  AuthPolicy policy(kWorkerToken, kClientToken);
  absl::Status status = policy.Authorize(kListSweeps, Bearer("guessed-token"));
  EXPECT_TRUE(absl::IsUnauthenticated(status));
  EXPECT_THAT(status.message(), HasSubstr("invalid bearer token"));
  EXPECT_THAT(status.message(), Not(HasSubstr("guessed-token")));
}

TEST(AuthPolicyTest, TokenPrefixOrExtension_Unauthenticated) {
  AuthPolicy policy(kWorkerToken, kClientToken);
  std::string prefix(kClientToken);
  prefix.pop_back();
  EXPECT_TRUE(absl::IsUnauthenticated(policy.Authorize(kSubmit, Bearer(prefix))));
  EXPECT_TRUE(
      absl::IsUnauthenticated(policy.Authorize(kSubmit, Bearer(std::string(kClientToken) + "x"))));
}

TEST(AuthPolicyTest, NotBearerScheme_Unauthenticated) {
  AuthPolicy policy(kWorkerToken, kClientToken);
  absl::Status status = policy.Authorize(kSubmit, std::string("Basic ") + kClientToken);
  EXPECT_TRUE(absl::IsUnauthenticated(status));
  EXPECT_THAT(status.message(), HasSubstr("expected 'Bearer <token>'"));
}

TEST(AuthPolicyTest, ClientToken_MaySubmitButNotCallWorkerService) {
  AuthPolicy policy(kWorkerToken, kClientToken);
  EXPECT_TRUE(policy.Authorize(kSubmit, Bearer(kClientToken)).ok());
  EXPECT_TRUE(policy.Authorize(kCancel, Bearer(kClientToken)).ok());
  absl::Status status = policy.Authorize(kLease, Bearer(kClientToken));
  EXPECT_TRUE(absl::IsPermissionDenied(status));
  EXPECT_THAT(status.message(), HasSubstr("client token may not call"));
}

TEST(AuthPolicyTest, WorkerToken_MayReadSweepsButNotWrite) {
  AuthPolicy policy(kWorkerToken, kClientToken);
  EXPECT_TRUE(policy.Authorize(kLease, Bearer(kWorkerToken)).ok());
  EXPECT_TRUE(policy.Authorize(kListSweeps, Bearer(kWorkerToken)).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(policy.Authorize(kSubmit, Bearer(kWorkerToken))));
  EXPECT_TRUE(absl::IsPermissionDenied(policy.Authorize(kCancel, Bearer(kWorkerToken))));
}

TEST(AuthPolicyTest, HealthAndReflection_StayOpen) {
  AuthPolicy policy(kWorkerToken, kClientToken);
  EXPECT_TRUE(policy.Authorize("/grpc.health.v1.Health/Check", "").ok());
  EXPECT_TRUE(
      policy.Authorize("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "").ok());
}

TEST(AuthPolicyTest, OnlyWorkerTokenConfigured_SweepServiceOpenWorkerServiceGuarded) {
  AuthPolicy policy(kWorkerToken, "");
  EXPECT_TRUE(policy.Authorize(kSubmit, "").ok());
  EXPECT_TRUE(absl::IsUnauthenticated(policy.Authorize(kLease, "")));
}

TEST(AuthPolicyTest, EqualTokens_Rejected) {
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateTokens("same", "same")));
  EXPECT_TRUE(ValidateTokens("a", "b").ok());
  EXPECT_TRUE(ValidateTokens("", "").ok());
}

TEST(CheckExposureTest, LoopbackWithoutTokens_Allowed) {
  EXPECT_TRUE(CheckExposure("--listen", "127.0.0.1:0", false, false, false).ok());
  EXPECT_TRUE(CheckExposure("--listen", "[::1]:50051", false, false, false).ok());
  EXPECT_TRUE(CheckExposure("--http", "localhost:8080", false, false, false).ok());
  EXPECT_TRUE(CheckExposure("--http", "", false, false, false).ok());
}

TEST(CheckExposureTest, AnyAddressWithoutBothTokens_RefusedWithTheFix) {
  absl::Status status = CheckExposure("--listen", "0.0.0.0:50051", true, false, false);
  EXPECT_TRUE(absl::IsFailedPrecondition(status));
  EXPECT_THAT(status.message(), HasSubstr("--worker-token-file"));
  EXPECT_THAT(status.message(), HasSubstr("--client-token-file"));
  EXPECT_THAT(status.message(), HasSubstr("--insecure-no-auth"));
  EXPECT_TRUE(CheckExposure("--http", "[::]:8080", false, false, false).code() ==
              absl::StatusCode::kFailedPrecondition);
}

TEST(CheckExposureTest, BothTokensOrExplicitOverride_Allowed) {
  EXPECT_TRUE(CheckExposure("--listen", "0.0.0.0:50051", true, true, false).ok());
  EXPECT_TRUE(CheckExposure("--listen", "0.0.0.0:50051", false, false, true).ok());
}

TEST(ServerExposureTest, StartOnAnyAddressWithoutTokens_Refuses) {
  testing::TempDir dir;
  ServerOptions options;
  options.grpc_address = "0.0.0.0:0";
  options.http_address = "";
  options.db_path = dir.File("exposed.db");
  Server server;
  absl::Status status = server.Start(options);
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("--insecure-no-auth"));
}

TEST(BearerTokenTest, ReadTokenFile_TrimsAndRejectsEmpty) {
  testing::TempDir dir;
  {
    std::ofstream(dir.File("token")) << "  abc123  \n";
    std::ofstream(dir.File("empty")) << "\n";
  }
  absl::StatusOr<std::string> token = common::ReadTokenFile(dir.File("token"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "abc123");
  EXPECT_TRUE(absl::IsInvalidArgument(common::ReadTokenFile(dir.File("empty")).status()));
  EXPECT_TRUE(absl::IsNotFound(common::ReadTokenFile(dir.File("missing")).status()));
}

// The policy applied by the real server, on every call.
class AuthenticatedServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "";
    options.db_path = dir_.File("auth.db");
    options.worker_token = kWorkerToken;
    options.client_token = kClientToken;
    ASSERT_TRUE(server_.Start(options).ok());
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_.grpc_port()),
                                   grpc::InsecureChannelCredentials());
    sweeps_ = v1::SweepService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }

  grpc::Status ListSweeps(const std::string& token) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", Bearer(token));
    v1::ListSweepsResponse response;
    return sweeps_->ListSweeps(&context, v1::ListSweepsRequest(), &response);
  }
  grpc::Status Submit(const std::string& token) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", Bearer(token));
    v1::SubmitSweepRequest request;
    request.mutable_spec()->set_name("auth");
    request.set_dry_run(true);
    v1::SubmitSweepResponse response;
    return sweeps_->SubmitSweep(&context, request, &response);
  }
  grpc::Status Register(const std::string& token) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", Bearer(token));
    v1::RegisterWorkerRequest request;
    request.set_worker_id("w");
    request.set_incarnation("i");
    request.set_slots(1);
    v1::RegisterWorkerResponse response;
    return workers_->RegisterWorker(&context, request, &response);
  }

  testing::TempDir dir_;
  Server server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SweepService::Stub> sweeps_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

TEST_F(AuthenticatedServerTest, NoToken_Unauthenticated) {
  grpc::Status status = ListSweeps("");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("missing bearer token"));
  EXPECT_EQ(Register("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthenticatedServerTest, WrongToken_Unauthenticated) {
  EXPECT_EQ(ListSweeps("nope").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Register("nope").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthenticatedServerTest, RightRole_Allowed) {
  EXPECT_TRUE(ListSweeps(kClientToken).ok());
  grpc::Status submitted = Submit(kClientToken);
  EXPECT_NE(submitted.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(submitted.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Register(kWorkerToken).ok());
}

TEST_F(AuthenticatedServerTest, WrongRole_PermissionDenied) {
  grpc::Status submit = Submit(kWorkerToken);
  EXPECT_EQ(submit.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(submit.error_message(), HasSubstr("worker token may not call"));
  EXPECT_EQ(Register(kClientToken).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(ListSweeps(kWorkerToken).ok());  // workers may read
}

// Guards against a handler added without its AuthorizeCall: every method of both services,
// called without a token (with an empty request), must be refused before it runs.
TEST_F(AuthenticatedServerTest, EveryMethodOfBothServices_RefusesCallsWithoutToken) {
  int methods = 0;
  for (const char* service_name : {"bitsweep.v1.SweepService", "bitsweep.v1.WorkerService"}) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_name);
    ASSERT_NE(service, nullptr) << service_name;
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string path = "/" + std::string(service_name) + "/" + service->method(i)->name();
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      grpc::Slice empty_message;
      grpc::ByteBuffer request(&empty_message, 1);
      grpc::ByteBuffer response;
      grpc::Status status = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
          channel_.get(),
          grpc::internal::RpcMethod(path.c_str(), grpc::internal::RpcMethod::NORMAL_RPC), &context,
          request, &response);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << path << ": " << status.error_message();
      ++methods;
    }
  }
  EXPECT_EQ(methods, 21);  // 14 sweep + 7 worker methods: every one was called
}

// The CLI end to end (in-process): its --token-file reaches the server, and a refusal is one
// clear line with exit code 2.
TEST_F(AuthenticatedServerTest, Cli_WithoutTokenFails_WithTokenFileLists) {
  { std::ofstream(dir_.File("client.token")) << kClientToken << "\n"; }
  const std::string server = "127.0.0.1:" + std::to_string(server_.grpc_port());
  std::ostringstream out;
  std::ostringstream err;
  client::CliEnvironment env;
  env.out = &out;
  env.err = &err;
  EXPECT_EQ(client::RunCli({"bitsweep", "--server", server, "ls"}, env), 2);
  EXPECT_THAT(err.str(), HasSubstr("missing bearer token"));
  EXPECT_THAT(err.str(), HasSubstr("--token-file"));

  err.str("");
  EXPECT_EQ(
      client::RunCli(
          {"bitsweep", "--server", server, "--token-file", dir_.File("client.token"), "ls"}, env),
      0)
      << err.str();
  EXPECT_EQ(
      client::RunCli(
          {"bitsweep", "--server", server, "--token-file", dir_.File("missing.token"), "ls"}, env),
      2);
  EXPECT_THAT(err.str(), HasSubstr("--token-file: cannot read token file"));
}

TEST_F(AuthenticatedServerTest, HealthCheck_OpenWithoutToken) {
  // An empty HealthCheckRequest (service "" = the whole server), sent as raw bytes: the
  // health proto's generated stubs are not installed.
  grpc::ClientContext context;
  grpc::Slice empty_message;
  grpc::ByteBuffer request(&empty_message, 1);
  grpc::ByteBuffer response;
  grpc::Status status = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel_.get(),
      grpc::internal::RpcMethod("/grpc.health.v1.Health/Check",
                                grpc::internal::RpcMethod::NORMAL_RPC),
      &context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace bitsweep::server
