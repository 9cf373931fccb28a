// TrialStore: the server's SQLite database (DESIGN §6). Every state change is one transaction
// on the single writer connection, with its checks (fencing, states) inside that transaction,
// so an accepted call has been stored and concurrent calls cannot interleave half-way.
// Dashboard reads use a second connection: in WAL mode they never block the writer.
// Policy (lease length, attempts) comes from the caller: see Scheduler.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bitsweep/v1/config.pb.h"
#include "bitsweep/v1/sweep.pb.h"
#include "bitsweep/v1/worker.pb.h"
#include "server/change_notifier.h"
#include "server/planned_trial.h"
#include "server/pruning_rule.h"

namespace SQLite {
class Database;
}

namespace bitsweep::server {

class PreparedStatements;  // trial_store.cc: the writer's statements, prepared once

// A trial handed to a worker.
struct LeasedTrial {
  int64_t trial_id = 0;
  int64_t sweep_id = 0;
  int32_t attempt = 0;
  v1::TrialConfig config;
  // The last checkpoint of an earlier attempt (empty: start from scratch) and the iteration
  // it was taken after; the curve holds exactly the points up to that iteration.
  std::string checkpoint;
  int64_t checkpoint_iteration = 0;
};

// A trial's stored checkpoint: the latest upload of a running trial, or the final weights a
// finished trial kept (train.keep_final_checkpoint).
struct TrialCheckpoint {
  v1::TrialState trial_state = v1::TRIAL_STATE_UNSPECIFIED;
  int32_t attempt = 0;    // the attempt that uploaded it
  int64_t iteration = 0;  // taken after this iteration
  std::string state;      // the trainer's serialised state (opaque here)
};

// A prediction recorded on a sweep (`bitsweep predict --record`).
struct StoredPrediction {
  int64_t id = 0;
  int64_t sweep_id = 0;
  int64_t created_ms = 0;
  int64_t source_trial_id = 0;  // 0: none
  std::string source;
  std::string json;  // `bitsweep predict --json`'s object, as recorded
};

// What a progress report is answered with.
struct ProgressVerdict {
  // The trial was cancelled or pruned: the worker must stop it.
  bool stop = false;
  // The pruning rule stopped it: complete it with outcome PRUNED.
  bool prune = false;
};

// What SubmitSweep did.
struct SubmitOutcome {
  int64_t sweep_id = 0;
  int32_t trial_count = 0;
  // The spec matched an existing sweep (nothing new was stored).
  bool existing = false;
  // With resume: failed/cancelled trials requeued, and finished results kept.
  int32_t requeued = 0;
  int32_t reused = 0;
};

// Plans the trials a sweep adds while it runs (method bisect), called inside the transaction
// that finished one of its trials, with the sweep's spec and all its trials (configs left
// out). Returns the trials to add (queued); their idx follow the existing ones.
using FollowUpPlanner = std::function<absl::StatusOr<std::vector<PlannedTrial>>(
    const v1::SweepSpec& spec, const std::vector<v1::Trial>& trials)>;

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

  // Stores the sweep and all its trials in one transaction. Returns the sweep id. A trial whose
  // config_hash (config and seed) matches a DONE trial of another sweep is stored DONE with a
  // copy of that result and curve (event "trial_reused"); the others are QUEUED.
  // Errors: Internal (database error; nothing is stored).
  absl::StatusOr<int64_t> CreateSweep(const v1::SweepSpec& spec,
                                      const std::vector<PlannedTrial>& trials, int64_t now_ms);

  // Idempotent submit: if a sweep with the same spec (SpecHash) exists, returns it (existing)
  // and stores nothing, unless `resume`, which requeues its failed and cancelled trials with a
  // fresh attempt budget (their checkpoints and points dropped) and keeps its finished results.
  // Otherwise as CreateSweep (reused: the trials whose results were copied from other sweeps).
  // One transaction: two identical submits cannot both create.
  // Errors: Internal.
  absl::StatusOr<SubmitOutcome> SubmitSweep(const v1::SweepSpec& spec,
                                            const std::vector<PlannedTrial>& trials, bool resume,
                                            int64_t now_ms);

