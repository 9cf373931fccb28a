// TrialStore: the server's SQLite database (DESIGN §6). Every state change is one transaction
// on the single writer connection, with its checks (fencing, states) inside that transaction,
// so an accepted call has been stored and concurrent calls cannot interleave half-way.
// Dashboard reads use a second connection: in WAL mode they never block the writer.
// Policy (lease length, attempts) comes from the caller: see Scheduler.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "bitsweep/v1/sweep.pb.h"
#include "bitsweep/v1/worker.pb.h"
#include "server/change_notifier.h"
#include "server/planned_trial.h"

namespace SQLite {
class Database;
}

namespace bitsweep::server {

// A trial handed to a worker.
struct LeasedTrial {
  int64_t trial_id = 0;
  int64_t sweep_id = 0;
  int32_t attempt = 0;
  v1::TrialConfig config;
};

// What a Watch stream needs: the trials changed after a sequence number, and the new one.
struct TrialChanges {
  std::vector<v1::Trial> trials;
  int64_t last_seq = 0;
};

class TrialStore {
 public:
  // Opens (creating if needed) the database file at `path` and applies the embedded
  // migrations not yet applied (PRAGMA user_version). A file path is required: the read
  // connection must see the writer's data, which ":memory:" cannot do.
  // Errors: Unavailable (cannot open or create the file), Internal (a migration failed),
  // FailedPrecondition (the file's schema is newer than this binary).
  static absl::StatusOr<std::unique_ptr<TrialStore>> Open(const std::string& path);

  ~TrialStore();
  TrialStore(const TrialStore&) = delete;
  TrialStore& operator=(const TrialStore&) = delete;

  // Bumped after every committed write; waiters use it to notice changes.
  ChangeNotifier& changes() { return changes_; }

  // The schema version after migrations (number of the last applied NNNN_*.sql file).
  int schema_version() const { return schema_version_; }

  // --- Sweeps -----------------------------------------------------------------------------

  // Stores the sweep and all its trials (QUEUED) in one transaction. Returns the sweep id.
  // Errors: Internal (database error; nothing is stored).
  absl::StatusOr<int64_t> CreateSweep(const v1::SweepSpec& spec,
                                      const std::vector<PlannedTrial>& trials, int64_t now_ms);

  // Errors: NotFound (no such sweep), Internal.
  absl::StatusOr<v1::Sweep> GetSweep(int64_t sweep_id);
  // All sweeps, newest first. Errors: Internal.
  absl::StatusOr<std::vector<v1::Sweep>> ListSweeps();

  // Queued trials become CANCELLED; running ones become CANCELLED and keep their lease owner
  // so the worker is told to stop. Cancelling a finished sweep changes nothing.
  // Errors: NotFound (no such sweep), Internal.
  absl::Status CancelSweep(int64_t sweep_id, int64_t now_ms);

  // --- Trials -----------------------------------------------------------------------------

  // The sweep's trials in expansion order; configs are left out unless `with_config`.
  // Errors: NotFound (no such sweep), Internal.
  absl::StatusOr<std::vector<v1::Trial>> ListTrials(int64_t sweep_id, bool with_config);
  // Trials of the sweep whose state changed after `after_seq` (0: all), in expansion order;
  // configs are left out unless `with_config`. Errors: Internal.
  absl::StatusOr<TrialChanges> ListTrialsChangedSince(int64_t sweep_id, int64_t after_seq,
                                                      bool with_config);
  // Errors: NotFound (no such trial), Internal.
  absl::StatusOr<v1::Trial> GetTrial(int64_t trial_id);
  // The trial's curve by iteration. Errors: NotFound (no such trial), Internal.
  absl::StatusOr<std::vector<v1::CurvePoint>> GetCurve(int64_t trial_id);

  // --- Workers and leases -----------------------------------------------------------------

  // Records the worker. If it was known with another incarnation, that incarnation's
  // running trials are released at once (see ReleaseLease semantics in ExpireLeases).
  // Returns how many trials were released. Errors: Internal.
  absl::StatusOr<int> RegisterWorker(const std::string& worker_id, const std::string& incarnation,
                                     const std::string& host, int32_t slots, int64_t now_ms,
                                     int max_attempts);

  // Whether any active sweep has a queued trial: a cheap read (no write transaction) for
  // long polls woken by unrelated changes. Errors: Internal.
  absl::StatusOr<bool> HasQueuedTrials();

  // Records a sign of life of the worker. Errors: NotFound (worker or incarnation not
  // registered), Internal.
  absl::Status TouchWorker(const std::string& worker_id, const std::string& incarnation,
                           int64_t now_ms);

