#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/channel_security.h"
#include "common/status_macros.h"
#include "server/auth_policy.h"

namespace bitsweep::server {

absl::Status ParseHostPort(const std::string& address, std::string* host, int* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("address '", address, "' is not host:port"));
  }
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  std::string port_text = address.substr(colon + 1);
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), *port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || *port < 0 ||
      *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("address '", address, "': bad port"));
  }
  return absl::OkStatus();
}

namespace {

// Plaintext, or TLS when a certificate is configured (with client certificates required and
// verified when a client CA is). Errors: InvalidArgument (incomplete TLS options), NotFound
// (unreadable PEM file).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (options.tls_cert_file.empty()) {
    if (!options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, common::ReadPemFile("--tls-cert", options.tls_cert_file));
  ASSIGN_OR_RETURN(pair.private_key, common::ReadPemFile("--tls-key", options.tls_key_file));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!options.tls_client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     common::ReadPemFile("--tls-client-ca", options.tls_client_ca_file));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

Server::Server() = default;

Server::~Server() { Shutdown(); }

absl::Status Server::Start(const ServerOptions& options) {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return absl::FailedPreconditionError("server already started");
  if (options.lease_timeout_ms < 100) {
    return absl::InvalidArgumentError("--lease-timeout-ms: must be at least 100");
  }
  if (options.max_trials < 1) return absl::InvalidArgumentError("--max-trials: must be >= 1");
  if (options.max_attempts < 1) return absl::InvalidArgumentError("max_attempts: must be >= 1");
  if (options.checkpoint_every < 0) {
    return absl::InvalidArgumentError("--checkpoint-every: must be >= 0 (0: never)");
  }
  std::string http_host;
  int http_port = 0;
  if (!options.http_address.empty()) {
    RETURN_IF_ERROR(ParseHostPort(options.http_address, &http_host, &http_port));
  }
  RETURN_IF_ERROR(ValidateTokens(options.worker_token, options.client_token));
  const bool have_worker_token = !options.worker_token.empty();
  const bool have_client_token = !options.client_token.empty();
  RETURN_IF_ERROR(CheckExposure("--listen", options.grpc_address, have_worker_token,
                                have_client_token, options.insecure_no_auth));
  RETURN_IF_ERROR(CheckExposure("--http", options.http_address, have_worker_token,
                                have_client_token, options.insecure_no_auth));
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   MakeServerCredentials(options));
  const common::Clock* clock =
      options.clock != nullptr ? options.clock : common::SystemClock::Get();

  ASSIGN_OR_RETURN(store_, TrialStore::Open(options.db_path));
  store_->set_max_curve_points_per_trial(options.max_curve_points_per_trial);
  expander_ = std::make_unique<SweepExpander>(SweepExpanderOptions{options.max_trials});
  scheduler_ =
      std::make_unique<Scheduler>(store_.get(), clock,
                                  SchedulerOptions{.lease_timeout_ms = options.lease_timeout_ms,
                                                   .max_attempts = options.max_attempts,
                                                   .metrics = &metrics_,
                                                   .checkpoint_every = options.checkpoint_every,
                                                   .expander = expander_.get()});
  // Workers that ran trials before a restart reconnect and re-attach them (DESIGN §7).
  absl::StatusOr<int> graced = scheduler_->GraceRunningLeases();
  if (!graced.ok()) {
    store_.reset();
    return graced.status();
  }
  if (*graced > 0) {
    spdlog::info(
        "{} trial(s) were running before the restart: their workers have {} ms to "
        "re-attach",
        *graced, options.lease_timeout_ms);
  }
  auth_policy_ = std::make_unique<AuthPolicy>(options.worker_token, options.client_token);
  sweep_service_ = std::make_unique<SweepService>(store_.get(), scheduler_.get(), expander_.get(),
                                                  clock, auth_policy_.get());
  sweep_service_->set_max_watch_streams_per_peer(options.max_watch_streams_per_peer);
  worker_service_ =
      std::make_unique<WorkerService>(store_.get(), scheduler_.get(), auth_policy_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Without this, gRPC's SO_REUSEPORT lets a second server bind a port already in use.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddListeningPort(options.grpc_address, credentials, &grpc_port_);
  {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(MakeRpcMetricsInterceptorFactory(&metrics_));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  builder.RegisterService(sweep_service_.get());
  builder.RegisterService(worker_service_.get());
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || grpc_port_ == 0) {
    std::string address = options.grpc_address;
    grpc_server_.reset();
    store_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", address, " (address in use or invalid?)"));
  }

  if (!options.http_address.empty()) {
    http_ = std::make_unique<HttpServer>(store_.get(), scheduler_.get(), &metrics_,
                                         options.tls_cert_file, options.tls_key_file);
    absl::Status status = http_->AttachDatabase(options.db_path, options.clock);
    if (status.ok()) status = http_->Start(http_host, http_port);
    if (!status.ok()) {
      store_->changes().Shutdown();
      grpc_server_->Shutdown();
      grpc_server_.reset();
      http_.reset();
      store_.reset();
      return status;
    }
  }
  reaper_ = std::make_unique<LeaseReaper>(scheduler_.get(),
                                          std::chrono::milliseconds(options.expiry_interval_ms));
  started_ = true;
  return absl::OkStatus();
}

void Server::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!started_) return;
  started_ = false;
  // Wake long polls and watch streams first so that gRPC's shutdown does not wait on them.
  store_->changes().Shutdown();
  grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc_server_->Wait();
  if (http_ != nullptr) http_->Stop();
  reaper_->Stop();
  reaper_.reset();
  grpc_server_.reset();
  http_.reset();
  sweep_service_.reset();
  worker_service_.reset();
  auth_policy_.reset();
  scheduler_.reset();
  expander_.reset();
  store_.reset();
}

}  // namespace bitsweep::server
