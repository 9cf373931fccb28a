// bitsweep_store_ingest: curve points ingested per second by the server's store, the way
// ReportProgress stores them (one transaction per report, fencing check included), from
// several concurrent "workers" on one writer connection. Prints one JSON line.
//
//   bitsweep_store_ingest [--workers N] [--batch B] [--points P] [--db FILE]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "server/scheduler.h"
#include "server/trial_store.h"

namespace {

struct Args {
  int workers = 4;
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
  return args->workers > 0 && args->batch > 0 && args->points > 0 && argc % 2 == 1;
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
    std::fprintf(stderr, "usage: %s [--workers N] [--batch B] [--points P] [--db FILE]\n", argv[0]);
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
  Scheduler scheduler(store->get(), clock, SchedulerOptions{.lease_timeout_ms = 600'000});
  v1::SweepSpec spec;
  spec.set_name("ingest");
  std::vector<PlannedTrial> trials(static_cast<size_t>(args.workers));
  for (int i = 0; i < args.workers; ++i) trials[i].config.set_seed(static_cast<uint64_t>(i));
  if (!(*store)->CreateSweep(spec, trials, clock->NowUnixMs()).ok()) return 1;
  std::vector<v1::TrialRef> refs;
  for (int i = 0; i < args.workers; ++i) {
    std::string worker = "w" + std::to_string(i);
    if (!scheduler.RegisterWorker({worker, "inc", "bench", 1}).ok()) return 1;
    auto leased = scheduler.LeaseTrial(worker, "inc");
    if (!leased.ok() || !leased->has_value()) return 1;
    v1::TrialRef& ref = refs.emplace_back();
    ref.set_trial_id((*leased)->trial_id);
    ref.set_attempt((*leased)->attempt);
  }
  (*store)->set_max_curve_points_per_trial(args.points + args.batch);
  const int64_t per_worker = args.points / args.workers;
  const int64_t reports = per_worker / args.batch;
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  std::vector<int> errors(static_cast<size_t>(args.workers), 0);
  for (int w = 0; w < args.workers; ++w) {
    threads.emplace_back([&, w] {
      const std::string worker = "w" + std::to_string(w);
      std::vector<v1::CurvePoint> points(static_cast<size_t>(args.batch));
      for (int64_t r = 0; r < reports; ++r) {
        for (int i = 0; i < args.batch; ++i) {
          v1::CurvePoint& point = points[static_cast<size_t>(i)];
          point.set_iteration(r * args.batch + i);
          point.set_epoch(0.001 * static_cast<double>(r));
          point.set_train_loss(1.0 / static_cast<double>(r + 1));
          point.set_test_accuracy(0.5);
        }
        if (!scheduler.ReportProgress(worker, refs[static_cast<size_t>(w)], points).ok()) {
          ++errors[static_cast<size_t>(w)];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t stored = 0;
  for (const v1::TrialRef& ref : refs) {
    auto curve = (*store)->GetCurve(ref.trial_id());
    if (curve.ok()) stored += static_cast<int64_t>(curve->size());
  }
  int total_errors = 0;
  for (int e : errors) total_errors += e;
  std::printf(
      "{\"figure\": \"curve_points_ingested_per_s\", \"value\": %.0f, \"workers\": %d, "
      "\"batch\": %d, \"points\": %lld, \"seconds\": %.3f, \"reports_per_s\": %.0f, "
      "\"errors\": %d}\n",
      static_cast<double>(stored) / seconds, args.workers, args.batch,
      static_cast<long long>(stored), seconds,
      static_cast<double>(reports * args.workers) / seconds, total_errors);
  store->reset();
  if (!dir.empty()) std::filesystem::remove_all(dir);
  return total_errors == 0 && stored == reports * args.batch * args.workers ? 0 : 1;
}