  // QUEUED/RUNNING -> PAUSED: no new trial of the sweep is leased; running ones finish.
  // Pausing a paused sweep changes nothing. Errors: NotFound, FailedPrecondition (the sweep
  // is done or cancelled), Internal.
  absl::Status PauseSweep(int64_t sweep_id, int64_t now_ms);
  // PAUSED -> QUEUED/RUNNING/DONE as its trials say; other states change nothing.
  // Errors: NotFound, Internal.
  absl::Status ResumeSweep(int64_t sweep_id, int64_t now_ms);
  // Requeues the sweep's failed (if `failed`) and cancelled (if `cancelled`) trials with a
  // fresh attempt budget (the attempt number keeps growing, for fencing); a finished or
  // cancelled sweep becomes active again. Returns how many were requeued.
  // Errors: NotFound, Internal.
  absl::StatusOr<int> RerunSweep(int64_t sweep_id, bool failed, bool cancelled, int64_t now_ms);

  // Errors: NotFound (no such sweep), Internal.
  absl::StatusOr<v1::Sweep> GetSweep(int64_t sweep_id);
  // All sweeps, newest first. Errors: Internal.
  absl::StatusOr<std::vector<v1::Sweep>> ListSweeps();

  // Queued trials become CANCELLED; running ones become CANCELLED and keep their lease owner
  // so the worker is told to stop. Cancelling a finished sweep changes nothing.
  // Errors: NotFound (no such sweep), Internal.
  absl::Status CancelSweep(int64_t sweep_id, int64_t now_ms);

  // --- Trials -----------------------------------------------------------------------------

  // A queued trial becomes CANCELLED; a running one too, keeping its lease owner so that the
  // worker is told to stop. A finished trial is unchanged. Errors: NotFound, Internal.
  absl::Status CancelTrial(int64_t trial_id, int64_t now_ms);

  // The sweep's trials in expansion order; configs are left out unless `with_config`.
  // Errors: NotFound (no such sweep), Internal.
  absl::StatusOr<std::vector<v1::Trial>> ListTrials(int64_t sweep_id, bool with_config);
  // Trials of the sweep whose state changed after `after_seq` (0: all), in expansion order;
  // configs are left out unless `with_config`. Errors: Internal.
  absl::StatusOr<TrialChanges> ListTrialsChangedSince(int64_t sweep_id, int64_t after_seq,
                                                      bool with_config);
  // Errors: NotFound (no such trial), Internal.
  absl::StatusOr<v1::Trial> GetTrial(int64_t trial_id);
  // The trial's checkpoint. A DONE trial has one only if its config set
  // train.keep_final_checkpoint (CompleteTrial keeps it); reruns drop it.
  // Errors: NotFound (no such trial; or no checkpoint, the message naming the trial, its state
  // and the option), Internal.
  absl::StatusOr<TrialCheckpoint> GetCheckpoint(int64_t trial_id);
  // The trial's curve by iteration. Errors: NotFound (no such trial), Internal.
  absl::StatusOr<std::vector<v1::CurvePoint>> GetCurve(int64_t trial_id);

  // --- Predictions ------------------------------------------------------------------------

  // Stores a prediction (`bitsweep predict --json`'s object) on the sweep. Returns its id.
  // Errors: NotFound (no such sweep; no such source trial when it is not 0), InvalidArgument
  // (not a JSON object with "uniform.min_bits" and a "bounds" array; larger than
  // kMaxPredictionBytes), Internal.
  static constexpr int64_t kMaxPredictionBytes = int64_t{1} << 20;
  absl::StatusOr<int64_t> RecordPrediction(int64_t sweep_id, int64_t source_trial_id,
                                           const std::string& source, const std::string& json,
                                           int64_t now_ms);
  // The sweep's predictions, oldest first. Errors: NotFound (no such sweep), Internal.
  absl::StatusOr<std::vector<StoredPrediction>> ListPredictions(int64_t sweep_id);

  // --- Workers and leases -----------------------------------------------------------------

  // Records the worker. If it was known with another incarnation, that incarnation's
  // running trials are requeued at once (as in ExpireLeases). Of `running` (trials the worker
  // still runs, e.g. across a server restart), those RUNNING and leased to this worker with
  // the same attempt are re-attached (lease extended to `lease_expires_ms`); the others are
  // returned: the worker must stop them. Errors: Internal.
  struct Registered {
    int released = 0;
    std::vector<v1::TrialRef> stop;
  };
  absl::StatusOr<Registered> RegisterWorker(const std::string& worker_id,
                                            const std::string& incarnation, const std::string& host,
                                            int32_t slots, int64_t now_ms, int max_attempts,
                                            const std::vector<v1::TrialRef>& running = {},
                                            int64_t lease_expires_ms = 0);

