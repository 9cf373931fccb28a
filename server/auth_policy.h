// AuthPolicy: who may call which gRPC method (DESIGN §9).
//
// Two roles, each with its own bearer token: workers (WorkerService) and clients (SweepService,
// the CLI). The decision is plain domain logic over (method, authorization header) so that it
// is tested without gRPC; AuthorizeCall applies it at the top of every handler.
//
//   method                                   no token configured   client token   worker token
//   grpc.health.*, grpc.reflection.*         open                  open           open
//   SweepService reads (Get/List/Watch)      open                  allowed        allowed
//   SweepService writes (Submit/Cancel/      open                  allowed        PERMISSION_DENIED
//     Pause/Resume/Rerun/RecordPrediction)
//   WorkerService.*                          open                  PERMISSION_DENIED  allowed
//
// "No token configured" is per role: a service is guarded by its own role's token; the server
// refuses to listen beyond loopback without both (see CheckExposure). Workers may read sweeps:
// the dashboard already shows the same data, and it helps a worker operator debug.
// Missing, malformed or unknown tokens are UNAUTHENTICATED. Tokens are compared in constant
// time (CRYPTO_memcmp) and never appear in messages or logs.
//
// Why in the handlers and not a grpc::AuthMetadataProcessor: gRPC 1.51 only runs processors on
// TLS credentials (it asserts on insecure ones), and tokens must work on plaintext loopback too;
// a server interceptor cannot fail a call with a status of its choosing.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace bitsweep::server {

class AuthPolicy {
 public:
  // Empty token: that role is not configured, its service is open.
  AuthPolicy(std::string worker_token, std::string client_token);

  // Whether any token is configured (otherwise no check is installed at all).
  bool enabled() const { return !worker_token_.empty() || !client_token_.empty(); }

  // `method` is the gRPC path, "/package.Service/Method"; `authorization` the metadata value
  // (empty when absent). Errors: Unauthenticated (missing, malformed or unknown token),
  // PermissionDenied (a valid token of the wrong role).
  absl::Status Authorize(absl::string_view method, absl::string_view authorization) const;

 private:
  std::string worker_token_;
  std::string client_token_;
};

// Errors: InvalidArgument when both tokens are configured and equal (the roles would merge).
absl::Status ValidateTokens(const std::string& worker_token, const std::string& client_token);

// Whether `host` (as in ParseHostPort) is a loopback address: 127.0.0.0/8, ::1 or localhost.
bool IsLoopbackHost(const std::string& host);

// Safe defaults: an address beyond loopback needs both tokens unless `insecure_no_auth`.
// `flag` names the flag in the message. Errors: FailedPrecondition, saying how to fix it.
absl::Status CheckExposure(const std::string& flag, const std::string& address,
                           bool have_worker_token, bool have_client_token, bool insecure_no_auth);

// The gRPC edge of the policy, called first by every SweepService and WorkerService handler
// (a test calls every method of both services to make sure none is left out). `method` is the
// full gRPC path. Null `policy`: everything allowed. Returns UNAUTHENTICATED or
// PERMISSION_DENIED as Authorize does.
grpc::Status AuthorizeCall(const AuthPolicy* policy, const grpc::ServerContext& context,
                           absl::string_view method);

}  // namespace bitsweep::server
