// bitsweep_store_ingest: curve points ingested per second by the server's store, the way
// ReportProgress stores them (one transaction per report, fencing check included), from
// several concurrent "workers" on one writer connection; and the memory the store takes with
// many trials and points stored (DESIGN §12: 100,000 trials and 10 M points).
//
//   bitsweep_store_ingest [--workers N] [--trials T] [--batch B] [--points P] [--db FILE]
//
// One sweep of T trials (default: one per worker). Each worker leases trials until none is
// left, reports P / T points per trial in reports of B points, and completes the trial. Prints
// one line per figure: `name value unit`. Exit code 1 when a call failed or a count is wrong.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "server/scheduler.h"
#include "server/trial_store.h"

namespace {

struct Args {
  int workers = 4;
  int64_t trials = 0;  // 0: one per worker
  int batch = 100;
  int64_t points = 400'000;
  std::string db;
};

bool Parse(int argc, char** argv, Args* args) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--workers") {
      args->workers = std::atoi(value);
    } else if (flag == "--trials") {
      args->trials = std::atoll(value);
    } else if (flag == "--batch") {
      args->batch = std::atoi(value);
    } else if (flag == "--points") {
      args->points = std::atoll(value);
    } else if (flag == "--db") {
      args->db = value;
    } else {
      return false;
    }
  }
  if (args->trials == 0) args->trials = args->workers;
  return args->workers > 0 && args->trials > 0 && args->batch > 0 && args->points >= args->trials &&
         argc % 2 == 1;
}

// A field of /proc/self/status in MiB (VmHWM: peak RSS, VmRSS: current).
double StatusMiB(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  }
  return 0;
}

void Print(const std::string& name, double value, const std::string& unit) {
  std::printf("%-44s %14.2f %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  using bitsweep::server::LeasedTrial;
  using bitsweep::server::PlannedTrial;
  using bitsweep::server::Scheduler;
  using bitsweep::server::SchedulerOptions;
  using bitsweep::server::TrialStore;
  namespace v1 = bitsweep::v1;
  Args args;
  if (!Parse(argc, argv, &args)) {
    std::fprintf(stderr,
                 "usage: %s [--workers N] [--trials T] [--batch B] [--points P >= T] [--db FILE]\n",
                 argv[0]);
    return 2;
  }
  std::filesystem::path dir;
  if (args.db.empty()) {
    dir = std::filesystem::temp_directory_path() /
          ("bitsweep-ingest-" + std::to_string(static_cast<long>(getpid())));
    std::filesystem::create_directories(dir);
    args.db = (dir / "ingest.db").string();
  }
  auto store = TrialStore::Open(args.db);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  const bitsweep::common::Clock* clock = bitsweep::common::SystemClock::Get();
  Scheduler scheduler(store->get(), clock, SchedulerOptions{.lease_timeout_ms = 3'600'000});
  v1::SweepSpec spec;
  spec.set_name("ingest");
  std::vector<PlannedTrial> trials(static_cast<size_t>(args.trials));
  for (int64_t i = 0; i < args.trials; ++i) {
    trials[static_cast<size_t>(i)].config.set_seed(static_cast<uint64_t>(i));
    trials[static_cast<size_t>(i)].config_hash = "ingest-" + std::to_string(i);
  }
  if (!(*store)->CreateSweep(spec, trials, clock->NowUnixMs()).ok()) return 1;
  for (int w = 0; w < args.workers; ++w) {
    if (!scheduler.RegisterWorker({"w" + std::to_string(w), "inc", "bench", 1}).ok()) return 1;
  }
  const int64_t per_trial = args.points / args.trials;
  (*store)->set_max_curve_points_per_trial(per_trial + args.batch);
  std::atomic<int64_t> reports{0};
  std::atomic<int64_t> finished{0};
  std::atomic<int> errors{0};
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < args.workers; ++w) {
    threads.emplace_back([&, w] {
      const std::string worker = "w" + std::to_string(w);
      std::vector<v1::CurvePoint> points;
      while (true) {
        auto leased = scheduler.LeaseTrial(worker, "inc");
        if (!leased.ok()) ++errors;
        if (!leased.ok() || !leased->has_value()) return;
        v1::TrialRef ref;
        ref.set_trial_id((*leased)->trial_id);
        ref.set_attempt((*leased)->attempt);
        for (int64_t first = 0; first < per_trial; first += args.batch) {
          points.resize(static_cast<size_t>(std::min<int64_t>(args.batch, per_trial - first)));
          for (size_t i = 0; i < points.size(); ++i) {
            const int64_t iteration = first + static_cast<int64_t>(i);
            v1::CurvePoint& point = points[i];
            point.set_iteration(iteration);
            point.set_epoch(0.001 * static_cast<double>(iteration));
            point.set_train_loss(1.0 / static_cast<double>(iteration + 1));
            point.set_test_accuracy(0.5);
          }
          if (!scheduler.ReportProgress(worker, ref, points).ok()) ++errors;
          ++reports;
        }
        v1::TrialResult result;
        result.set_outcome(v1::TRIAL_OUTCOME_COMPLETED);
        if (!scheduler.CompleteTrial(worker, ref, &result, "").ok()) ++errors;
        ++finished;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Stored counts from the database, not from what was sent.
  auto sweep = (*store)->GetSweep(1);
  int64_t stored = 0;
  for (int64_t id = 1; id <= std::min<int64_t>(args.trials, 4); ++id) {
    auto curve = (*store)->GetCurve(id);
    if (curve.ok()) stored += static_cast<int64_t>(curve->size());
  }
  const bool counts_ok = sweep.ok() && sweep->counts().done() == args.trials &&
                         stored == per_trial * std::min<int64_t>(args.trials, 4);
  const int64_t ingested = per_trial * args.trials;
  Print("store.workers", args.workers, "threads");
  Print("store.trials", static_cast<double>(args.trials), "trials");
  Print("store.curve_points", static_cast<double>(ingested), "points");
  Print("store.seconds", seconds, "s");
  Print("store.curve_points_per_second", static_cast<double>(ingested) / seconds, "points/s");
  Print("store.reports_per_second", static_cast<double>(reports.load()) / seconds, "reports/s");
  Print("store.trials_per_second", static_cast<double>(finished.load()) / seconds, "trials/s");
  Print("store.peak_rss", StatusMiB("VmHWM"), "MiB");
  Print("store.rss_after", StatusMiB("VmRSS"), "MiB");
  std::error_code no_wal;
  const uintmax_t wal_bytes = std::filesystem::file_size(args.db + "-wal", no_wal);
  Print("store.db_size",
        static_cast<double>(std::filesystem::file_size(args.db) + (no_wal ? 0 : wal_bytes)) /
            (1 << 20),
        "MiB");
  store->reset();
  if (!dir.empty()) std::filesystem::remove_all(dir);
  if (errors.load() != 0 || !counts_ok) {
    std::fprintf(stderr, "%d calls failed; counts %s\n", errors.load(), counts_ok ? "ok" : "wrong");
    return 1;
  }
  return 0;
}