  // Whether any active sweep has a queued trial: a cheap read (no write transaction) for
  // long polls woken by unrelated changes. Errors: Internal.
  absl::StatusOr<bool> HasQueuedTrials();

  // Records a sign of life of the worker. Errors: NotFound (worker or incarnation not
  // registered), Internal.
  absl::Status TouchWorker(const std::string& worker_id, const std::string& incarnation,
                           int64_t now_ms);

  // Leases the next queued trial: highest sweep priority; among equal priorities the sweep
  // with the fewest running trials (fair share), then the oldest; then trial index. It
  // becomes RUNNING with attempt+1, owned by the worker until `lease_expires_ms`. With a
  // checkpoint from an earlier attempt, the checkpoint is returned and the curve points after
  // its iteration are deleted in the same transaction (the resumed run re-sends them); without
  // one, all points of earlier attempts are deleted. Paused sweeps are skipped.
  // Returns nullopt when nothing is queued. Errors: Internal.
  absl::StatusOr<std::optional<LeasedTrial>> LeaseNext(const std::string& worker_id, int64_t now_ms,
                                                       int64_t lease_expires_ms);

  // What ExpireTouchAndLease did: leases expired by its expiry pass, and the trial leased.
  struct LeaseOutcome {
    int expired = 0;
    std::optional<LeasedTrial> trial;
  };
  // ExpireLeases(now_ms, max_attempts), TouchWorker and LeaseNext in one transaction (one
  // commit per lease instead of three). The expiry stands even when the worker is unknown.
  // Errors: NotFound (worker or incarnation not registered), Internal.
  absl::StatusOr<LeaseOutcome> ExpireTouchAndLease(const std::string& worker_id,
                                                   const std::string& incarnation, int64_t now_ms,
                                                   int64_t lease_expires_ms, int max_attempts);
  // Records the heartbeat and extends the leases of the listed trials still RUNNING for this
  // worker and attempt. Returns the listed trials the worker must stop (cancelled, finished,
  // unknown, or leased to someone else / another attempt).
  // Errors: NotFound (worker or incarnation not registered), Internal.
  absl::StatusOr<std::vector<v1::TrialRef>> Heartbeat(const std::string& worker_id,
                                                      const std::string& incarnation,
                                                      const std::vector<v1::TrialRef>& running,
                                                      int64_t now_ms, int64_t lease_expires_ms);

  // Stores curve points in one transaction (a point re-sent for the same iteration replaces
  // the old one). Then applies the sweep's pruning rule at its iterations. stop: the trial was
  // cancelled (points dropped) or pruned; prune: pruned. Errors: NotFound (no such trial),
  // FailedPrecondition (stale attempt, trial not leased to this worker, or not running),
  // ResourceExhausted (the trial would hold more than max_curve_points_per_trial points;
  // nothing of the call is stored), Internal.
  absl::StatusOr<ProgressVerdict> AppendPoints(const std::string& worker_id,
                                               const v1::TrialRef& ref,
                                               const std::vector<v1::CurvePoint>& points);

  // Replaces the trial's checkpoint (kept after a DONE completion when the trial's config sets
  // train.keep_final_checkpoint, else deleted then), storing `points` (those up to `iteration`
  // not yet reported) first in the same transaction, pruning rule applied as in AppendPoints.
  // Errors: NotFound, FailedPrecondition (as AppendPoints, and a trial not RUNNING, e.g.
  // cancelled), ResourceExhausted (larger than kMaxCheckpointBytes, or too many points;
  // nothing stored), Internal.
  static constexpr int64_t kMaxCheckpointBytes = int64_t{64} << 20;
  absl::StatusOr<ProgressVerdict> StoreCheckpoint(const std::string& worker_id,
                                                  const v1::TrialRef& ref, int64_t iteration,
                                                  const std::string& state, int64_t now_ms,
                                                  const std::vector<v1::CurvePoint>& points = {});

