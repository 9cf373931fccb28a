// Fuzz target: the server's handling of arbitrary client and worker messages. Each input is a
// sequence of calls, framed as [selector][length: 2 bytes, little endian][serialized request];
// selector % kMethods picks the RPC, selector >= 128 first moves the clock 16 s on (leases
// expire). The bytes are parsed as that request type (as gRPC would) and handed to the
// SweepService / WorkerService implementations in-process, with no network, over a copy of a
// small seeded database: sweep 1 (4 trials), worker "w1" incarnation "i1" holding trial 1
// (attempt 1) with one curve point. Whatever the calls, nothing may crash, and afterwards the
// database must pass PRAGMA integrity_check and foreign_key_check.
//
// WatchSweep is left out: it is a stream that blocks until the sweep ends.
#include <SQLiteCpp/SQLiteCpp.h>
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "bitsweep/v1/sweep.grpc.pb.h"
#include "bitsweep/v1/worker.grpc.pb.h"
#include "common/clock.h"
#include "server/scheduler.h"
#include "server/sweep_expander.h"
#include "server/sweep_service.h"
#include "server/trial_store.h"
#include "server/worker_service.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = bitsweep::v1;
using bitsweep::server::Scheduler;
using bitsweep::server::SchedulerOptions;
using bitsweep::server::SweepExpander;
using bitsweep::server::SweepExpanderOptions;
using bitsweep::server::TrialStore;

constexpr int64_t kStartMs = 1'700'000'000'000;

void Check(bool condition) {
  if (!condition) abort();
}

// Everything one run needs, on a database file.
struct Services {
  explicit Services(const fs::path& db) : clock(kStartMs) {
    absl::StatusOr<std::unique_ptr<TrialStore>> opened = TrialStore::Open(db.string());
    Check(opened.ok());
    store = *std::move(opened);
    scheduler = std::make_unique<Scheduler>(store.get(), &clock, SchedulerOptions{});
    sweeps = std::make_unique<bitsweep::server::SweepService>(store.get(), scheduler.get(),
                                                              &expander, &clock);
    workers = std::make_unique<bitsweep::server::WorkerService>(store.get(), scheduler.get());
  }

  bitsweep::common::FakeClock clock;
  // Small: a run must stay fast; the limit check runs all the same.
  SweepExpander expander{SweepExpanderOptions{.max_trials = 200}};
  std::unique_ptr<TrialStore> store;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<bitsweep::server::SweepService> sweeps;
  std::unique_ptr<bitsweep::server::WorkerService> workers;
};

// Parses `bytes` as Request and calls `method` of `service` with it, as gRPC would.
template <typename Request, typename Response, typename Service, typename Method>
void Call(Service* service, Method method, const std::string& bytes) {
  Request request;
  if (!request.ParseFromString(bytes)) return;  // gRPC rejects it before the handler
  if constexpr (std::is_same_v<Request, v1::LeaseTrialRequest>) {
    request.set_wait_ms(0);  // a long poll would only wait on the fake clock's real twin
  }
  grpc::ServerContext context;
  Response response;
  (void)(service->*method)(&context, &request, &response);
}

using SweepBase = v1::SweepService::Service;
using WorkerBase = v1::WorkerService::Service;

constexpr int kMethods = 18;

void Dispatch(Services& s, int method, const std::string& bytes) {
  SweepBase* sw = s.sweeps.get();
  WorkerBase* wk = s.workers.get();
  switch (method) {
    case 0:
      return Call<v1::SubmitSweepRequest, v1::SubmitSweepResponse>(sw, &SweepBase::SubmitSweep,
                                                                   bytes);
    case 1:
      return Call<v1::GetSweepRequest, v1::Sweep>(sw, &SweepBase::GetSweep, bytes);
    case 2:
      return Call<v1::ListSweepsRequest, v1::ListSweepsResponse>(sw, &SweepBase::ListSweeps, bytes);
    case 3:
      return Call<v1::CancelSweepRequest, v1::Sweep>(sw, &SweepBase::CancelSweep, bytes);
    case 4:
      return Call<v1::ListTrialsRequest, v1::ListTrialsResponse>(sw, &SweepBase::ListTrials, bytes);
    case 5:
      return Call<v1::GetTrialRequest, v1::GetTrialResponse>(sw, &SweepBase::GetTrial, bytes);
    case 6:
      return Call<v1::ListWorkersRequest, v1::ListWorkersResponse>(sw, &SweepBase::ListWorkers,
                                                                   bytes);
    case 7:
      return Call<v1::PauseSweepRequest, v1::Sweep>(sw, &SweepBase::PauseSweep, bytes);
    case 8:
      return Call<v1::ResumeSweepRequest, v1::Sweep>(sw, &SweepBase::ResumeSweep, bytes);
    case 9:
      return Call<v1::RerunSweepRequest, v1::RerunSweepResponse>(sw, &SweepBase::RerunSweep, bytes);
    case 10:
      return Call<v1::CancelTrialRequest, v1::Trial>(sw, &SweepBase::CancelTrial, bytes);
    case 11:
      return Call<v1::RegisterWorkerRequest, v1::RegisterWorkerResponse>(
          wk, &WorkerBase::RegisterWorker, bytes);
    case 12:
      return Call<v1::LeaseTrialRequest, v1::LeaseTrialResponse>(wk, &WorkerBase::LeaseTrial,
                                                                 bytes);
    case 13:
      return Call<v1::HeartbeatRequest, v1::HeartbeatResponse>(wk, &WorkerBase::Heartbeat, bytes);
    case 14:
      return Call<v1::ReportProgressRequest, v1::ReportProgressResponse>(
          wk, &WorkerBase::ReportProgress, bytes);
    case 15:
      return Call<v1::CompleteTrialRequest, v1::CompleteTrialResponse>(
          wk, &WorkerBase::CompleteTrial, bytes);
    case 16:
      return Call<v1::UploadCheckpointRequest, v1::UploadCheckpointResponse>(
          wk, &WorkerBase::UploadCheckpoint, bytes);
    case 17:
      return Call<v1::ReleaseTrialRequest, v1::ReleaseTrialResponse>(wk, &WorkerBase::ReleaseTrial,
                                                                     bytes);
    default:
      abort();
  }
}

