#include "server/auth_policy.h"

#include <openssl/crypto.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/bearer_token.h"
#include "common/grpc_status.h"
#include "server/server.h"

namespace bitsweep::server {
namespace {

constexpr absl::string_view kSweepService = "/bitsweep.v1.SweepService/";
constexpr absl::string_view kWorkerService = "/bitsweep.v1.WorkerService/";

// Constant time in the token's content: an attacker learns nothing from timing beyond whether
// the lengths match.
bool TokenEquals(absl::string_view presented, const std::string& expected) {
  if (expected.empty() || presented.size() != expected.size()) return false;
  return CRYPTO_memcmp(presented.data(), expected.data(), expected.size()) == 0;
}

bool IsOpenMethod(absl::string_view method) {
  return absl::StartsWith(method, "/grpc.health.v1.Health/") ||
         absl::StartsWith(method, "/grpc.reflection.");
}

bool IsSweepWrite(absl::string_view method) {
  return method == "/bitsweep.v1.SweepService/SubmitSweep" ||
         method == "/bitsweep.v1.SweepService/CancelSweep" ||
         method == "/bitsweep.v1.SweepService/PauseSweep" ||
         method == "/bitsweep.v1.SweepService/ResumeSweep" ||
         method == "/bitsweep.v1.SweepService/RerunSweep" ||
         method == "/bitsweep.v1.SweepService/CancelTrial" ||
         method == "/bitsweep.v1.SweepService/RecordPrediction";
}

}  // namespace

AuthPolicy::AuthPolicy(std::string worker_token, std::string client_token)
    : worker_token_(std::move(worker_token)), client_token_(std::move(client_token)) {}

absl::Status AuthPolicy::Authorize(absl::string_view method,
                                   absl::string_view authorization) const {
  if (IsOpenMethod(method)) return absl::OkStatus();
  const bool worker_method = absl::StartsWith(method, kWorkerService);
  const bool sweep_method = absl::StartsWith(method, kSweepService);
  // A service is guarded by its own role's token; unknown methods need either token.
  if (worker_method && worker_token_.empty()) return absl::OkStatus();
  if (sweep_method && client_token_.empty()) return absl::OkStatus();
  if (!enabled()) return absl::OkStatus();

  if (authorization.empty()) {
    return absl::UnauthenticatedError(absl::StrCat("missing bearer token for ", method,
                                                   ": pass --token-file or set BITSWEEP_TOKEN"));
  }
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWithIgnoreCase(authorization, kBearer)) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: expected 'Bearer <token>'");
  }
  const absl::string_view token = authorization.substr(kBearer.size());
  const bool is_worker = TokenEquals(token, worker_token_);
  const bool is_client = TokenEquals(token, client_token_);
  if (!is_worker && !is_client) {
    return absl::UnauthenticatedError(
        absl::StrCat("invalid bearer token for ", method, ": check --token-file"));
  }
  if (worker_method && !is_worker) {
    return absl::PermissionDeniedError(
        absl::StrCat("a client token may not call ", method, ": it is for workers"));
  }
  if (sweep_method && !is_client && IsSweepWrite(method)) {
    return absl::PermissionDeniedError(
        absl::StrCat("a worker token may not call ", method, ": use a client token"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTokens(const std::string& worker_token, const std::string& client_token) {
  if (!worker_token.empty() && worker_token == client_token) {
    return absl::InvalidArgumentError(
        "the worker token and the client token must differ (one role each)");
  }
  return absl::OkStatus();
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::Status CheckExposure(const std::string& flag, const std::string& address,
                           bool have_worker_token, bool have_client_token, bool insecure_no_auth) {
  if (address.empty() || insecure_no_auth) return absl::OkStatus();
  std::string host;
  int port = 0;
  if (absl::Status status = ParseHostPort(address, &host, &port); !status.ok()) return status;
  if (IsLoopbackHost(host) || (have_worker_token && have_client_token)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      flag, " ", address,
      " is reachable beyond this machine, but not both tokens are configured: pass "
      "--worker-token-file and --client-token-file (or set BITSWEEP_WORKER_TOKEN and "
      "BITSWEEP_CLIENT_TOKEN), or --insecure-no-auth to serve without authentication"));
}

grpc::Status AuthorizeCall(const AuthPolicy* policy, const grpc::ServerContext& context,
                           absl::string_view method) {
  if (policy == nullptr || !policy->enabled()) return grpc::Status::OK;
  absl::string_view authorization;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find(common::kAuthorizationMetadataKey); it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  absl::Status status = policy->Authorize(method, authorization);
  if (!status.ok()) return common::ToGrpcStatus(status);
  return grpc::Status::OK;
}

}  // namespace bitsweep::server
