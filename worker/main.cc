// bitsweep-worker: connects to bitsweep-server, leases trials, trains them, streams curves.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/bearer_token.h"
#include "common/build_info.h"
#include "common/channel_security.h"
#include "common/logging.h"
#include "worker/dataset_cache.h"
#include "worker/grpc_coordinator.h"
#include "worker/shutdown.h"
#include "worker/signal_watcher.h"
#include "worker/trial_runner.h"
#include "worker/worker_agent.h"

namespace {

// Running trials stop within an iteration, then upload their latest checkpoint and are
// released; a server that does not answer should not hold the process hostage beyond this.
constexpr std::chrono::seconds kShutdownGrace{5};
// Curve points closer together than this share one ReportProgress (fast simulated trials);
// a real trial's points are seconds apart and each goes at once.
constexpr std::chrono::milliseconds kMinReportInterval{50};

std::string HostName() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof(buffer) - 1) != 0) return "localhost";
  return buffer;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil is built without NDEBUG, so every absl::Mutex lock (gRPC takes several per
  // call) also maintains a lock graph for deadlock detection: a few percent of the CPU of
  // every RPC, for a check meant for debug builds.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  using namespace bitsweep;  // NOLINT: main only.

  const char* env_server = std::getenv("BITSWEEP_SERVER");
  std::string server = env_server && *env_server ? env_server : "127.0.0.1:50051";
  int slots = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string data_dir = "var/data";
  const std::string host = HostName();
  std::string worker_id = host + "-" + std::to_string(getpid());
  std::string log_level = "info";
  std::string log_format = "text";
  int64_t max_trials = 0;
  int threads_per_slot = 1;

  CLI::App app{"bitsweep-worker: leases trials from a bitsweep-server and trains them"};
  app.set_version_flag("--version", common::VersionLine("bitsweep-worker"));
  app.add_option("--server", server, "Server address host:port (env BITSWEEP_SERVER)")
      ->capture_default_str();
  app.add_option("--slots", slots, "Trials run in parallel")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--threads-per-slot", threads_per_slot, "Trainer threads of each slot")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--data-dir", data_dir, "Directory holding mnist/, fashion-mnist/, ...")
      ->capture_default_str();
  app.add_option("--worker-id", worker_id, "Stable name of this worker (default <host>-<pid>)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text|json (json: one JSON object per line)")
      ->capture_default_str();
  app.add_option("--max-trials", max_trials, "Exit after running this many trials (0 = no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  std::string token_file;
  common::ChannelSecurity security;
  app.add_option("--token-file", token_file,
                 "File holding the worker bearer token (else env BITSWEEP_TOKEN)");
  app.add_option("--tls-ca", security.tls_ca_file, "CA certificate (PEM): connect with TLS");
  app.add_option("--tls-cert", security.tls_cert_file, "Client certificate (PEM) for mutual TLS");
  app.add_option("--tls-key", security.tls_key_file, "Client private key (PEM) for mutual TLS");
  CLI11_PARSE(app, argc, argv);

  common::LogFormat parsed_log_format = common::LogFormat::kText;
  absl::Status logging = common::ParseLogFormat(log_format, &parsed_log_format);
  if (logging.ok()) {
    logging = common::SetupLogging("bitsweep-worker", log_level, parsed_log_format);
  }
  if (!logging.ok()) {
    std::cerr << "bitsweep-worker: " << logging.message() << "\n";
    return 2;
  }
  spdlog::info("{}", common::VersionLine("bitsweep-worker"));

  worker::ShutdownNotifier shutdown;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;                                              // Guarded by mu.
  bool forced = false;                                            // Guarded by mu.
  std::optional<std::chrono::steady_clock::time_point> deadline;  // Guarded by mu.
  worker::WorkerAgent* agent_for_signals = nullptr;               // Guarded by mu.

  // Before any thread exists (gRPC starts its own), so that every thread inherits the mask.
  worker::SignalWatcher signals([&](int signal_number) {
    {
      // Under mu so that main cannot destroy the agent meanwhile; Shutdown() only notifies.
      std::lock_guard<std::mutex> lock(mu);
      spdlog::info("received signal {}: {}", signal_number,
                   deadline ? "exiting now" : "stopping (again to exit now)");
      if (deadline) {
        forced = true;
      } else {
        deadline = std::chrono::steady_clock::now() + kShutdownGrace;
        if (agent_for_signals) {
          agent_for_signals->Shutdown();
        } else {
          shutdown.Notify();
        }
      }
    }
    cv.notify_all();
  });

  absl::StatusOr<std::string> token =
      common::LoadToken("--token-file", token_file, "BITSWEEP_TOKEN");
  if (!token.ok()) {
    spdlog::error("{}", std::string(token.status().message()));
    return 2;
  }
  security.token = *token;
  absl::StatusOr<std::unique_ptr<worker::GrpcCoordinator>> connected =
      worker::GrpcCoordinator::Connect(server, security);
  if (!connected.ok()) {
    spdlog::error("{}", std::string(connected.status().message()));
    return 2;
  }
  std::unique_ptr<worker::GrpcCoordinator> coordinator = std::move(*connected);
  worker::DatasetCache datasets(data_dir);
  worker::TrialRunner runner(worker_id, coordinator.get(), &datasets, &shutdown,
                             /*train=*/nullptr, worker::BackoffOptions{}, threads_per_slot,
                             kMinReportInterval);
  worker::WorkerOptions options;
  options.worker_id = worker_id;
  options.host = host;
  options.slots = slots;
  options.threads_per_slot = threads_per_slot;
  options.max_trials = max_trials;
  worker::WorkerAgent agent(options, coordinator.get(), &runner, &shutdown);
  {
    std::lock_guard<std::mutex> lock(mu);
    agent_for_signals = &agent;
    if (deadline) agent.Shutdown();  // A signal came while we were setting up.
  }
  spdlog::info(
      "bitsweep-worker {} starting: server {}, {} slots x {} threads, incarnation {}, "
      "data dir {}",
      worker_id, server, slots, threads_per_slot, agent.incarnation(), data_dir);

  absl::Status status;
  std::thread serve([&] {
    status = agent.Run();
    {
      std::lock_guard<std::mutex> lock(mu);
      done = true;
    }
    cv.notify_all();
  });

  {
    std::unique_lock<std::mutex> lock(mu);
    while (!done && !forced) {
      if (deadline) {
        if (cv.wait_until(lock, *deadline) == std::cv_status::timeout && !done) break;
      } else {
        cv.wait(lock);
      }
    }
    if (!done) {
      if (!forced) {
        spdlog::warn("trials did not stop within {}s: exiting now", kShutdownGrace.count());
      }
      spdlog::default_logger()->flush();
      std::_Exit(0);
    }
  }
  serve.join();
  {
    // The watcher outlives the agent: a late signal must not reach it.
    std::lock_guard<std::mutex> lock(mu);
    agent_for_signals = nullptr;
  }
  if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
    spdlog::error("{}", status.ToString());
    return 1;
  }
  return 0;
}