// The seeded template database and the per-run copy, in a private directory (memory-backed
// /dev/shm when there is one), removed at exit.
class Databases {
 public:
  Databases() {
    // Thousands of runs per second: no log lines (also none for invalid UTF-8 in strings).
    spdlog::set_level(spdlog::level::off);
    google::protobuf::SetLogHandler(nullptr);
    std::error_code ec;
    fs::path base = "/dev/shm";
    if (!fs::is_directory(base, ec)) base = fs::temp_directory_path();
    dir_ = base / ("bitsweep-fuzz-" + std::to_string(getpid()) + "-server");
    fs::remove_all(dir_, ec);
    Check(fs::create_directories(dir_, ec));
    Seed();
  }
  ~Databases() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  Databases(const Databases&) = delete;
  Databases& operator=(const Databases&) = delete;

  // A fresh copy of the template; returns its path.
  fs::path FreshCopy() const {
    const fs::path work = dir_ / "work.db";
    std::error_code ec;
    for (const char* suffix : {"-wal", "-shm", "-journal"}) {
      fs::remove(work.string() + suffix, ec);
    }
    fs::copy_file(dir_ / "template.db", work, fs::copy_options::overwrite_existing, ec);
    Check(!ec);
    return work;
  }

 private:
  void Seed() {
    Services s(dir_ / "template.db");
    v1::SweepSpec spec;
    spec.set_name("seed");
    spec.set_seeds(2);
    v1::SweepParameter* parameter = spec.add_parameters();
    parameter->set_path("train.batch_size");
    parameter->mutable_values()->add_values()->set_number_value(32);
    parameter->mutable_values()->add_values()->set_number_value(64);
    absl::StatusOr<std::vector<bitsweep::server::PlannedTrial>> trials = s.expander.Expand(spec);
    Check(trials.ok());
    Check(s.store->CreateSweep(spec, *trials, kStartMs).ok());
    Check(s.scheduler->RegisterWorker({"w1", "i1", "host", 2}).ok());
    absl::StatusOr<std::optional<bitsweep::server::LeasedTrial>> leased =
        s.scheduler->LeaseTrial("w1", "i1");
    Check(leased.ok() && leased->has_value());
    v1::TrialRef ref;
    ref.set_trial_id((*leased)->trial_id);
    ref.set_attempt((*leased)->attempt);
    v1::CurvePoint point;
    point.set_iteration(10);
    point.set_train_loss(2.0);
    Check(s.store->AppendPoints("w1", ref, {point}).ok());
  }

  fs::path dir_;
};

void CheckIntegrity(const fs::path& db) {
  SQLite::Database database(db.string(), SQLite::OPEN_READONLY);
  Check(database.execAndGet("PRAGMA integrity_check").getString() == "ok");
  SQLite::Statement violations(database, "PRAGMA foreign_key_check");
  Check(!violations.executeStep());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Databases databases;
  const fs::path db = databases.FreshCopy();
  {
    Services services(db);
    size_t at = 0;
    while (at + 3 <= size) {
      const uint8_t selector = data[at];
      size_t length = data[at + 1] | (size_t{data[at + 2]} << 8);
      at += 3;
      if (length > size - at) length = size - at;
      const std::string bytes(reinterpret_cast<const char*>(data + at), length);
      at += length;
      if (selector >= 128) services.clock.AdvanceMs(16'000);
      Dispatch(services, selector % kMethods, bytes);
    }
  }
  CheckIntegrity(db);
  return 0;
}
