// How a worker or the CLI authenticates to bitsweep-server (DESIGN §9): a bearer token sent on
// every call, and optionally TLS (server certificate checked against a CA; a client
// certificate for mutual TLS).
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace bitsweep::common {

struct ChannelSecurity {
  // Bearer token; empty: none sent.
  std::string token;
  // PEM file of the CA that signed the server's certificate; empty: plaintext.
  std::string tls_ca_file;
  // PEM certificate and key of this client, for servers that require client certificates.
  std::string tls_cert_file;
  std::string tls_key_file;
};

// Plaintext credentials, or TLS ones when tls_ca_file is set.
// Errors: InvalidArgument (a certificate file given without TLS, or only one of cert/key),
// NotFound (cannot read a PEM file).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ChannelSecurity& security);

// Adds the bearer token (if any) to a call's metadata.
void AddBearerToken(const std::string& token, grpc::ClientContext& context);

// Reads a whole file. Errors: NotFound, naming `what` and the path.
absl::StatusOr<std::string> ReadPemFile(const std::string& what, const std::string& path);

}  // namespace bitsweep::common