  // The worker gives the trial back (shutdown): requeued at once without counting against
  // max_attempts (the next lease still gets the next attempt number). A cancelled trial is
  // just released. Errors: as AppendPoints.
  absl::Status ReleaseTrial(const std::string& worker_id, const v1::TrialRef& ref,
                            const std::string& reason, int64_t now_ms);

  // A misbehaving worker must not fill the disk through one trial (DESIGN §9). Set before
  // serving; default kDefaultMaxCurvePointsPerTrial.
  static constexpr int64_t kDefaultMaxCurvePointsPerTrial = 1'000'000;
  void set_max_curve_points_per_trial(int64_t limit) { max_curve_points_per_trial_ = limit; }

  // Finishes the trial: DONE with `result`, or FAILED with `error` when result is null, storing
  // its last `points` in the same transaction (no pruning: it is finished). A trial cancelled
  // while running accepts its completion and stays CANCELLED (points dropped). The trial's
  // checkpoint is deleted, unless it is DONE and its config sets train.keep_final_checkpoint.
  // Errors: NotFound, FailedPrecondition (as AppendPoints), ResourceExhausted (too many
  // points; nothing stored), Internal.
  absl::Status CompleteTrial(const std::string& worker_id, const v1::TrialRef& ref,
                             const v1::TrialResult* result, const std::string& error,
                             int64_t now_ms, const std::vector<v1::CurvePoint>& points = {});

  // CompleteTrial, then ExpireTouchAndLease for the worker's registration `incarnation`, in one
  // transaction: a worker's completion and its next lease cost one commit. The completion's
  // errors are CompleteTrial's (nothing stored, nothing leased); an unknown incarnation leases
  // nothing (trial nullopt: the worker's next LeaseTrial is told to register again) and the
  // completion stands.
  absl::StatusOr<LeaseOutcome> CompleteAndLease(
      const std::string& worker_id, const v1::TrialRef& ref, const v1::TrialResult* result,
      const std::string& error, int64_t now_ms, const std::vector<v1::CurvePoint>& points,
      const std::string& incarnation, int64_t lease_expires_ms, int max_attempts);

  // Every RUNNING trial whose lease expired before `now_ms` is requeued (attempt kept: the
  // next lease increments it) if it lost fewer than max_attempts leases (releases and the
  // attempts before a rerun do not count), else FAILED with "lease expired N times (worker
  // lost)". Returns how many trials were affected.
  // Errors: Internal.
  absl::StatusOr<int> ExpireLeases(int64_t now_ms, int max_attempts);

  // Moves every RUNNING lease expiring before `min_expires_ms` to it. Used at server start:
  // workers get one lease period to reconnect and re-attach their trials after a restart.
  // Returns how many leases moved. Errors: Internal.
  absl::StatusOr<int> ExtendRunningLeases(int64_t min_expires_ms);

  // All registered workers with `running` filled in; `alive` is left to the caller.
  // Errors: Internal.
  absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers();

  // Installed once before serving (Scheduler does): plans the trials of bisect sweeps.
  void set_follow_up_planner(FollowUpPlanner planner) { follow_up_planner_ = std::move(planner); }

 private:
  TrialStore(std::unique_ptr<SQLite::Database> writer, std::unique_ptr<SQLite::Database> reader,
             int schema_version, int64_t last_seq);

