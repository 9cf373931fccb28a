// Orchestration benchmark (DESIGN §12, issue 9): a real bitsweep-server (temp SQLite database)
// and W workers x S slots as child processes on loopback, simulated trials (no training).
//
//   1. idle-slot latency: with every slot idle, `--probes` one-trial sweeps one after another;
//      queued -> running = the trial's started time - its sweep's created time (the store's
//      millisecond timestamps).
//   2. throughput: one sweep of `--trials` simulated trials of `--points` points, no wait
//      between points; trials/s and curve points/s from submit to the last result, the
//      queue wait of that batch, and the server's CPU seconds and peak RSS (/proc).
//
// Prints one line per figure: `name value unit`. Exit code 1 when a run did not finish or a
// count is wrong (the figures are then not meaningful).
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/cluster.h"

namespace {

using bitsweep::e2e::Cluster;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct ProcessStats {
  double cpu_seconds = 0;
  double peak_rss_mib = 0;
};

// utime + stime from /proc/PID/stat, VmHWM from /proc/PID/status.
ProcessStats ReadProcessStats(pid_t pid) {
  ProcessStats stats;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const size_t paren = text.rfind(')');
  if (paren != std::string::npos) {
    std::istringstream fields(text.substr(paren + 2));
    std::vector<std::string> values;
    std::string value;
    while (fields >> value) values.push_back(value);
    // state is field 3, utime 14, stime 15 (1-based): indices 11 and 12 here.
    if (values.size() > 12) {
      const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      stats.cpu_seconds = (std::stod(values[11]) + std::stod(values[12])) / ticks;
    }
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) stats.peak_rss_mib = std::stod(line.substr(6)) / 1024.0;
  }
  return stats;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(
      values.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(values.size())));
  return values[index];
}

// started_ms - sweeps.created_ms of every started trial of the sweeps in `sweep_ids_sql`
// (an SQL list), read from the database.
std::vector<double> QueueWaits(const std::string& db_path, const std::string& where) {
  std::vector<double> waits;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::cerr << "cannot open " << db_path << "\n";
    sqlite3_close(db);
    return waits;
  }
  const std::string sql =
      "SELECT t.started_ms - s.created_ms FROM trials t JOIN sweeps s ON s.id = t.sweep_id "
      "WHERE t.started_ms > 0 AND " +
      where;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK) {
    while (sqlite3_step(statement) == SQLITE_ROW) {
      waits.push_back(static_cast<double>(sqlite3_column_int64(statement, 0)));
    }
  } else {
    std::cerr << "query failed: " << sqlite3_errmsg(db) << "\n";
  }
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return waits;
}