  // Leases the next queued trial: highest sweep priority, then oldest sweep, then trial index.
  // It becomes RUNNING with attempt+1, owned by the worker until `lease_expires_ms`.
  // Returns nullopt when nothing is queued. Errors: Internal.
  absl::StatusOr<std::optional<LeasedTrial>> LeaseNext(const std::string& worker_id, int64_t now_ms,
                                                       int64_t lease_expires_ms);

  // Records the heartbeat and extends the leases of the listed trials still RUNNING for this
  // worker and attempt. Returns the listed trials the worker must stop (cancelled, finished,
  // unknown, or leased to someone else / another attempt).
  // Errors: NotFound (worker or incarnation not registered), Internal.
  absl::StatusOr<std::vector<v1::TrialRef>> Heartbeat(const std::string& worker_id,
                                                      const std::string& incarnation,
                                                      const std::vector<v1::TrialRef>& running,
                                                      int64_t now_ms, int64_t lease_expires_ms);

  // Stores curve points (a point re-sent for the same iteration replaces the old one).
  // Returns true when the trial was cancelled and the worker must stop (points are then
  // dropped). Errors: NotFound (no such trial), FailedPrecondition (stale attempt, trial not
  // leased to this worker, or not running), ResourceExhausted (the trial would hold more than
  // max_curve_points_per_trial points; nothing of the call is stored), Internal.
  absl::StatusOr<bool> AppendPoints(const std::string& worker_id, const v1::TrialRef& ref,
                                    const std::vector<v1::CurvePoint>& points);

  // A misbehaving worker must not fill the disk through one trial (DESIGN §9). Set before
  // serving; default kDefaultMaxCurvePointsPerTrial.
  static constexpr int64_t kDefaultMaxCurvePointsPerTrial = 1'000'000;
  void set_max_curve_points_per_trial(int64_t limit) { max_curve_points_per_trial_ = limit; }

  // Finishes the trial: DONE with `result`, or FAILED with `error` when result is null.
  // A trial cancelled while running accepts its completion and stays CANCELLED.
  // Errors: NotFound, FailedPrecondition (as AppendPoints), Internal.
  absl::Status CompleteTrial(const std::string& worker_id, const v1::TrialRef& ref,
                             const v1::TrialResult* result, const std::string& error,
                             int64_t now_ms);

  // Every RUNNING trial whose lease expired before `now_ms` is requeued (attempt kept: the
  // next lease increments it) if attempt < max_attempts, else FAILED with
  // "lease expired N times (worker lost)". Returns how many trials were affected.
  // Errors: Internal.
  absl::StatusOr<int> ExpireLeases(int64_t now_ms, int max_attempts);

  // Moves every RUNNING lease expiring before `min_expires_ms` to it. Used at server start:
  // workers get one lease period to reconnect and re-attach their trials after a restart.
  // Returns how many leases moved. Errors: Internal.
  absl::StatusOr<int> ExtendRunningLeases(int64_t min_expires_ms);

  // All registered workers with `running` filled in; `alive` is left to the caller.
  // Errors: Internal.
  absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers();

 private:
  TrialStore(std::unique_ptr<SQLite::Database> writer, std::unique_ptr<SQLite::Database> reader,
             int schema_version, int64_t last_seq);

  struct RunningTrial {
    int64_t id = 0;
    int32_t attempt = 0;
    int64_t sweep_id = 0;
  };
  // Requeues each trial (attempt kept) if attempt < max_attempts, else fails it with
  // "<reason> N times (worker lost)". Caller holds write_mu_ inside a transaction.
  void ReleaseTrials(const std::vector<RunningTrial>& trials, int64_t now_ms, int max_attempts,
                     const std::string& reason);
  // Derives the sweep's state from its trials (QUEUED, RUNNING, DONE); CANCELLED stays.
  // Caller holds write_mu_ inside a transaction.
  void UpdateSweepState(int64_t sweep_id, int64_t now_ms);
  int64_t NextSeq() { return ++last_seq_; }

  // Guards writer_ and last_seq_: the single writer connection serialises all writes.
  std::mutex write_mu_;
  int64_t max_curve_points_per_trial_ = kDefaultMaxCurvePointsPerTrial;
  std::unique_ptr<SQLite::Database> writer_;
  int64_t last_seq_ = 0;

  // Guards reader_ (SQLite statements on one connection must not run concurrently).
  std::mutex read_mu_;
  std::unique_ptr<SQLite::Database> reader_;

  int schema_version_ = 0;
  ChangeNotifier changes_;
};

}  // namespace bitsweep::server
