#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

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
  std::string http_host;
  int http_port = 0;
  if (!options.http_address.empty()) {
    RETURN_IF_ERROR(ParseHostPort(options.http_address, &http_host, &http_port));
  }
  const common::Clock* clock =
      options.clock != nullptr ? options.clock : common::SystemClock::Get();

  ASSIGN_OR_RETURN(store_, TrialStore::Open(options.db_path));
  scheduler_ = std::make_unique<Scheduler>(
      store_.get(), clock, SchedulerOptions{options.lease_timeout_ms, options.max_attempts});
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
  expander_ = std::make_unique<SweepExpander>(SweepExpanderOptions{options.max_trials});
  sweep_service_ =
      std::make_unique<SweepService>(store_.get(), scheduler_.get(), expander_.get(), clock);
  worker_service_ = std::make_unique<WorkerService>(store_.get(), scheduler_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Without this, gRPC's SO_REUSEPORT lets a second server bind a port already in use.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddListeningPort(options.grpc_address, grpc::InsecureServerCredentials(), &grpc_port_);
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
    http_ = std::make_unique<HttpServer>(store_.get(), scheduler_.get());
    absl::Status status = http_->Start(http_host, http_port);
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
  scheduler_.reset();
  expander_.reset();
  store_.reset();
}

}  // namespace bitsweep::server
