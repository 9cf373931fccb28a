// gRPC over TLS and mutual TLS, in-process on 127.0.0.1 port 0, with throwaway certificates
// made by the openssl CLI in a temp dir (EC P-256, SAN 127.0.0.1 and localhost).
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "common/channel_security.h"
#include "server/server.h"
#include "tests/server/temp_dir.h"

namespace bitsweep::server {
namespace {

using ::testing::HasSubstr;

// Runs a shell command (openssl) quietly; true when it exits 0. std::system waits for it.
bool Run(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, both signed by
// the CA, and a second unrelated CA.
class Certificates {
 public:
  explicit Certificates(const testing::TempDir& dir) : dir_(dir) {}

  bool Make() {
    {
      std::ofstream(File("server.ext")) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                        << "extendedKeyUsage=serverAuth\n";
      std::ofstream(File("client.ext")) << "extendedKeyUsage=clientAuth\n";
    }
    return MakeCa("ca") && MakeCa("other-ca") && MakeLeaf("server", "localhost") &&
           MakeLeaf("client", "bitsweep-test-client");
  }

  std::string File(const std::string& name) const { return dir_.File(name); }

 private:
  static std::string NewKey() {
    return " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
  }
  bool MakeCa(const std::string& name) {
    return Run("openssl req -x509" + NewKey() + "-keyout " + File(name + ".key") + " -out " +
               File(name + ".pem") + " -days 1 -subj /CN=" + name +
               " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign");
  }
  bool MakeLeaf(const std::string& name, const std::string& common_name) {
    return Run("openssl req" + NewKey() + "-keyout " + File(name + ".key") + " -out " +
               File(name + ".csr") + " -subj /CN=" + common_name) &&
           Run("openssl x509 -req -in " + File(name + ".csr") + " -CA " + File("ca.pem") +
               " -CAkey " + File("ca.key") + " -CAcreateserial -days 1 -out " +
               File(name + ".pem") + " -extfile " + File(name + ".ext"));
  }

  const testing::TempDir& dir_;
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certificates_.Make()) << "openssl could not make the test certificates";
  }

  void StartServer(bool require_client_certificates) {
    ServerOptions options;
    options.grpc_address = "127.0.0.1:0";
    options.http_address = "";
    options.db_path = dir_.File("tls.db");
    options.tls_cert_file = certificates_.File("server.pem");
    options.tls_key_file = certificates_.File("server.key");
    if (require_client_certificates) options.tls_client_ca_file = certificates_.File("ca.pem");
    absl::Status status = server_.Start(options);
    ASSERT_TRUE(status.ok()) << status;
  }

  grpc::Status ListSweeps(const common::ChannelSecurity& security) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        common::MakeChannelCredentials(security);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    if (!credentials.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "no credentials");
    auto stub = v1::SweepService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_.grpc_port()), *credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListSweepsResponse response;
    return stub->ListSweeps(&context, v1::ListSweepsRequest(), &response);
  }

  testing::TempDir dir_;
  Certificates certificates_{dir_};
  Server server_;
};

TEST_F(TlsTest, ClientTrustingTheCa_Connects) {
  StartServer(false);
  grpc::Status status = ListSweeps({.token = "",
                                    .tls_ca_file = certificates_.File("ca.pem"),
                                    .tls_cert_file = "",
                                    .tls_key_file = ""});
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(TlsTest, PlaintextClient_FailsUnavailable) {
  StartServer(false);
  grpc::Status status = ListSweeps({});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(TlsTest, ClientTrustingAnotherCa_FailsUnavailable) {
  StartServer(false);
  grpc::Status status = ListSweeps({.token = "",
                                    .tls_ca_file = certificates_.File("other-ca.pem"),
                                    .tls_cert_file = "",
                                    .tls_key_file = ""});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(TlsTest, MutualTls_ClientWithCertificateConnects) {
  StartServer(true);
  grpc::Status status = ListSweeps({.token = "",
                                    .tls_ca_file = certificates_.File("ca.pem"),
                                    .tls_cert_file = certificates_.File("client.pem"),
                                    .tls_key_file = certificates_.File("client.key")});
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(TlsTest, MutualTls_ClientWithoutCertificateRefused) {
  StartServer(true);
  grpc::Status status = ListSweeps({.token = "",
                                    .tls_ca_file = certificates_.File("ca.pem"),
                                    .tls_cert_file = "",
                                    .tls_key_file = ""});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(TlsTest, Dashboard_ServesHttpsWithTheSameCertificate) {
  ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "127.0.0.1:0";
  options.db_path = dir_.File("tls.db");
  options.tls_cert_file = certificates_.File("server.pem");
  options.tls_key_file = certificates_.File("server.key");
  absl::Status status = server_.Start(options);
  ASSERT_TRUE(status.ok()) << status;
  httplib::SSLClient client("127.0.0.1", server_.http_port());
  client.set_ca_cert_path(certificates_.File("ca.pem").c_str());
  client.enable_server_certificate_verification(true);
  auto response = client.Get("/healthz");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);

  httplib::Client plain("127.0.0.1", server_.http_port());
  auto plain_response = plain.Get("/healthz");
  EXPECT_FALSE(plain_response && plain_response->status == 200);
}

TEST_F(TlsTest, KeyWithoutCertificate_RefusesToStart) {
  ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "";
  options.db_path = dir_.File("tls.db");
  options.tls_key_file = certificates_.File("server.key");
  absl::Status status = server_.Start(options);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("--tls-cert and --tls-key go together"));
}

TEST_F(TlsTest, UnreadableCertificate_RefusesToStartNamingTheFlag) {
  ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.http_address = "";
  options.db_path = dir_.File("tls.db");
  options.tls_cert_file = dir_.File("missing.pem");
  options.tls_key_file = certificates_.File("server.key");
  absl::Status status = server_.Start(options);
  EXPECT_TRUE(absl::IsNotFound(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("--tls-cert"));
}

}  // namespace
}  // namespace bitsweep::server