void Print(const std::string& name, double value, const std::string& unit) {
  std::printf("%-44s %12.2f %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int trials = 10'000;
  int workers = 4;
  int slots = 4;
  int points = 10;
  int probes = 200;
  CLI::App app{"bitsweep orchestration benchmark: simulated trials through real processes"};
  app.add_option("--trials", trials, "Trials in the throughput sweep")->capture_default_str();
  app.add_option("--workers", workers, "Worker processes")->capture_default_str();
  app.add_option("--slots", slots, "Slots per worker")->capture_default_str();
  app.add_option("--points", points, "Curve points per trial")->capture_default_str();
  app.add_option("--probes", probes, "One-trial sweeps for the idle-slot latency")
      ->capture_default_str();
  int checkpoint_every = -1;
  app.add_option("--checkpoint-every", checkpoint_every,
                 "Server's --checkpoint-every (evaluations per checkpoint upload; -1: its default)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  absl::StatusOr<std::unique_ptr<Cluster>> created = Cluster::Create();
  if (!created.ok()) {
    std::cerr << created.status() << "\n";
    return 1;
  }
  Cluster& cluster = **created;
  cluster.set_log_levels("warn", "warn");
  std::vector<std::string> server_args;
  if (checkpoint_every >= 0) {
    server_args = {"--checkpoint-every", std::to_string(checkpoint_every)};
  }
  if (absl::Status started = cluster.StartServer(server_args); !started.ok()) {
    std::cerr << started << "\n";
    return 1;
  }
  const pid_t server_pid = cluster.server()->pid();
  for (int w = 0; w < workers; ++w) cluster.StartWorker("bench-" + std::to_string(w), slots);
  const bool registered =
      Cluster::WaitUntil([&] { return cluster.AliveWorkers() == workers; }, seconds(60));
  if (!registered) {
    std::cerr << "workers did not register\n";
    cluster.DumpLogs();
    return 1;
  }
  Print("orchestration.workers", workers, "processes");
  Print("orchestration.slots_per_worker", slots, "slots");
  Print("orchestration.points_per_trial", points, "points");
  Print("orchestration.checkpoint_every", checkpoint_every < 0 ? 5 : checkpoint_every, "points");

  // 1. Idle-slot latency.
  std::vector<int64_t> probe_sweeps;
  for (int i = 0; i < probes; ++i) {
    // A distinct config per probe (batch size i+1; the throughput sweep leaves it unset):
    // an identical config would be reused from the previous probe's result, never run.
    bitsweep::v1::SweepSpec probe =
        bitsweep::e2e::SimulatedSweep("probe-" + std::to_string(i), 1, 1, 0);
    bitsweep::v1::SweepParameter* batch = probe.add_parameters();
    batch->set_path("train.batch_size");
    batch->mutable_values()->add_values()->set_number_value(i + 1);
    absl::StatusOr<bitsweep::v1::SubmitSweepResponse> submitted = cluster.Submit(probe);
    if (!submitted.ok()) {
      std::cerr << submitted.status() << "\n";
      return 1;
    }
    if (submitted->reused() != 0) {
      std::cerr << "probe " << i << " was answered from a stored result, not run\n";
      return 1;
    }
    probe_sweeps.push_back(submitted->sweep_id());
    if (!cluster.WaitSweepFinished(submitted->sweep_id(), seconds(30))) {
      std::cerr << "probe " << i << " did not finish\n";
      cluster.DumpLogs();
      return 1;
    }
  }

  // 2. Throughput.
  bitsweep::v1::SweepSpec spec =
      bitsweep::e2e::SimulatedSweep("throughput", std::min(trials, 1000), points, 0);
  const int lr_values = (trials + 999) / 1000;
  if (trials > 1000) {
    spec.set_seeds(trials / lr_values);
    bitsweep::v1::SweepParameter* lr = spec.add_parameters();
    lr->set_path("train.lr");
    for (int i = 0; i < lr_values; ++i) {
      lr->mutable_values()->add_values()->set_number_value(0.01 * (i + 1));
    }
  }
  const ProcessStats before = ReadProcessStats(server_pid);
  const auto start = std::chrono::steady_clock::now();
  const int64_t start_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
  absl::StatusOr<bitsweep::v1::SubmitSweepResponse> submitted = cluster.Submit(spec);
  if (!submitted.ok()) {
    std::cerr << submitted.status() << "\n";
    return 1;
  }
  if (submitted->reused() != 0) {
    std::cerr << "throughput sweep: " << submitted->reused() << " results reused, not run\n";
    return 1;
  }
  const double submit_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t sweep_id = submitted->sweep_id();
  // Polled every 250 ms, not at Cluster's 20 ms: each GetSweep counts the sweep's 10,000 trials
  // on the server, and a watcher that costs the server CPU is not part of the workload (Optuna's
  // run has none). The run time comes from the server's own timestamps, so the coarse poll does
  // not lengthen it.
  bool finished = false;
  const auto deadline = std::chrono::steady_clock::now() + seconds(1800);
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    absl::StatusOr<bitsweep::v1::Sweep> polled = cluster.GetSweep(sweep_id);
    const bitsweep::v1::TrialCounts& c =
        polled.ok() ? polled->counts() : bitsweep::v1::TrialCounts();
    finished = c.total() > 0 && c.done() + c.failed() + c.cancelled() == c.total();
  }
  const ProcessStats after = ReadProcessStats(server_pid);
  absl::StatusOr<bitsweep::v1::Sweep> sweep = cluster.GetSweep(sweep_id);
  // From the submission to the sweep's finish as the server stamped it (one machine, one clock).
  const double run_seconds =
      sweep.ok() ? 1e-3 * static_cast<double>(sweep->finished_unix_ms() - start_unix_ms) : 0.0;
  if (!finished || !sweep.ok() || sweep->counts().done() != submitted->trial_count() ||
      run_seconds <= 0) {
    std::cerr << "throughput sweep did not finish cleanly: "
              << (sweep.ok() ? sweep->counts().DebugString() : sweep.status().ToString()) << "\n";
    cluster.DumpLogs();
    return 1;
  }
  const int done = sweep->counts().done();

  double workers_cpu_seconds = 0;
  double worker_peak_rss = 0;
  for (const pid_t pid : cluster.worker_pids()) {
    const ProcessStats stats = ReadProcessStats(pid);
    workers_cpu_seconds += stats.cpu_seconds;
    worker_peak_rss = std::max(worker_peak_rss, stats.peak_rss_mib);
  }
  if (cluster.StopServer() != 0) std::cerr << "warning: the server did not exit cleanly\n";

  std::string probe_list;
  for (int64_t id : probe_sweeps)
    probe_list += (probe_list.empty() ? "" : ",") + std::to_string(id);
  const std::vector<double> idle_waits =
      QueueWaits(cluster.db_path().string(), "s.id IN (" + probe_list + ")");
  const std::vector<double> batch_waits =
      QueueWaits(cluster.db_path().string(), "s.id = " + std::to_string(sweep_id));

  Print("orchestration.trials", done, "trials");
  Print("orchestration.submit_seconds", submit_seconds, "s");
  Print("orchestration.run_seconds", run_seconds, "s");
  Print("orchestration.trials_per_second", done / run_seconds, "trials/s");
  Print("orchestration.curve_points_per_second", static_cast<double>(done) * points / run_seconds,
        "points/s");
  Print("orchestration.idle_queued_to_running_p50", Percentile(idle_waits, 50), "ms");
  Print("orchestration.idle_queued_to_running_p99", Percentile(idle_waits, 99), "ms");
  Print("orchestration.batch_queue_wait_p50", Percentile(batch_waits, 50), "ms");
  Print("orchestration.batch_queue_wait_p99", Percentile(batch_waits, 99), "ms");
  Print("orchestration.server_cpu_seconds", after.cpu_seconds - before.cpu_seconds, "s");
  Print("orchestration.server_cpu_per_trial", (after.cpu_seconds - before.cpu_seconds) / done * 1e6,
        "us");
  Print("orchestration.server_peak_rss", after.peak_rss_mib, "MiB");
  Print("orchestration.workers_cpu_seconds", workers_cpu_seconds, "s");
  Print("orchestration.worker_peak_rss", worker_peak_rss, "MiB");
  return 0;
}