  struct RunningTrial {
    int64_t id = 0;
    int32_t attempt = 0;
    int64_t sweep_id = 0;
    int32_t free_attempts = 0;
  };
  // Requeues each trial (attempt kept) if it lost fewer than max_attempts leases, else fails
  // it with "<reason> N times (worker lost)". Caller holds write_mu_ inside a transaction.
  void ReleaseTrials(const std::vector<RunningTrial>& trials, int64_t now_ms, int max_attempts,
                     const std::string& reason);
  // Derives the sweep's state from its trials (QUEUED, RUNNING, DONE); CANCELLED stays.
  // Caller holds write_mu_ inside a transaction.
  void UpdateSweepState(int64_t sweep_id, int64_t now_ms);
  int64_t NextSeq() { return ++last_seq_; }
  // The bodies of ExpireLeases and LeaseNext. Caller holds write_mu_ inside a transaction.
  int ExpireLeasesLocked(int64_t now_ms, int max_attempts);
  std::optional<LeasedTrial> LeaseNextLocked(const std::string& worker_id, int64_t now_ms,
                                             int64_t lease_expires_ms);
  // The body of CompleteTrial. Caller holds write_mu_ inside a transaction.
  absl::Status CompleteTrialLocked(const std::string& worker_id, const v1::TrialRef& ref,
                                   const v1::TrialResult* result, const std::string& error,
                                   int64_t now_ms, const std::vector<v1::CurvePoint>& points);
  // Stores the points of a running trial whose fence was checked (a point re-sent for the same
  // iteration replaces the old one) and, with `apply_pruning`, applies the sweep's pruning
  // rule. Caller holds write_mu_ inside a transaction. Errors: ResourceExhausted (over
  // max_curve_points_per_trial).
  absl::StatusOr<ProgressVerdict> InsertPointsLocked(const std::string& worker_id,
                                                     const v1::TrialRef& ref, int64_t sweep_id,
                                                     const std::vector<v1::CurvePoint>& points,
                                                     bool apply_pruning);
  // The sweep's parsed pruning rule (cached: specs never change). Caller holds write_mu_.
  const PruningRule& PruningOf(int64_t sweep_id);
  // Adds the trials the follow-up planner asks for (bisect sweeps), reusing finished results
  // of other sweeps for them; returns how many were reused. Caller holds write_mu_ inside a
  // transaction.
  absl::StatusOr<int> PlanFollowUp(int64_t sweep_id, int64_t now_ms);
  // Every QUEUED trial of the sweep from `first_idx` on whose config_hash matches a DONE trial
  // of another sweep becomes DONE with a copy of that trial's result and curve points. Returns
  // how many. Caller holds write_mu_ inside a transaction.
  int ReuseFinishedTrials(int64_t sweep_id, int64_t first_idx, int64_t now_ms);
  // Inserts queued trials with idx from `first_idx`. Caller holds write_mu_.
  void InsertTrials(int64_t sweep_id, const std::vector<PlannedTrial>& trials, int64_t first_idx);
  // Inserts the sweep row and its trials, reusing finished results of other sweeps (see
  // CreateSweep), and sets the sweep's state. Caller holds write_mu_ inside a transaction.
  struct InsertedSweep {
    int64_t sweep_id = 0;
    int32_t reused = 0;
  };
  absl::StatusOr<InsertedSweep> InsertSweep(const v1::SweepSpec& spec, const std::string& spec_hash,
                                            const std::vector<PlannedTrial>& trials,
                                            int64_t now_ms);
  // A done or cancelled sweep whose trials were requeued becomes active again. Caller holds
  // write_mu_ inside a transaction.
  void ReactivateSweep(int64_t sweep_id, int64_t now_ms);
  // Requeues the given trials with a fresh attempt budget, dropping checkpoints and points.
  // Caller holds write_mu_ inside a transaction. Returns how many.
  int RequeueFresh(int64_t sweep_id, const std::vector<int>& states);

  // Guards writer_ and last_seq_: the single writer connection serialises all writes.
  std::mutex write_mu_;
  int64_t max_curve_points_per_trial_ = kDefaultMaxCurvePointsPerTrial;
  std::unique_ptr<SQLite::Database> writer_;
  // Declared after writer_: its statements are finalized before the connection closes.
  std::unique_ptr<PreparedStatements> prepared_;
  int64_t last_seq_ = 0;
  std::unordered_map<int64_t, PruningRule> pruning_rules_;  // by sweep id
  // Whether the sweep plans follow-up trials (method bisect; specs never change), by sweep id.
  // Guarded by write_mu_.
  std::unordered_map<int64_t, bool> plans_follow_ups_;
  // Curve points stored per trial that reported since this store opened (an upper bound:
  // re-sent iterations count twice). Dropped when its points are deleted or it finishes.
  std::unordered_map<int64_t, int64_t> stored_points_;
  FollowUpPlanner follow_up_planner_;

  // Guards reader_ (SQLite statements on one connection must not run concurrently).
  std::mutex read_mu_;
  std::unique_ptr<SQLite::Database> reader_;

  int schema_version_ = 0;
  ChangeNotifier changes_;
};

}  // namespace bitsweep::server
