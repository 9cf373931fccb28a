// bitsweep-server: the coordinator (DESIGN §1). Flags, logging, signals; everything else is
// in Server.
#include <grpc/support/log.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <tuple>

#include "absl/synchronization/mutex.h"
#include "common/bearer_token.h"
#include "common/build_info.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"
#include "server/server.h"

namespace {

// Writes the ports atomically (temp file, then rename): readers see all or nothing.
bool WritePortFile(const std::string& path, int grpc_port, int http_port, std::string* error) {
  std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << nlohmann::json{{"grpc_port", grpc_port}, {"http_port", http_port}}.dump() << "\n";
    if (!out) {
      *error = "cannot write " + temp;
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    *error = "cannot rename " + temp + " to " + path + ": " + ec.message();
    return false;
  }
  return true;
}

// gRPC core's own log lines go to debug: the failures that matter reach us as statuses and
// are logged once, as one clear line.
void ForwardGrpcLog(gpr_log_func_args* args) {
  spdlog::debug("grpc: {} ({}:{})", args->message, args->file, args->line);
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil is built without NDEBUG, so every absl::Mutex lock (gRPC takes several per
  // call) also maintains a lock graph for deadlock detection: a few percent of the CPU of
  // every RPC, for a check meant for debug builds.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  bitsweep::server::ServerOptions options;
  std::string port_file;
  std::string log_level = "info";
  std::string log_format = "text";
  CLI::App app{"bitsweep-server: coordinates precision sweeps over workers"};
  app.set_version_flag("--version", bitsweep::common::VersionLine("bitsweep-server"));
  app.add_option("--listen", options.grpc_address, "gRPC address host:port (port 0: any)")
      ->capture_default_str();
  app.add_option("--http", options.http_address,
                 "dashboard/JSON API address host:port (port 0: any; empty: off)")
      ->capture_default_str();
  app.add_option("--db", options.db_path, "SQLite database file (parent directory is created)")
      ->capture_default_str();
  app.add_option("--lease-timeout-ms", options.lease_timeout_ms,
                 "a trial lease not renewed by a heartbeat within this time is lost")
      ->capture_default_str();
  app.add_option("--max-trials", options.max_trials, "largest sweep accepted, in trials")
      ->capture_default_str();
  app.add_option("--max-attempts", options.max_attempts,
                 "leases a trial may lose (worker gone) before it fails")
      ->capture_default_str();
  app.add_option("--checkpoint-every", options.checkpoint_every,
                 "workers upload a checkpoint every this many evaluations (0: never)")
      ->capture_default_str();
  app.add_option("--port-file", port_file,
                 "once listening, write {\"grpc_port\": N, \"http_port\": M} to this file");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text|json (json: one JSON object per line)")
      ->capture_default_str();
  std::string worker_token_file;
  std::string client_token_file;
  app.add_option("--worker-token-file", worker_token_file,
                 "file holding the token workers must present (else env BITSWEEP_WORKER_TOKEN)");
  app.add_option("--client-token-file", client_token_file,
                 "file holding the token the CLI must present (else env BITSWEEP_CLIENT_TOKEN)");
  app.add_flag("--insecure-no-auth", options.insecure_no_auth,
               "allow a non-loopback --listen/--http without both tokens");
  app.add_option("--tls-cert", options.tls_cert_file, "server certificate chain (PEM): serve TLS");
  app.add_option("--tls-key", options.tls_key_file, "server private key (PEM)");
  app.add_option("--tls-client-ca", options.tls_client_ca_file,
                 "CA (PEM) for client certificates: require them (mutual TLS)");
  CLI11_PARSE(app, argc, argv);

  bitsweep::common::LogFormat parsed_log_format = bitsweep::common::LogFormat::kText;
  absl::Status logging = bitsweep::common::ParseLogFormat(log_format, &parsed_log_format);
  if (logging.ok()) {
    logging = bitsweep::common::SetupLogging("bitsweep-server", log_level, parsed_log_format);
  }
  if (!logging.ok()) {
    std::cerr << "bitsweep-server: " << std::string(logging.message()) << "\n";
    return 2;
  }
  spdlog::info("{}", bitsweep::common::VersionLine("bitsweep-server"));

  gpr_set_log_function(ForwardGrpcLog);

  // Tokens are secrets: read here, never logged.
  for (auto [flag, path, env, token] :
       {std::tuple{"--worker-token-file", &worker_token_file, "BITSWEEP_WORKER_TOKEN",
                   &options.worker_token},
        std::tuple{"--client-token-file", &client_token_file, "BITSWEEP_CLIENT_TOKEN",
                   &options.client_token}}) {
    absl::StatusOr<std::string> loaded = bitsweep::common::LoadToken(flag, *path, env);
    if (!loaded.ok()) {
      spdlog::error("{}", std::string(loaded.status().message()));
      return 2;
    }
    *token = *std::move(loaded);
  }

  std::filesystem::path db_dir = std::filesystem::path(options.db_path).parent_path();
  if (!db_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(db_dir, ec);
    if (ec) {
      spdlog::error("--db {}: cannot create directory {}: {}", options.db_path, db_dir.string(),
                    ec.message());
      return 1;
    }
  }

  // Block the signals in every thread (gRPC and HTTP threads inherit the mask) and take them
  // synchronously below: no work happens inside a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  bitsweep::server::Server server;
  if (absl::Status status = server.Start(options); !status.ok()) {
    spdlog::error("cannot start: {}", std::string(status.message()));
    return 1;
  }
  spdlog::info("gRPC listening on port {} ({}), HTTP on port {} ({}), database {}",
               server.grpc_port(), options.grpc_address, server.http_port(), options.http_address,
               options.db_path);
  if (!port_file.empty()) {
    std::string error;
    if (!WritePortFile(port_file, server.grpc_port(), server.http_port(), &error)) {
      spdlog::error("--port-file: {}", error);
      server.Shutdown();
      return 1;
    }
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("signal {}: shutting down", signal_number);
  server.Shutdown();
  spdlog::info("stopped");
  return 0;
}
