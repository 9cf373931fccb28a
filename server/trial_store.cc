#include "server/trial_store.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/embedded_file.h"
#include "server/sweep_expander.h"

namespace bitsweep::server {

// The writer connection's statements, each prepared once: compiling the SQL costs more than
// running the few-row statements of a lease or a report. Use() hands one out; the handle resets
// it and clears its bindings when it goes, so no statement keeps a read snapshot open (which
// would hold back WAL checkpoints) or a pointer to a freed bound blob. A statement must not be
// used again while a handle to it is alive. Caller holds write_mu_.
class PreparedStatements {
 public:
  explicit PreparedStatements(SQLite::Database* db) : db_(db) {}

  class Handle {
   public:
    explicit Handle(SQLite::Statement* statement) : statement_(statement) {}
    ~Handle() {
      statement_->tryReset();
      try {
        statement_->clearBindings();  // sqlite3_clear_bindings cannot fail
      } catch (const SQLite::Exception&) {
      }
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;

    template <typename... Args>
    void bind(Args&&... args) {
      statement_->bind(std::forward<Args>(args)...);
    }
    template <typename... Args>
    void bindNoCopy(Args&&... args) {
      statement_->bindNoCopy(std::forward<Args>(args)...);
    }
    int exec() { return statement_->exec(); }
    bool executeStep() { return statement_->executeStep(); }
    SQLite::Column getColumn(int index) { return statement_->getColumn(index); }
    void reset() { statement_->reset(); }

   private:
    SQLite::Statement* statement_;
  };

  Handle Use(const char* sql) {
    std::unique_ptr<SQLite::Statement>& statement = statements_[sql];
    if (statement == nullptr) statement = std::make_unique<SQLite::Statement>(*db_, sql);
    return Handle(statement.get());
  }

 private:
  SQLite::Database* const db_;
  std::unordered_map<std::string, std::unique_ptr<SQLite::Statement>> statements_;
};

namespace {

constexpr int kBusyTimeoutMs = 5000;

// Runs `fn`, turning SQLiteCpp's exceptions into a Status at the store's boundary.
template <typename Fn>
auto Guarded(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const SQLite::Exception& e) {
    return absl::InternalError(absl::StrCat(what, ": database error: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

std::string BlobOf(const SQLite::Column& column) {
  if (column.isNull()) return {};
  return std::string(static_cast<const char*>(column.getBlob()), column.getBytes());
}

// "0001_initial.sql" -> 1; -1 if the name does not start with a number.
int MigrationNumber(std::string_view name) {
  int number = -1;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), number);
  if (ec != std::errc() || end == name.data() || *end != '_') return -1;
  return number;
}

absl::StatusOr<int> ApplyMigrations(SQLite::Database& db) {
  int version = db.execAndGet("PRAGMA user_version").getInt();
  int expected = 1;
  for (const EmbeddedFile& file : EmbeddedMigrations()) {
    int number = MigrationNumber(file.name);
    if (number != expected) {
      return absl::InternalError(absl::StrCat("migration ", std::string(file.name),
                                              ": expected number ", expected,
                                              " (files must be numbered 0001, 0002, ...)"));
    }
    ++expected;
    if (number <= version) continue;
    SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
    try {
      db.exec(std::string(file.contents));
    } catch (const SQLite::Exception& e) {
      return absl::InternalError(
          absl::StrCat("migration ", std::string(file.name), ": ", e.what()));
    }
    // PRAGMA takes no bound parameters; `number` comes from our own embedded file name.
    db.exec(absl::StrCat("PRAGMA user_version = ", number));
    transaction.commit();
    version = number;
  }
  if (version > expected - 1) {
    return absl::FailedPreconditionError(absl::StrCat("database schema version ", version,
                                                      " is newer than this server (", expected - 1,
                                                      "): upgrade the server"));
  }
  return version;
}

std::string ParamsToJson(const std::vector<v1::TrialParam>& params) {
  nlohmann::json json = nlohmann::json::array();
  for (const v1::TrialParam& param : params) json.push_back({param.path(), param.value()});
  return json.dump();
}

void ParamsFromJson(const std::string& text, v1::Trial* trial) {
  nlohmann::json json = nlohmann::json::parse(text);
  for (const auto& pair : json) {
    v1::TrialParam* param = trial->add_params();
    param->set_path(pair.at(0).get<std::string>());
    param->set_value(pair.at(1).get<std::string>());
  }
}

constexpr char kTrialColumns[] =
    "id, sweep_id, state, attempt, params, seed, result, error, worker_id, started_ms, "
    "finished_ms, config_hash, config";

// Reads a row selected with kTrialColumns.
v1::Trial TrialFromRow(SQLite::Statement& row, bool with_config) {
  v1::Trial trial;
  trial.set_id(row.getColumn(0).getInt64());
  trial.set_sweep_id(row.getColumn(1).getInt64());
  trial.set_state(static_cast<v1::TrialState>(row.getColumn(2).getInt()));
  trial.set_attempt(row.getColumn(3).getInt());
  ParamsFromJson(row.getColumn(4).getString(), &trial);
  trial.set_seed(static_cast<uint64_t>(row.getColumn(5).getInt64()));
  if (!row.getColumn(6).isNull()) trial.mutable_result()->ParseFromString(BlobOf(row.getColumn(6)));
  trial.set_error(row.getColumn(7).getString());
  trial.set_worker_id(row.getColumn(8).getString());
  trial.set_started_unix_ms(row.getColumn(9).getInt64());
  trial.set_finished_unix_ms(row.getColumn(10).getInt64());
  trial.set_config_hash(row.getColumn(11).getString());
  if (with_config) trial.mutable_config()->ParseFromString(BlobOf(row.getColumn(12)));
  return trial;
}

v1::TrialCounts ReadCounts(SQLite::Database& db, int64_t sweep_id) {
  SQLite::Statement query(
      db,
      "SELECT state, COUNT(*), SUM(outcome = ?2), SUM(outcome = ?3) FROM trials "
      "WHERE sweep_id = ?1 GROUP BY state");
  query.bind(1, sweep_id);
  query.bind(2, static_cast<int>(v1::TRIAL_OUTCOME_DIVERGED));
  query.bind(3, static_cast<int>(v1::TRIAL_OUTCOME_PRUNED));
  v1::TrialCounts counts;
  int total = 0;
  while (query.executeStep()) {
    int n = query.getColumn(1).getInt();
    total += n;
    switch (query.getColumn(0).getInt()) {
      case v1::TRIAL_STATE_QUEUED:
        counts.set_queued(n);
        break;
      case v1::TRIAL_STATE_RUNNING:
        counts.set_running(n);
        break;
      case v1::TRIAL_STATE_DONE:
        counts.set_done(n);
        counts.set_diverged(query.getColumn(2).getInt());
        counts.set_pruned(query.getColumn(3).getInt());
        break;
      case v1::TRIAL_STATE_FAILED:
        counts.set_failed(n);
        break;
      case v1::TRIAL_STATE_CANCELLED:
        counts.set_cancelled(n);
        break;
      default:
        break;
    }
  }
  counts.set_total(total);
  return counts;
}

constexpr char kSweepColumns[] = "id, name, spec, priority, state, created_ms, finished_ms";

v1::Sweep SweepFromRow(SQLite::Database& db, SQLite::Statement& row) {
  v1::Sweep sweep;
  sweep.set_id(row.getColumn(0).getInt64());
  sweep.set_name(row.getColumn(1).getString());
  sweep.mutable_spec()->ParseFromString(BlobOf(row.getColumn(2)));
  sweep.set_priority(row.getColumn(3).getInt());
  sweep.set_state(static_cast<v1::SweepState>(row.getColumn(4).getInt()));
  sweep.set_created_unix_ms(row.getColumn(5).getInt64());
  sweep.set_finished_unix_ms(row.getColumn(6).getInt64());
  *sweep.mutable_counts() = ReadCounts(db, sweep.id());
  return sweep;
}

std::optional<v1::Sweep> ReadSweep(SQLite::Database& db, int64_t sweep_id) {
  SQLite::Statement query(db, absl::StrCat("SELECT ", kSweepColumns, " FROM sweeps WHERE id = ?"));
  query.bind(1, sweep_id);
  if (!query.executeStep()) return std::nullopt;
  return SweepFromRow(db, query);
}

bool SweepExists(SQLite::Database& db, int64_t sweep_id) {
  SQLite::Statement query(db, "SELECT 1 FROM sweeps WHERE id = ?");
  query.bind(1, sweep_id);
  return query.executeStep();
}

// The lease fields of a trial, read inside a write transaction for fencing.
struct LeaseRow {
  int state = 0;
  int32_t attempt = 0;
  std::string owner;
  int64_t sweep_id = 0;
};

std::optional<LeaseRow> ReadLease(PreparedStatements& db, int64_t trial_id) {
  PreparedStatements::Handle query =
      db.Use("SELECT state, attempt, IFNULL(lease_owner, ''), sweep_id FROM trials WHERE id = ?");
  query.bind(1, trial_id);
  if (!query.executeStep()) return std::nullopt;
  return LeaseRow{query.getColumn(0).getInt(), query.getColumn(1).getInt(),
                  query.getColumn(2).getString(), query.getColumn(3).getInt64()};
}

// Checks the fencing token of a report. On success the trial is RUNNING or CANCELLED (while
// running) for this worker and attempt.
// A cancelled trial's worker has stopped (released or completed): forget its lease; the trial
// stays CANCELLED.
void ReleaseCancelledLease(PreparedStatements& db, int64_t trial_id) {
  PreparedStatements::Handle release = db.Use("UPDATE trials SET lease_owner = NULL WHERE id = ?");
  release.bind(1, trial_id);
  release.exec();
}

absl::StatusOr<LeaseRow> CheckFence(PreparedStatements& db, const std::string& worker_id,
                                    const v1::TrialRef& ref) {
  std::optional<LeaseRow> lease = ReadLease(db, ref.trial_id());
  if (!lease) return absl::NotFoundError(absl::StrCat("trial ", ref.trial_id(), " not found"));
  if (lease->attempt != ref.attempt()) {
    return absl::FailedPreconditionError(absl::StrCat("trial ", ref.trial_id(), ": attempt ",
                                                      ref.attempt(), " is stale (current attempt ",
                                                      lease->attempt, ")"));
  }
  if (lease->owner != worker_id) {
    return absl::FailedPreconditionError(absl::StrCat("trial ", ref.trial_id(), " attempt ",
                                                      ref.attempt(), " is not leased to worker '",
                                                      worker_id, "'"));
  }
  if (lease->state != v1::TRIAL_STATE_RUNNING && lease->state != v1::TRIAL_STATE_CANCELLED) {
    return absl::FailedPreconditionError(
        absl::StrCat("trial ", ref.trial_id(), " is not running (state ",
                     v1::TrialState_Name(static_cast<v1::TrialState>(lease->state)), ")"));
  }
  return *std::move(lease);
}

void RecordEvent(PreparedStatements& db, int64_t now_ms, int64_t sweep_id, int64_t trial_id,
                 const std::string& worker_id, const std::string& kind, const std::string& detail) {
  PreparedStatements::Handle insert = db.Use(
      "INSERT INTO events (at_ms, sweep_id, trial_id, worker_id, kind, detail) "
      "VALUES (?, ?, ?, ?, ?, ?)");
  insert.bind(1, now_ms);
  insert.bind(2, sweep_id);
  insert.bind(3, trial_id);
  insert.bind(4, worker_id);
  insert.bind(5, kind);
  insert.bind(6, detail);
  insert.exec();
}

}  // namespace

TrialStore::TrialStore(std::unique_ptr<SQLite::Database> writer,
                       std::unique_ptr<SQLite::Database> reader, int schema_version,
                       int64_t last_seq)
    : writer_(std::move(writer)),
      prepared_(std::make_unique<PreparedStatements>(writer_.get())),
      last_seq_(last_seq),
      reader_(std::move(reader)),
      schema_version_(schema_version) {}

TrialStore::~TrialStore() = default;

absl::StatusOr<std::unique_ptr<TrialStore>> TrialStore::Open(const std::string& path) {
  std::unique_ptr<SQLite::Database> writer;
  try {
    // NOMUTEX: write_mu_ (read_mu_ for the reader) already serialises every use of a
    // connection, so SQLite's own per-call connection mutex is pure overhead.
    writer = std::make_unique<SQLite::Database>(
        path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX, kBusyTimeoutMs);
    // WAL: readers never block the writer. synchronous=NORMAL is durable against process
    // crashes (only an OS crash can lose the last commits) and keeps commits cheap.
    writer->exec("PRAGMA journal_mode = WAL");
    writer->exec("PRAGMA synchronous = NORMAL");
    writer->exec("PRAGMA foreign_keys = ON");
  } catch (const SQLite::Exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot open database '", path, "': ", e.what()));
  }
  return Guarded("open", [&]() -> absl::StatusOr<std::unique_ptr<TrialStore>> {
    absl::StatusOr<int> version = ApplyMigrations(*writer);
    if (!version.ok()) return version.status();
    int64_t last_seq =
        writer->execAndGet("SELECT IFNULL(MAX(change_seq), 0) FROM trials").getInt64();
    auto reader = std::make_unique<SQLite::Database>(
        path, SQLite::OPEN_READONLY | SQLite::OPEN_NOMUTEX, kBusyTimeoutMs);
    reader->exec("PRAGMA foreign_keys = ON");
    return std::unique_ptr<TrialStore>(
        new TrialStore(std::move(writer), std::move(reader), *version, last_seq));
  });
}

// --- Sweeps -------------------------------------------------------------------------------

absl::StatusOr<int64_t> TrialStore::CreateSweep(const v1::SweepSpec& spec,
                                                const std::vector<PlannedTrial>& trials,
                                                int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("create sweep", [&]() -> absl::StatusOr<int64_t> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    ASSIGN_OR_RETURN(InsertedSweep inserted, InsertSweep(spec, SpecHash(spec), trials, now_ms));
    transaction.commit();
    changes_.Notify();
    return inserted.sweep_id;
  });
}

absl::StatusOr<TrialStore::InsertedSweep> TrialStore::InsertSweep(
    const v1::SweepSpec& spec, const std::string& spec_hash,
    const std::vector<PlannedTrial>& trials, int64_t now_ms) {
  std::string spec_blob = spec.SerializeAsString();
  SQLite::Statement insert_sweep(
      *writer_,
      "INSERT INTO sweeps (name, spec, priority, state, trial_count, created_ms, spec_hash) "
      "VALUES (?, ?, ?, ?, ?, ?, ?)");
  insert_sweep.bind(1, spec.name());
  insert_sweep.bindNoCopy(2, spec_blob.data(), static_cast<int>(spec_blob.size()));
  insert_sweep.bind(3, spec.priority());
  insert_sweep.bind(4, static_cast<int>(v1::SWEEP_STATE_QUEUED));
  insert_sweep.bind(5, static_cast<int64_t>(trials.size()));
  insert_sweep.bind(6, now_ms);
  insert_sweep.bind(7, spec_hash);
  insert_sweep.exec();
  InsertedSweep inserted;
  inserted.sweep_id = writer_->getLastInsertRowid();
  InsertTrials(inserted.sweep_id, trials, 0);
  inserted.reused = ReuseFinishedTrials(inserted.sweep_id, 0, now_ms);
  if (inserted.reused > 0) {
    // No completion will plan the next bisect probes if the first ones are all reused.
    ASSIGN_OR_RETURN(int follow_ups_reused, PlanFollowUp(inserted.sweep_id, now_ms));
    inserted.reused += follow_ups_reused;
    UpdateSweepState(inserted.sweep_id, now_ms);
  }
  return inserted;
}

int TrialStore::ReuseFinishedTrials(int64_t sweep_id, int64_t first_idx, int64_t now_ms) {
  // Same config_hash = same config and seed = the same deterministic run (the trainer is
  // bitwise deterministic): the oldest finished one of another sweep is the source. Failed and
  // cancelled runs have no result to reuse, and a pruned one was cut short by its own sweep's
  // rule, which the new sweep may not have. One index probe per trial (trials_by_config_hash).
  SQLite::Statement matches(
      *writer_,
      "SELECT id, source FROM (SELECT t.id AS id, t.idx AS idx, "
      "(SELECT s.id FROM trials s WHERE s.config_hash = t.config_hash AND s.state = ?3 "
      "AND s.outcome IN (?4, ?5) AND s.sweep_id != t.sweep_id ORDER BY s.id LIMIT 1) "
      "AS source FROM trials t WHERE t.sweep_id = ?1 AND t.idx >= ?2 "
      "AND t.state = ?6) WHERE source IS NOT NULL ORDER BY idx");
  matches.bind(1, sweep_id);
  matches.bind(2, first_idx);
  matches.bind(3, static_cast<int>(v1::TRIAL_STATE_DONE));
  matches.bind(4, static_cast<int>(v1::TRIAL_OUTCOME_COMPLETED));
  matches.bind(5, static_cast<int>(v1::TRIAL_OUTCOME_DIVERGED));
  matches.bind(6, static_cast<int>(v1::TRIAL_STATE_QUEUED));
  std::vector<std::pair<int64_t, int64_t>> reuses;  // (trial, source trial)
  while (matches.executeStep()) {
    reuses.emplace_back(matches.getColumn(0).getInt64(), matches.getColumn(1).getInt64());
  }
  if (reuses.empty()) return 0;
  // The source's times and worker stay: they describe the run that produced the result.
  SQLite::Statement copy_result(
      *writer_,
      "UPDATE trials SET state = ?1, (result, outcome, worker_id, started_ms, finished_ms) = "
      "(SELECT result, outcome, worker_id, started_ms, finished_ms FROM trials WHERE id = ?2), "
      "error = '', change_seq = ?3 WHERE id = ?4");
  // Every column of the point is copied, including ones later migrations add.
  std::string point_columns;
  SQLite::Statement columns(*writer_, "SELECT name FROM pragma_table_info('curve_points')");
  while (columns.executeStep()) {
    std::string column = columns.getColumn(0).getString();
    if (column != "trial_id") absl::StrAppend(&point_columns, ", ", column);
  }
  SQLite::Statement copy_points(
      *writer_, absl::StrCat("INSERT INTO curve_points (trial_id", point_columns, ") SELECT ?1",
                             point_columns, " FROM curve_points WHERE trial_id = ?2"));
  // A kept final checkpoint (train.keep_final_checkpoint, part of the hash) goes with the
  // result: the reused trial's weights are the source's.
  SQLite::Statement copy_checkpoint(
      *writer_,
      "INSERT OR REPLACE INTO checkpoints (trial_id, attempt, iteration, state, created_ms) "
      "SELECT ?1, attempt, iteration, state, created_ms FROM checkpoints WHERE trial_id = ?2");
  SQLite::Statement source_sweep(*writer_, "SELECT sweep_id FROM trials WHERE id = ?");
  for (const auto& [trial_id, source_id] : reuses) {
    copy_checkpoint.reset();
    copy_checkpoint.bind(1, trial_id);
    copy_checkpoint.bind(2, source_id);
    copy_checkpoint.exec();
    copy_result.reset();
    copy_result.bind(1, static_cast<int>(v1::TRIAL_STATE_DONE));
    copy_result.bind(2, source_id);
    copy_result.bind(3, NextSeq());
    copy_result.bind(4, trial_id);
    copy_result.exec();
    copy_points.reset();
    copy_points.bind(1, trial_id);
    copy_points.bind(2, source_id);
    copy_points.exec();
    source_sweep.reset();
    source_sweep.bind(1, source_id);
    source_sweep.executeStep();
    RecordEvent(
        *prepared_, now_ms, sweep_id, trial_id, "", "trial_reused",
        absl::StrCat("result and curve of trial ", source_id, " (sweep ",
                     source_sweep.getColumn(0).getInt64(), ") reused: same config and seed"));
  }
  return static_cast<int>(reuses.size());
}

void TrialStore::InsertTrials(int64_t sweep_id, const std::vector<PlannedTrial>& trials,
                              int64_t first_idx) {
  // One prepared statement reused for every trial: 100,000 rows insert in about a second.
  int64_t seq = NextSeq();
  SQLite::Statement insert_trial(
      *writer_,
      "INSERT INTO trials (sweep_id, idx, state, config, params, seed, config_hash, change_seq) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  std::string config_blob;
  for (size_t i = 0; i < trials.size(); ++i) {
    const PlannedTrial& trial = trials[i];
    config_blob = trial.config.SerializeAsString();
    insert_trial.bind(1, sweep_id);
    insert_trial.bind(2, first_idx + static_cast<int64_t>(i));
    insert_trial.bind(3, static_cast<int>(v1::TRIAL_STATE_QUEUED));
    insert_trial.bindNoCopy(4, config_blob.data(), static_cast<int>(config_blob.size()));
    insert_trial.bind(5, ParamsToJson(trial.params));
    insert_trial.bind(6, static_cast<int64_t>(trial.config.seed()));
    insert_trial.bind(7, trial.config_hash);
    insert_trial.bind(8, seq);
    insert_trial.exec();
    insert_trial.reset();
  }
}

absl::StatusOr<SubmitOutcome> TrialStore::SubmitSweep(const v1::SweepSpec& spec,
                                                      const std::vector<PlannedTrial>& trials,
                                                      bool resume, int64_t now_ms) {
  const std::string spec_hash = SpecHash(spec);
  std::lock_guard<std::mutex> lock(write_mu_);
  // Lookup and insert in one transaction: two identical submits cannot both create.
  return Guarded("submit sweep", [&]() -> absl::StatusOr<SubmitOutcome> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement existing(
        *writer_, "SELECT id FROM sweeps WHERE spec_hash = ? ORDER BY id DESC LIMIT 1");
    existing.bind(1, spec_hash);
    SubmitOutcome outcome;
    if (!existing.executeStep()) {
      ASSIGN_OR_RETURN(InsertedSweep inserted, InsertSweep(spec, spec_hash, trials, now_ms));
      outcome.sweep_id = inserted.sweep_id;
      outcome.reused = inserted.reused;
      // Bisect follow-ups planned at once (reused probes) count too.
      SQLite::Statement count(*writer_, "SELECT trial_count FROM sweeps WHERE id = ?");
      count.bind(1, inserted.sweep_id);
      count.executeStep();
      outcome.trial_count = count.getColumn(0).getInt();
      transaction.commit();
      changes_.Notify();
      return outcome;
    }
    outcome.sweep_id = existing.getColumn(0).getInt64();
    outcome.existing = true;
    if (resume) {
      outcome.requeued =
          RequeueFresh(outcome.sweep_id, {v1::TRIAL_STATE_FAILED, v1::TRIAL_STATE_CANCELLED});
      if (outcome.requeued > 0) {
        RecordEvent(*prepared_, now_ms, outcome.sweep_id, 0, "", "sweep_resumed",
                    absl::StrCat(outcome.requeued, " trials requeued"));
        ReactivateSweep(outcome.sweep_id, now_ms);
      }
    }
    v1::TrialCounts counts = ReadCounts(*writer_, outcome.sweep_id);
    outcome.trial_count = counts.total();
    outcome.reused = resume ? counts.done() : 0;
    transaction.commit();
    if (outcome.requeued > 0) changes_.Notify();
    return outcome;
  });
}

int TrialStore::RequeueFresh(int64_t sweep_id, const std::vector<int>& states) {
  int requeued = 0;
  SQLite::Statement select(*writer_, "SELECT id FROM trials WHERE sweep_id = ? AND state = ?");
  SQLite::Statement requeue(
      *writer_,
      "UPDATE trials SET state = ?1, free_attempts = attempt, lease_owner = NULL, "
      "lease_expires_ms = 0, error = '', prune = 0, finished_ms = 0, change_seq = ?2 "
      "WHERE id = ?3");
  SQLite::Statement drop_points(*writer_, "DELETE FROM curve_points WHERE trial_id = ?");
  SQLite::Statement drop_checkpoint(*writer_, "DELETE FROM checkpoints WHERE trial_id = ?");
  for (int state : states) {
    std::vector<int64_t> ids;
    select.reset();
    select.bind(1, sweep_id);
    select.bind(2, state);
    while (select.executeStep()) ids.push_back(select.getColumn(0).getInt64());
    for (int64_t id : ids) {
      requeue.reset();
      requeue.bind(1, static_cast<int>(v1::TRIAL_STATE_QUEUED));
      requeue.bind(2, NextSeq());
      requeue.bind(3, id);
      requeue.exec();
      // A rerun starts from scratch: the failure may have come from the state itself.
      drop_points.reset();
      drop_points.bind(1, id);
      drop_points.exec();
      stored_points_.erase(id);
      drop_checkpoint.reset();
      drop_checkpoint.bind(1, id);
      drop_checkpoint.exec();
      ++requeued;
    }
  }
  return requeued;
}

void TrialStore::ReactivateSweep(int64_t sweep_id, int64_t now_ms) {
  // A done or cancelled sweep with requeued trials runs again; a paused one stays paused.
  SQLite::Statement reset(*writer_,
                          "UPDATE sweeps SET state = ?1, finished_ms = 0 "
                          "WHERE id = ?2 AND state IN (?3, ?4)");
  reset.bind(1, static_cast<int>(v1::SWEEP_STATE_QUEUED));
  reset.bind(2, sweep_id);
  reset.bind(3, static_cast<int>(v1::SWEEP_STATE_DONE));
  reset.bind(4, static_cast<int>(v1::SWEEP_STATE_CANCELLED));
  reset.exec();
  UpdateSweepState(sweep_id, now_ms);
}

absl::Status TrialStore::PauseSweep(int64_t sweep_id, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("pause sweep", [&]() -> absl::Status {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement query(*writer_, "SELECT state FROM sweeps WHERE id = ?");
    query.bind(1, sweep_id);
    if (!query.executeStep()) {
      return absl::NotFoundError(absl::StrCat("sweep ", sweep_id, " not found"));
    }
    int state = query.getColumn(0).getInt();
    if (state == v1::SWEEP_STATE_PAUSED) return absl::OkStatus();
    if (state == v1::SWEEP_STATE_DONE || state == v1::SWEEP_STATE_CANCELLED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "sweep ", sweep_id, " is ", state == v1::SWEEP_STATE_DONE ? "done" : "cancelled",
          ": there is nothing to pause"));
    }
    SQLite::Statement pause(*writer_, "UPDATE sweeps SET state = ? WHERE id = ?");
    pause.bind(1, static_cast<int>(v1::SWEEP_STATE_PAUSED));
    pause.bind(2, sweep_id);
    pause.exec();
    RecordEvent(*prepared_, now_ms, sweep_id, 0, "", "sweep_paused", "");
    transaction.commit();
    changes_.Notify();
    return absl::OkStatus();
  });
}

absl::Status TrialStore::ResumeSweep(int64_t sweep_id, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("resume sweep", [&]() -> absl::Status {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement query(*writer_, "SELECT state FROM sweeps WHERE id = ?");
    query.bind(1, sweep_id);
    if (!query.executeStep()) {
      return absl::NotFoundError(absl::StrCat("sweep ", sweep_id, " not found"));
    }
    if (query.getColumn(0).getInt() != v1::SWEEP_STATE_PAUSED) return absl::OkStatus();
    SQLite::Statement resume(*writer_, "UPDATE sweeps SET state = ? WHERE id = ?");
    resume.bind(1, static_cast<int>(v1::SWEEP_STATE_QUEUED));
    resume.bind(2, sweep_id);
    resume.exec();
    UpdateSweepState(sweep_id, now_ms);
    RecordEvent(*prepared_, now_ms, sweep_id, 0, "", "sweep_resumed", "");
    transaction.commit();
    changes_.Notify();
    return absl::OkStatus();
  });
}

absl::StatusOr<int> TrialStore::RerunSweep(int64_t sweep_id, bool failed, bool cancelled,
                                           int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("rerun sweep", [&]() -> absl::StatusOr<int> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    if (!SweepExists(*writer_, sweep_id)) {
      return absl::NotFoundError(absl::StrCat("sweep ", sweep_id, " not found"));
    }
    std::vector<int> states;
    if (failed) states.push_back(v1::TRIAL_STATE_FAILED);
    if (cancelled) states.push_back(v1::TRIAL_STATE_CANCELLED);
    int requeued = RequeueFresh(sweep_id, states);
    if (requeued > 0) {
      RecordEvent(*prepared_, now_ms, sweep_id, 0, "", "sweep_rerun",
                  absl::StrCat(requeued, " trials requeued"));
      ReactivateSweep(sweep_id, now_ms);
    }
    transaction.commit();
    if (requeued > 0) changes_.Notify();
    return requeued;
  });
}

absl::StatusOr<v1::Sweep> TrialStore::GetSweep(int64_t sweep_id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("get sweep", [&]() -> absl::StatusOr<v1::Sweep> {
    std::optional<v1::Sweep> sweep = ReadSweep(*reader_, sweep_id);
    if (!sweep) return absl::NotFoundError(absl::StrCat("sweep ", sweep_id, " not found"));
    return *std::move(sweep);
  });
}

absl::StatusOr<std::vector<v1::Sweep>> TrialStore::ListSweeps() {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("list sweeps", [&]() -> absl::StatusOr<std::vector<v1::Sweep>> {
    SQLite::Statement query(
        *reader_, absl::StrCat("SELECT ", kSweepColumns, " FROM sweeps ORDER BY id DESC"));
    std::vector<v1::Sweep> sweeps;
    while (query.executeStep()) sweeps.push_back(SweepFromRow(*reader_, query));
    return sweeps;
  });
}

absl::Status TrialStore::CancelSweep(int64_t sweep_id, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("cancel sweep", [&]() -> absl::Status {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement query(*writer_, "SELECT state FROM sweeps WHERE id = ?");
    query.bind(1, sweep_id);
    if (!query.executeStep()) {
      return absl::NotFoundError(absl::StrCat("sweep ", sweep_id, " not found"));
    }
    int state = query.getColumn(0).getInt();
    if (state == v1::SWEEP_STATE_DONE || state == v1::SWEEP_STATE_CANCELLED) {
      return absl::OkStatus();
    }
    SQLite::Statement cancel_trials(
        *writer_,
        "UPDATE trials SET state = ?1, finished_ms = ?2, change_seq = ?3 "
        "WHERE sweep_id = ?4 AND state IN (?5, ?6)");
    cancel_trials.bind(1, static_cast<int>(v1::TRIAL_STATE_CANCELLED));
    cancel_trials.bind(2, now_ms);
    cancel_trials.bind(3, NextSeq());
    cancel_trials.bind(4, sweep_id);
    cancel_trials.bind(5, static_cast<int>(v1::TRIAL_STATE_QUEUED));
    cancel_trials.bind(6, static_cast<int>(v1::TRIAL_STATE_RUNNING));
    cancel_trials.exec();
    SQLite::Statement cancel_sweep(*writer_,
                                   "UPDATE sweeps SET state = ?, finished_ms = ? WHERE id = ?");
    cancel_sweep.bind(1, static_cast<int>(v1::SWEEP_STATE_CANCELLED));
    cancel_sweep.bind(2, now_ms);
    cancel_sweep.bind(3, sweep_id);
    cancel_sweep.exec();
    transaction.commit();
    changes_.Notify();
    return absl::OkStatus();
  });
}

// --- Trials -------------------------------------------------------------------------------

absl::Status TrialStore::CancelTrial(int64_t trial_id, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("cancel trial", [&]() -> absl::Status {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    std::optional<LeaseRow> lease = ReadLease(*prepared_, trial_id);
    if (!lease) return absl::NotFoundError(absl::StrCat("trial ", trial_id, " not found"));
    if (lease->state != v1::TRIAL_STATE_QUEUED && lease->state != v1::TRIAL_STATE_RUNNING) {
      return absl::OkStatus();
    }
    // A running trial keeps its lease owner: its heartbeat or next report says stop.
    SQLite::Statement cancel(
        *writer_, "UPDATE trials SET state = ?, finished_ms = ?, change_seq = ? WHERE id = ?");
    cancel.bind(1, static_cast<int>(v1::TRIAL_STATE_CANCELLED));
    cancel.bind(2, now_ms);
    cancel.bind(3, NextSeq());
    cancel.bind(4, trial_id);
    cancel.exec();
    RecordEvent(*prepared_, now_ms, lease->sweep_id, trial_id, lease->owner, "trial_cancelled", "");
    UpdateSweepState(lease->sweep_id, now_ms);
    transaction.commit();
    changes_.Notify();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<v1::Trial>> TrialStore::ListTrials(int64_t sweep_id, bool with_config) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("list trials", [&]() -> absl::StatusOr<std::vector<v1::Trial>> {
    // One read transaction: the existence check and the rows come from the same snapshot.
    SQLite::Transaction snapshot(*reader_);
    if (!SweepExists(*reader_, sweep_id)) {
      return absl::NotFoundError(absl::StrCat("sweep ", sweep_id, " not found"));
    }
    SQLite::Statement query(*reader_, absl::StrCat("SELECT ", kTrialColumns,
                                                   " FROM trials WHERE sweep_id = ? ORDER BY idx"));
    query.bind(1, sweep_id);
    std::vector<v1::Trial> trials;
    while (query.executeStep()) trials.push_back(TrialFromRow(query, with_config));
    return trials;
  });
}

absl::StatusOr<TrialChanges> TrialStore::ListTrialsChangedSince(int64_t sweep_id, int64_t after_seq,
                                                                bool with_config) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("list changed trials", [&]() -> absl::StatusOr<TrialChanges> {
    SQLite::Statement query(*reader_,
                            absl::StrCat("SELECT ", kTrialColumns,
                                         ", change_seq FROM trials "
                                         "WHERE sweep_id = ? AND change_seq > ? ORDER BY idx"));
    query.bind(1, sweep_id);
    query.bind(2, after_seq);
    TrialChanges changes;
    changes.last_seq = after_seq;
    while (query.executeStep()) {
      changes.trials.push_back(TrialFromRow(query, with_config));
      changes.last_seq = std::max(changes.last_seq, query.getColumn(13).getInt64());
    }
    return changes;
  });
}

absl::StatusOr<v1::Trial> TrialStore::GetTrial(int64_t trial_id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("get trial", [&]() -> absl::StatusOr<v1::Trial> {
    SQLite::Statement query(*reader_,
                            absl::StrCat("SELECT ", kTrialColumns, " FROM trials WHERE id = ?"));
    query.bind(1, trial_id);
    if (!query.executeStep()) {
      return absl::NotFoundError(absl::StrCat("trial ", trial_id, " not found"));
    }
    return TrialFromRow(query, /*with_config=*/true);
  });
}

absl::StatusOr<TrialCheckpoint> TrialStore::GetCheckpoint(int64_t trial_id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("get checkpoint", [&]() -> absl::StatusOr<TrialCheckpoint> {
    SQLite::Transaction snapshot(*reader_);
    SQLite::Statement trial(*reader_, "SELECT state FROM trials WHERE id = ?");
    trial.bind(1, trial_id);
    if (!trial.executeStep()) {
      return absl::NotFoundError(absl::StrCat("trial ", trial_id, " not found"));
    }
    TrialCheckpoint checkpoint;
    checkpoint.trial_state = static_cast<v1::TrialState>(trial.getColumn(0).getInt());
    SQLite::Statement query(*reader_,
                            "SELECT attempt, iteration, state FROM checkpoints WHERE trial_id = ?");
    query.bind(1, trial_id);
    if (!query.executeStep()) {
      const std::string state = absl::AsciiStrToLower(
          absl::StripPrefix(v1::TrialState_Name(checkpoint.trial_state), "TRIAL_STATE_"));
      return absl::NotFoundError(absl::StrCat(
          "trial ", trial_id, " (", state,
          ") kept no checkpoint: set train.keep_final_checkpoint: true in its sweep to keep a "
          "finished trial's final weights"));
    }
    checkpoint.attempt = query.getColumn(0).getInt();
    checkpoint.iteration = query.getColumn(1).getInt64();
    checkpoint.state = BlobOf(query.getColumn(2));
    return checkpoint;
  });
}

absl::StatusOr<int64_t> TrialStore::RecordPrediction(int64_t sweep_id, int64_t source_trial_id,
                                                     const std::string& source,
                                                     const std::string& json, int64_t now_ms) {
  if (static_cast<int64_t>(json.size()) > kMaxPredictionBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prediction: ", json.size(), " bytes of JSON exceed the limit of ", kMaxPredictionBytes));
  }
  // What the dashboard reads must be there: a prediction object, not any JSON.
  const nlohmann::json parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError("prediction: not valid JSON (`bitsweep predict --json`)");
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError("prediction: not a JSON object (`bitsweep predict --json`)");
  }
  const auto uniform = parsed.find("uniform");
  if (uniform == parsed.end() || !uniform->is_object() || !uniform->contains("min_bits") ||
      !(*uniform)["min_bits"].is_number_integer()) {
    return absl::InvalidArgumentError("prediction: uniform.min_bits missing or not an integer");
  }
  if (const auto bounds = parsed.find("bounds"); bounds == parsed.end() || !bounds->is_array()) {
    return absl::InvalidArgumentError("prediction: bounds missing or not an array");
  }
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("record prediction", [&]() -> absl::StatusOr<int64_t> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement sweep(*writer_, "SELECT 1 FROM sweeps WHERE id = ?");
    sweep.bind(1, sweep_id);
    if (!sweep.executeStep()) {
      return absl::NotFoundError(absl::StrCat("sweep ", sweep_id, " not found"));
    }
    if (source_trial_id != 0) {
      SQLite::Statement trial(*writer_, "SELECT 1 FROM trials WHERE id = ?");
      trial.bind(1, source_trial_id);
      if (!trial.executeStep()) {
        return absl::NotFoundError(
            absl::StrCat("source trial ", source_trial_id, " of the prediction not found"));
      }
    }
    SQLite::Statement insert(*writer_,
                             "INSERT INTO predictions (sweep_id, created_ms, source_trial_id, "
                             "source, json) VALUES (?, ?, ?, ?, ?)");
    insert.bind(1, sweep_id);
    insert.bind(2, now_ms);
    insert.bind(3, source_trial_id);
    insert.bind(4, source);
    insert.bind(5, json);
    insert.exec();
    const int64_t id = writer_->getLastInsertRowid();
    RecordEvent(*prepared_, now_ms, sweep_id, source_trial_id, "", "prediction_recorded",
                absl::StrCat("prediction ", id, source.empty() ? "" : " from ", source));
    transaction.commit();
    changes_.Notify();
    return id;
  });
}

absl::StatusOr<std::vector<StoredPrediction>> TrialStore::ListPredictions(int64_t sweep_id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("list predictions", [&]() -> absl::StatusOr<std::vector<StoredPrediction>> {
    SQLite::Transaction snapshot(*reader_);
    SQLite::Statement sweep(*reader_, "SELECT 1 FROM sweeps WHERE id = ?");
    sweep.bind(1, sweep_id);
    if (!sweep.executeStep()) {
      return absl::NotFoundError(absl::StrCat("sweep ", sweep_id, " not found"));
    }
    SQLite::Statement query(*reader_,
                            "SELECT id, created_ms, source_trial_id, source, json FROM predictions "
                            "WHERE sweep_id = ? ORDER BY id");
    query.bind(1, sweep_id);
    std::vector<StoredPrediction> predictions;
    while (query.executeStep()) {
      predictions.push_back({query.getColumn(0).getInt64(), sweep_id, query.getColumn(1).getInt64(),
                             query.getColumn(2).getInt64(), query.getColumn(3).getString(),
                             query.getColumn(4).getString()});
    }
    return predictions;
  });
}

absl::StatusOr<std::vector<v1::CurvePoint>> TrialStore::GetCurve(int64_t trial_id) {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("get curve", [&]() -> absl::StatusOr<std::vector<v1::CurvePoint>> {
    SQLite::Transaction snapshot(*reader_);
    SQLite::Statement exists(*reader_, "SELECT 1 FROM trials WHERE id = ?");
    exists.bind(1, trial_id);
    if (!exists.executeStep()) {
      return absl::NotFoundError(absl::StrCat("trial ", trial_id, " not found"));
    }
    SQLite::Statement query(
        *reader_,
        "SELECT iteration, epoch, train_loss, train_accuracy, test_loss, test_accuracy, "
        "learning_rate, stats FROM curve_points WHERE trial_id = ? ORDER BY iteration");
    query.bind(1, trial_id);
    std::vector<v1::CurvePoint> curve;
    while (query.executeStep()) {
      v1::CurvePoint& point = curve.emplace_back();
      // The sites/layers blob first: parsing merges into the point, the columns then set the rest.
      const SQLite::Column stats = query.getColumn(7);
      if (!stats.isNull() &&
          !point.ParseFromArray(stats.getBlob(), static_cast<int>(stats.getBytes()))) {
        return absl::DataLossError(absl::StrCat("trial ", trial_id,
                                                ": curve point statistics of "
                                                "iteration ",
                                                query.getColumn(0).getInt64(), " are corrupt"));
      }
      point.set_iteration(query.getColumn(0).getInt64());
      point.set_epoch(query.getColumn(1).getDouble());
      point.set_train_loss(query.getColumn(2).getDouble());
      point.set_train_accuracy(query.getColumn(3).getDouble());
      point.set_test_loss(query.getColumn(4).getDouble());
      point.set_test_accuracy(query.getColumn(5).getDouble());
      point.set_learning_rate(query.getColumn(6).getDouble());
    }
    return curve;
  });
}

// --- Workers and leases -------------------------------------------------------------------

absl::StatusOr<TrialStore::Registered> TrialStore::RegisterWorker(
    const std::string& worker_id, const std::string& incarnation, const std::string& host,
    int32_t slots, int64_t now_ms, int max_attempts, const std::vector<v1::TrialRef>& running,
    int64_t lease_expires_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("register worker", [&]() -> absl::StatusOr<Registered> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement known(*writer_, "SELECT incarnation FROM workers WHERE id = ?");
    known.bind(1, worker_id);
    int released = 0;
    if (known.executeStep() && known.getColumn(0).getString() != incarnation) {
      // A new incarnation: the old process is gone, so its trials will never report again.
      SQLite::Statement owned(*writer_,
                              "SELECT id, attempt, sweep_id, free_attempts FROM trials "
                              "WHERE state = ? AND lease_owner = ?");
      owned.bind(1, static_cast<int>(v1::TRIAL_STATE_RUNNING));
      owned.bind(2, worker_id);
      std::vector<RunningTrial> lost;
      while (owned.executeStep()) {
        lost.push_back({owned.getColumn(0).getInt64(), owned.getColumn(1).getInt(),
                        owned.getColumn(2).getInt64(), owned.getColumn(3).getInt()});
      }
      ReleaseTrials(lost, now_ms, max_attempts, "worker restarted");
      released = static_cast<int>(lost.size());
    }
    // Re-attach what the worker still runs (e.g. after a server restart) when the lease is
    // still this worker's for the same attempt; everything else must stop.
    Registered registered;
    registered.released = released;
    SQLite::Statement extend(*writer_, "UPDATE trials SET lease_expires_ms = ? WHERE id = ?");
    for (const v1::TrialRef& ref : running) {
      std::optional<LeaseRow> lease = ReadLease(*prepared_, ref.trial_id());
      if (lease && lease->state == v1::TRIAL_STATE_RUNNING && lease->owner == worker_id &&
          lease->attempt == ref.attempt()) {
        extend.reset();
        extend.bind(1, std::max(lease_expires_ms, now_ms));
        extend.bind(2, ref.trial_id());
        extend.exec();
      } else {
        registered.stop.push_back(ref);
      }
    }
    SQLite::Statement upsert(
        *writer_,
        "INSERT INTO workers (id, incarnation, host, slots, registered_ms, last_heartbeat_ms) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (id) DO UPDATE SET "
        "incarnation = excluded.incarnation, host = excluded.host, slots = excluded.slots, "
        "registered_ms = excluded.registered_ms, last_heartbeat_ms = excluded.last_heartbeat_ms");
    upsert.bind(1, worker_id);
    upsert.bind(2, incarnation);
    upsert.bind(3, host);
    upsert.bind(4, slots);
    upsert.bind(5, now_ms);
    upsert.exec();
    transaction.commit();
    changes_.Notify();
    return registered;
  });
}

namespace {

absl::Status TouchWorkerLocked(PreparedStatements& db, const std::string& worker_id,
                               const std::string& incarnation, int64_t now_ms) {
  PreparedStatements::Handle touch =
      db.Use("UPDATE workers SET last_heartbeat_ms = ? WHERE id = ? AND incarnation = ?");
  touch.bind(1, now_ms);
  touch.bind(2, worker_id);
  touch.bind(3, incarnation);
  if (touch.exec() == 0) {
    return absl::NotFoundError(absl::StrCat("worker '", worker_id, "' incarnation '", incarnation,
                                            "' is not registered: register again"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status TrialStore::TouchWorker(const std::string& worker_id, const std::string& incarnation,
                                     int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("touch worker", [&]() -> absl::Status {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    absl::Status status = TouchWorkerLocked(*prepared_, worker_id, incarnation, now_ms);
    if (!status.ok()) return status;
    transaction.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<bool> TrialStore::HasQueuedTrials() {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("has queued trials", [&]() -> absl::StatusOr<bool> {
    SQLite::Statement query(
        *reader_,
        "SELECT EXISTS (SELECT 1 FROM sweeps s WHERE s.state IN (?1, ?2) AND "
        "EXISTS (SELECT 1 FROM trials t WHERE t.sweep_id = s.id AND t.state = ?3))");
    query.bind(1, static_cast<int>(v1::SWEEP_STATE_QUEUED));
    query.bind(2, static_cast<int>(v1::SWEEP_STATE_RUNNING));
    query.bind(3, static_cast<int>(v1::TRIAL_STATE_QUEUED));
    query.executeStep();
    return query.getColumn(0).getInt() != 0;
  });
}

absl::StatusOr<std::optional<LeasedTrial>> TrialStore::LeaseNext(const std::string& worker_id,
                                                                 int64_t now_ms,
                                                                 int64_t lease_expires_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("lease trial", [&]() -> absl::StatusOr<std::optional<LeasedTrial>> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    std::optional<LeasedTrial> leased = LeaseNextLocked(worker_id, now_ms, lease_expires_ms);
    if (!leased) return leased;
    transaction.commit();
    changes_.Notify();
    return leased;
  });
}

absl::StatusOr<TrialStore::LeaseOutcome> TrialStore::ExpireTouchAndLease(
    const std::string& worker_id, const std::string& incarnation, int64_t now_ms,
    int64_t lease_expires_ms, int max_attempts) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("lease trial", [&]() -> absl::StatusOr<LeaseOutcome> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    LeaseOutcome outcome;
    outcome.expired = ExpireLeasesLocked(now_ms, max_attempts);
    absl::Status touched = TouchWorkerLocked(*prepared_, worker_id, incarnation, now_ms);
    if (touched.ok()) outcome.trial = LeaseNextLocked(worker_id, now_ms, lease_expires_ms);
    // The expiry stands even when the worker must register again.
    if (touched.ok() || outcome.expired > 0) transaction.commit();
    if (outcome.expired > 0 || outcome.trial) changes_.Notify();
    if (!touched.ok()) return touched;
    return outcome;
  });
}

std::optional<LeasedTrial> TrialStore::LeaseNextLocked(const std::string& worker_id, int64_t now_ms,
                                                       int64_t lease_expires_ms) {
  std::optional<LeasedTrial> leased;
  // Active sweeps are few; each lookup is a step on trials_by_sweep_state. Fair share:
  // among equal priorities the sweep with the fewest running trials goes first, so sweeps
  // of equal priority advance round-robin whatever their sizes.
  PreparedStatements::Handle sweeps = prepared_->Use(
      "SELECT s.id, (SELECT COUNT(*) FROM trials r WHERE r.sweep_id = s.id AND r.state = ?4) "
      "AS running FROM sweeps s WHERE s.state IN (?1, ?2) AND EXISTS "
      "(SELECT 1 FROM trials q WHERE q.sweep_id = s.id AND q.state = ?3) "
      "ORDER BY s.priority DESC, running ASC, s.id ASC LIMIT 1");
  sweeps.bind(1, static_cast<int>(v1::SWEEP_STATE_QUEUED));
  sweeps.bind(2, static_cast<int>(v1::SWEEP_STATE_RUNNING));
  sweeps.bind(3, static_cast<int>(v1::TRIAL_STATE_QUEUED));
  sweeps.bind(4, static_cast<int>(v1::TRIAL_STATE_RUNNING));
  if (!sweeps.executeStep()) return leased;
  const int64_t sweep_id = sweeps.getColumn(0).getInt64();
  PreparedStatements::Handle next = prepared_->Use(
      "SELECT id, attempt, config FROM trials "
      "WHERE sweep_id = ? AND state = ? ORDER BY idx LIMIT 1");
  next.bind(1, sweep_id);
  next.bind(2, static_cast<int>(v1::TRIAL_STATE_QUEUED));
  if (!next.executeStep()) return leased;
  leased.emplace();
  leased->trial_id = next.getColumn(0).getInt64();
  leased->sweep_id = sweep_id;
  leased->attempt = next.getColumn(1).getInt() + 1;
  leased->config.ParseFromString(BlobOf(next.getColumn(2)));
  if (leased->attempt > 1) {
    // An earlier attempt ran: resume from its checkpoint, and keep exactly the points up to
    // it so that the resumed run's points are not doubled (none kept without a checkpoint).
    PreparedStatements::Handle checkpoint =
        prepared_->Use("SELECT iteration, state FROM checkpoints WHERE trial_id = ?");
    checkpoint.bind(1, leased->trial_id);
    if (checkpoint.executeStep()) {
      leased->checkpoint_iteration = checkpoint.getColumn(0).getInt64();
      leased->checkpoint = BlobOf(checkpoint.getColumn(1));
    }
    PreparedStatements::Handle drop =
        prepared_->Use("DELETE FROM curve_points WHERE trial_id = ? AND iteration > ?");
    drop.bind(1, leased->trial_id);
    drop.bind(2, leased->checkpoint.empty() ? int64_t{-1} : leased->checkpoint_iteration);
    drop.exec();
    stored_points_.erase(leased->trial_id);
  }
  PreparedStatements::Handle update = prepared_->Use(
      "UPDATE trials SET state = ?1, attempt = ?2, lease_owner = ?3, worker_id = ?3, "
      "lease_expires_ms = ?4, started_ms = ?5, finished_ms = 0, error = '', change_seq = ?6 "
      "WHERE id = ?7");
  update.bind(1, static_cast<int>(v1::TRIAL_STATE_RUNNING));
  update.bind(2, leased->attempt);
  update.bind(3, worker_id);
  update.bind(4, lease_expires_ms);
  update.bind(5, now_ms);
  update.bind(6, NextSeq());
  update.bind(7, leased->trial_id);
  update.exec();
  UpdateSweepState(leased->sweep_id, now_ms);
  return leased;
}

absl::StatusOr<std::vector<v1::TrialRef>> TrialStore::Heartbeat(
    const std::string& worker_id, const std::string& incarnation,
    const std::vector<v1::TrialRef>& running, int64_t now_ms, int64_t lease_expires_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("heartbeat", [&]() -> absl::StatusOr<std::vector<v1::TrialRef>> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    absl::Status status = TouchWorkerLocked(*prepared_, worker_id, incarnation, now_ms);
    if (!status.ok()) return status;
    PreparedStatements::Handle extend =
        prepared_->Use("UPDATE trials SET lease_expires_ms = ? WHERE id = ?");
    std::vector<v1::TrialRef> stop;
    for (const v1::TrialRef& ref : running) {
      std::optional<LeaseRow> lease = ReadLease(*prepared_, ref.trial_id());
      if (lease && lease->state == v1::TRIAL_STATE_RUNNING && lease->owner == worker_id &&
          lease->attempt == ref.attempt()) {
        extend.reset();
        extend.bind(1, lease_expires_ms);
        extend.bind(2, ref.trial_id());
        extend.exec();
      } else {
        stop.push_back(ref);
      }
    }
    transaction.commit();
    return stop;
  });
}

absl::StatusOr<ProgressVerdict> TrialStore::AppendPoints(
    const std::string& worker_id, const v1::TrialRef& ref,
    const std::vector<v1::CurvePoint>& points) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("report progress", [&]() -> absl::StatusOr<ProgressVerdict> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    absl::StatusOr<LeaseRow> lease = CheckFence(*prepared_, worker_id, ref);
    if (!lease.ok()) return lease.status();
    ProgressVerdict verdict;
    if (lease->state == v1::TRIAL_STATE_CANCELLED) {
      verdict.stop = true;
      return verdict;
    }
    ASSIGN_OR_RETURN(verdict, InsertPointsLocked(worker_id, ref, lease->sweep_id, points,
                                                 /*apply_pruning=*/true));
    transaction.commit();
    if (!points.empty()) changes_.Notify();
    return verdict;
  });
}

absl::StatusOr<ProgressVerdict> TrialStore::InsertPointsLocked(
    const std::string& worker_id, const v1::TrialRef& ref, int64_t sweep_id,
    const std::vector<v1::CurvePoint>& points, bool apply_pruning) {
  ProgressVerdict verdict;
  // Counted once per trial and server run, then kept in memory: a COUNT per report would
  // make ingestion quadratic in the curve's length. Re-sent iterations are counted as new,
  // which only makes the check stricter near the limit.
  auto counted = stored_points_.find(ref.trial_id());
  if (counted == stored_points_.end()) {
    PreparedStatements::Handle count =
        prepared_->Use("SELECT COUNT(*) FROM curve_points WHERE trial_id = ?");
    count.bind(1, ref.trial_id());
    count.executeStep();
    counted = stored_points_.emplace(ref.trial_id(), count.getColumn(0).getInt64()).first;
  }
  const int64_t stored = counted->second;
  if (stored + static_cast<int64_t>(points.size()) > max_curve_points_per_trial_) {
    return absl::ResourceExhaustedError(absl::StrCat("trial ", ref.trial_id(), ": more than ",
                                                     max_curve_points_per_trial_, " curve points (",
                                                     stored, " stored, ", points.size(), " sent)"));
  }
  // All points of the call in this one transaction with one prepared statement: the commit,
  // not the rows, is what costs.
  PreparedStatements::Handle insert = prepared_->Use(
      "INSERT OR REPLACE INTO curve_points (trial_id, iteration, attempt, epoch, train_loss, "
      "train_accuracy, test_loss, test_accuracy, learning_rate, stats) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  v1::CurvePoint stats;
  std::string stats_bytes;
  for (const v1::CurvePoint& point : points) {
    insert.reset();
    // sites/layers go into one blob, only when recorded: most points carry none.
    if (point.sites_size() > 0 || point.layers_size() > 0) {
      *stats.mutable_sites() = point.sites();
      *stats.mutable_layers() = point.layers();
      stats.SerializeToString(&stats_bytes);
      insert.bind(10, stats_bytes.data(), static_cast<int>(stats_bytes.size()));
    } else {
      insert.bind(10);
    }
    insert.bind(1, ref.trial_id());
    insert.bind(2, point.iteration());
    insert.bind(3, ref.attempt());
    insert.bind(4, point.epoch());
    insert.bind(5, point.train_loss());
    insert.bind(6, point.train_accuracy());
    insert.bind(7, point.test_loss());
    insert.bind(8, point.test_accuracy());
    insert.bind(9, point.learning_rate());
    insert.exec();
  }
  if (!apply_pruning) {
    counted->second += static_cast<int64_t>(points.size());
    return verdict;
  }
  PreparedStatements::Handle pruned = prepared_->Use("SELECT prune FROM trials WHERE id = ?");
  pruned.bind(1, ref.trial_id());
  verdict.prune = pruned.executeStep() && pruned.getColumn(0).getInt() != 0;
  const PruningRule& rule = PruningOf(sweep_id);
  if (!verdict.prune && rule.enabled()) {
    PreparedStatements::Handle others = prepared_->Use(
        "SELECT c.test_accuracy FROM trials t JOIN curve_points c "
        "ON c.trial_id = t.id AND c.iteration = ?1 "
        "WHERE t.sweep_id = ?2 AND t.id != ?3");
    for (const v1::CurvePoint& point : points) {
      if (!rule.DecidesAt(point.iteration())) continue;
      others.reset();
      others.bind(1, point.iteration());
      others.bind(2, sweep_id);
      others.bind(3, ref.trial_id());
      std::vector<double> accuracies;
      while (others.executeStep()) accuracies.push_back(others.getColumn(0).getDouble());
      if (rule.ShouldPrune(point.test_accuracy(), std::move(accuracies))) {
        verdict.prune = true;
        PreparedStatements::Handle mark =
            prepared_->Use("UPDATE trials SET prune = 1 WHERE id = ?");
        mark.bind(1, ref.trial_id());
        mark.exec();
        RecordEvent(*prepared_, 0, sweep_id, ref.trial_id(), worker_id, "trial_pruned",
                    absl::StrCat("below the median at iteration ", point.iteration()));
        break;
      }
    }
  }
  verdict.stop = verdict.prune;
  counted->second += static_cast<int64_t>(points.size());
  return verdict;
}

absl::StatusOr<ProgressVerdict> TrialStore::StoreCheckpoint(
    const std::string& worker_id, const v1::TrialRef& ref, int64_t iteration,
    const std::string& state, int64_t now_ms, const std::vector<v1::CurvePoint>& points) {
  if (static_cast<int64_t>(state.size()) > kMaxCheckpointBytes) {
    return absl::ResourceExhaustedError(absl::StrCat("trial ", ref.trial_id(), ": checkpoint of ",
                                                     state.size(), " bytes exceeds the limit of ",
                                                     kMaxCheckpointBytes, " bytes"));
  }
  if (iteration < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "trial ", ref.trial_id(), ": checkpoint iteration ", iteration, " is negative"));
  }
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("store checkpoint", [&]() -> absl::StatusOr<ProgressVerdict> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    absl::StatusOr<LeaseRow> lease = CheckFence(*prepared_, worker_id, ref);
    if (!lease.ok()) return lease.status();
    if (lease->state != v1::TRIAL_STATE_RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("trial ", ref.trial_id(), " is not running (state ",
                       v1::TrialState_Name(static_cast<v1::TrialState>(lease->state)),
                       "): checkpoint not stored"));
    }
    // The points first: a checkpoint is never stored without the points up to it.
    ASSIGN_OR_RETURN(ProgressVerdict verdict,
                     InsertPointsLocked(worker_id, ref, lease->sweep_id, points,
                                        /*apply_pruning=*/true));
    PreparedStatements::Handle upsert = prepared_->Use(
        "INSERT OR REPLACE INTO checkpoints (trial_id, attempt, iteration, state, created_ms) "
        "VALUES (?, ?, ?, ?, ?)");
    upsert.bind(1, ref.trial_id());
    upsert.bind(2, ref.attempt());
    upsert.bind(3, iteration);
    upsert.bindNoCopy(4, state.data(), static_cast<int>(state.size()));
    upsert.bind(5, now_ms);
    upsert.exec();
    transaction.commit();
    if (!points.empty()) changes_.Notify();
    return verdict;
  });
}

absl::Status TrialStore::ReleaseTrial(const std::string& worker_id, const v1::TrialRef& ref,
                                      const std::string& reason, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("release trial", [&]() -> absl::Status {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    absl::StatusOr<LeaseRow> lease = CheckFence(*prepared_, worker_id, ref);
    if (!lease.ok()) return lease.status();
    if (lease->state == v1::TRIAL_STATE_CANCELLED) {
      // The worker stopped before it heard of the cancel: drop its lease, keep CANCELLED.
      ReleaseCancelledLease(*prepared_, ref.trial_id());
      transaction.commit();
      return absl::OkStatus();
    }
    // Not the trial's fault: this attempt does not count against max_attempts.
    SQLite::Statement requeue(
        *writer_,
        "UPDATE trials SET state = ?, lease_owner = NULL, lease_expires_ms = 0, "
        "free_attempts = free_attempts + 1, change_seq = ? WHERE id = ?");
    requeue.bind(1, static_cast<int>(v1::TRIAL_STATE_QUEUED));
    requeue.bind(2, NextSeq());
    requeue.bind(3, ref.trial_id());
    requeue.exec();
    RecordEvent(*prepared_, now_ms, lease->sweep_id, ref.trial_id(), worker_id, "trial_released",
                reason.empty() ? std::string("released by the worker") : reason);
    UpdateSweepState(lease->sweep_id, now_ms);
    transaction.commit();
    changes_.Notify();
    return absl::OkStatus();
  });
}

absl::Status TrialStore::CompleteTrial(const std::string& worker_id, const v1::TrialRef& ref,
                                       const v1::TrialResult* result, const std::string& error,
                                       int64_t now_ms, const std::vector<v1::CurvePoint>& points) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("complete trial", [&]() -> absl::Status {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    RETURN_IF_ERROR(CompleteTrialLocked(worker_id, ref, result, error, now_ms, points));
    transaction.commit();
    changes_.Notify();
    return absl::OkStatus();
  });
}

absl::StatusOr<TrialStore::LeaseOutcome> TrialStore::CompleteAndLease(
    const std::string& worker_id, const v1::TrialRef& ref, const v1::TrialResult* result,
    const std::string& error, int64_t now_ms, const std::vector<v1::CurvePoint>& points,
    const std::string& incarnation, int64_t lease_expires_ms, int max_attempts) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("complete trial", [&]() -> absl::StatusOr<LeaseOutcome> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    RETURN_IF_ERROR(CompleteTrialLocked(worker_id, ref, result, error, now_ms, points));
    LeaseOutcome outcome;
    outcome.expired = ExpireLeasesLocked(now_ms, max_attempts);
    // An unknown incarnation leases nothing here; the worker's next LeaseTrial is told to
    // register again. The completion stands either way.
    if (TouchWorkerLocked(*prepared_, worker_id, incarnation, now_ms).ok()) {
      outcome.trial = LeaseNextLocked(worker_id, now_ms, lease_expires_ms);
    }
    transaction.commit();
    changes_.Notify();
    return outcome;
  });
}

absl::Status TrialStore::CompleteTrialLocked(const std::string& worker_id, const v1::TrialRef& ref,
                                             const v1::TrialResult* result,
                                             const std::string& error, int64_t now_ms,
                                             const std::vector<v1::CurvePoint>& points) {
  absl::StatusOr<LeaseRow> lease = CheckFence(*prepared_, worker_id, ref);
  if (!lease.ok()) return lease.status();
  if (lease->state == v1::TRIAL_STATE_CANCELLED) {
    // The worker stopped before it heard of the cancel: drop its lease, keep CANCELLED.
    ReleaseCancelledLease(*prepared_, ref.trial_id());
    return absl::OkStatus();
  }
  // The last points with the result, in its transaction; a finished trial prunes nothing.
  if (!points.empty()) {
    absl::StatusOr<ProgressVerdict> stored =
        InsertPointsLocked(worker_id, ref, lease->sweep_id, points, /*apply_pruning=*/false);
    if (!stored.ok()) return stored.status();
  }
  PreparedStatements::Handle update = prepared_->Use(
      "UPDATE trials SET state = ?1, result = ?2, outcome = ?3, error = ?4, finished_ms = ?5, "
      "lease_owner = NULL, lease_expires_ms = 0, change_seq = ?6 WHERE id = ?7");
  std::string result_blob;
  if (result != nullptr) {
    result_blob = result->SerializeAsString();
    update.bind(1, static_cast<int>(v1::TRIAL_STATE_DONE));
    update.bindNoCopy(2, result_blob.data(), static_cast<int>(result_blob.size()));
    update.bind(3, static_cast<int>(result->outcome()));
    update.bind(4, "");
  } else {
    update.bind(1, static_cast<int>(v1::TRIAL_STATE_FAILED));
    update.bind(2);  // NULL
    update.bind(3, 0);
    update.bind(4, error.empty() ? std::string("failed (no reason given)") : error);
  }
  update.bind(5, now_ms);
  update.bind(6, NextSeq());
  update.bind(7, ref.trial_id());
  update.exec();
  PreparedStatements::Handle done =
      prepared_->Use("UPDATE workers SET trials_done = trials_done + 1 WHERE id = ?");
  done.bind(1, worker_id);
  done.exec();
  if (result == nullptr) {
    RecordEvent(*prepared_, now_ms, lease->sweep_id, ref.trial_id(), worker_id, "trial_failed",
                error);
  }
  stored_points_.erase(ref.trial_id());
  // A finished trial never resumes: its checkpoint is dead weight, unless the trial asked to
  // keep its final weights (train.keep_final_checkpoint) and is DONE. Only trials holding a
  // checkpoint pay for reading the config.
  bool keep = false;
  if (result != nullptr) {
    PreparedStatements::Handle kept = prepared_->Use(
        "SELECT t.config FROM trials t JOIN checkpoints c ON c.trial_id = t.id WHERE t.id = ?");
    kept.bind(1, ref.trial_id());
    if (kept.executeStep()) {
      v1::TrialConfig config;
      keep = config.ParseFromString(BlobOf(kept.getColumn(0))) &&
             config.train().keep_final_checkpoint();
    }
  }
  if (!keep) {
    PreparedStatements::Handle drop_checkpoint =
        prepared_->Use("DELETE FROM checkpoints WHERE trial_id = ?");
    drop_checkpoint.bind(1, ref.trial_id());
    drop_checkpoint.exec();
  }
  absl::StatusOr<int> planned = PlanFollowUp(lease->sweep_id, now_ms);
  if (!planned.ok()) return planned.status();
  UpdateSweepState(lease->sweep_id, now_ms);
  return absl::OkStatus();
}

absl::StatusOr<int> TrialStore::ExpireLeases(int64_t now_ms, int max_attempts) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("expire leases", [&]() -> absl::StatusOr<int> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    const int expired = ExpireLeasesLocked(now_ms, max_attempts);
    if (expired == 0) return 0;
    transaction.commit();
    changes_.Notify();
    return expired;
  });
}

int TrialStore::ExpireLeasesLocked(int64_t now_ms, int max_attempts) {
  PreparedStatements::Handle expired = prepared_->Use(
      "SELECT id, attempt, sweep_id, free_attempts FROM trials "
      "WHERE state = ? AND lease_expires_ms < ?");
  expired.bind(1, static_cast<int>(v1::TRIAL_STATE_RUNNING));
  expired.bind(2, now_ms);
  std::vector<RunningTrial> lost;
  while (expired.executeStep()) {
    lost.push_back({expired.getColumn(0).getInt64(), expired.getColumn(1).getInt(),
                    expired.getColumn(2).getInt64(), expired.getColumn(3).getInt()});
  }
  if (lost.empty()) return 0;
  ReleaseTrials(lost, now_ms, max_attempts, "lease expired");
  return static_cast<int>(lost.size());
}

absl::StatusOr<int> TrialStore::ExtendRunningLeases(int64_t min_expires_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return Guarded("extend leases", [&]() -> absl::StatusOr<int> {
    SQLite::Transaction transaction(*writer_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement extend(*writer_,
                             "UPDATE trials SET lease_expires_ms = ?1 "
                             "WHERE state = ?2 AND lease_expires_ms < ?1");
    extend.bind(1, min_expires_ms);
    extend.bind(2, static_cast<int>(v1::TRIAL_STATE_RUNNING));
    int extended = extend.exec();
    transaction.commit();
    return extended;
  });
}

absl::StatusOr<std::vector<v1::WorkerInfo>> TrialStore::ListWorkers() {
  std::lock_guard<std::mutex> lock(read_mu_);
  return Guarded("list workers", [&]() -> absl::StatusOr<std::vector<v1::WorkerInfo>> {
    SQLite::Statement query(
        *reader_,
        "SELECT w.id, w.incarnation, w.host, w.slots, w.last_heartbeat_ms, w.trials_done, "
        "(SELECT COUNT(*) FROM trials t WHERE t.lease_owner = w.id AND t.state = ?) "
        "FROM workers w ORDER BY w.id");
    query.bind(1, static_cast<int>(v1::TRIAL_STATE_RUNNING));
    std::vector<v1::WorkerInfo> workers;
    while (query.executeStep()) {
      v1::WorkerInfo& worker = workers.emplace_back();
      worker.set_worker_id(query.getColumn(0).getString());
      worker.set_incarnation(query.getColumn(1).getString());
      worker.set_host(query.getColumn(2).getString());
      worker.set_slots(query.getColumn(3).getInt());
      worker.set_last_heartbeat_unix_ms(query.getColumn(4).getInt64());
      worker.set_trials_done(query.getColumn(5).getInt64());
      worker.set_running(query.getColumn(6).getInt());
    }
    return workers;
  });
}

// --- Private ------------------------------------------------------------------------------

void TrialStore::ReleaseTrials(const std::vector<RunningTrial>& trials, int64_t now_ms,
                               int max_attempts, const std::string& reason) {
  PreparedStatements::Handle requeue = prepared_->Use(
      "UPDATE trials SET state = ?, lease_owner = NULL, lease_expires_ms = 0, "
      "change_seq = ? WHERE id = ?");
  PreparedStatements::Handle fail = prepared_->Use(
      "UPDATE trials SET state = ?, lease_owner = NULL, lease_expires_ms = 0, "
      "error = ?, finished_ms = ?, change_seq = ? WHERE id = ?");
  std::set<int64_t> sweeps;
  for (const RunningTrial& trial : trials) {
    sweeps.insert(trial.sweep_id);
    const int32_t lost_leases = trial.attempt - trial.free_attempts;
    if (lost_leases < max_attempts) {
      requeue.reset();
      requeue.bind(1, static_cast<int>(v1::TRIAL_STATE_QUEUED));
      requeue.bind(2, NextSeq());
      requeue.bind(3, trial.id);
      requeue.exec();
      RecordEvent(*prepared_, now_ms, trial.sweep_id, trial.id, "", "trial_requeued",
                  absl::StrCat(reason, " (attempt ", trial.attempt, ")"));
    } else {
      std::string error = absl::StrCat(reason, " ", lost_leases, " times (worker lost)");
      fail.reset();
      fail.bind(1, static_cast<int>(v1::TRIAL_STATE_FAILED));
      fail.bind(2, error);
      fail.bind(3, now_ms);
      fail.bind(4, NextSeq());
      fail.bind(5, trial.id);
      fail.exec();
      RecordEvent(*prepared_, now_ms, trial.sweep_id, trial.id, "", "trial_failed", error);
    }
  }
  for (int64_t sweep_id : sweeps) {
    // A failed bisect probe still lets the search go on; planning errors only log here.
    (void)PlanFollowUp(sweep_id, now_ms);
    UpdateSweepState(sweep_id, now_ms);
  }
}

void TrialStore::UpdateSweepState(int64_t sweep_id, int64_t now_ms) {
  PreparedStatements::Handle current = prepared_->Use("SELECT state FROM sweeps WHERE id = ?");
  current.bind(1, sweep_id);
  if (!current.executeStep()) return;
  int state = current.getColumn(0).getInt();
  if (state == v1::SWEEP_STATE_CANCELLED || state == v1::SWEEP_STATE_DONE) return;

  PreparedStatements::Handle active = prepared_->Use(
      "SELECT EXISTS (SELECT 1 FROM trials WHERE sweep_id = ?1 AND state = ?2), "
      "EXISTS (SELECT 1 FROM trials WHERE sweep_id = ?1 AND state = ?3), "
      "EXISTS (SELECT 1 FROM trials WHERE sweep_id = ?1 AND state > ?3)");
  active.bind(1, sweep_id);
  active.bind(2, static_cast<int>(v1::TRIAL_STATE_QUEUED));
  active.bind(3, static_cast<int>(v1::TRIAL_STATE_RUNNING));
  active.executeStep();
  bool any_queued = active.getColumn(0).getInt() != 0;
  bool any_running = active.getColumn(1).getInt() != 0;
  bool any_finished = active.getColumn(2).getInt() != 0;
  int next_state = v1::SWEEP_STATE_QUEUED;
  if (!any_queued && !any_running) {
    next_state = v1::SWEEP_STATE_DONE;
  } else if (any_running || any_finished) {
    next_state = v1::SWEEP_STATE_RUNNING;
  }
  // A paused sweep stays paused until resumed, unless nothing is left to run.
  if (state == v1::SWEEP_STATE_PAUSED && next_state != v1::SWEEP_STATE_DONE) return;
  if (next_state == state) return;
  PreparedStatements::Handle update =
      prepared_->Use("UPDATE sweeps SET state = ?, finished_ms = ? WHERE id = ?");
  update.bind(1, next_state);
  update.bind(2, next_state == v1::SWEEP_STATE_DONE ? now_ms : int64_t{0});
  update.bind(3, sweep_id);
  update.exec();
}

const PruningRule& TrialStore::PruningOf(int64_t sweep_id) {
  auto it = pruning_rules_.find(sweep_id);
  if (it != pruning_rules_.end()) return it->second;
  PruningRule rule;
  SQLite::Statement query(*writer_, "SELECT spec FROM sweeps WHERE id = ?");
  query.bind(1, sweep_id);
  if (query.executeStep()) {
    v1::SweepSpec spec;
    spec.ParseFromString(BlobOf(query.getColumn(0)));
    // Specs were validated at submit; an invalid stored rule (older server) means no pruning.
    absl::StatusOr<PruningRule> parsed = PruningRule::FromConfig(spec.pruning());
    if (parsed.ok()) rule = *std::move(parsed);
  }
  return pruning_rules_.emplace(sweep_id, std::move(rule)).first->second;
}

absl::StatusOr<int> TrialStore::PlanFollowUp(int64_t sweep_id, int64_t now_ms) {
  if (!follow_up_planner_) return 0;
  // Called on every finished trial: only bisect sweeps plan, so the others' specs are parsed
  // once, not per trial.
  if (auto known = plans_follow_ups_.find(sweep_id);
      known != plans_follow_ups_.end() && !known->second) {
    return 0;
  }
  SQLite::Statement query(*writer_, "SELECT spec, state FROM sweeps WHERE id = ?");
  query.bind(1, sweep_id);
  if (!query.executeStep()) return 0;
  v1::SweepSpec spec;
  spec.ParseFromString(BlobOf(query.getColumn(0)));
  plans_follow_ups_[sweep_id] = spec.method() == "bisect";
  if (spec.method() != "bisect") return 0;
  // A cancelled search plans nothing more.
  if (query.getColumn(1).getInt() == v1::SWEEP_STATE_CANCELLED) return 0;
  int reused = 0;
  // Reused probes finish at once and may call for the next ones. The planner only returns
  // configs the sweep does not hold yet, so this ends.
  while (true) {
    SQLite::Statement rows(*writer_, absl::StrCat("SELECT ", kTrialColumns,
                                                  " FROM trials WHERE sweep_id = ? ORDER BY idx"));
    rows.bind(1, sweep_id);
    std::vector<v1::Trial> trials;
    while (rows.executeStep()) trials.push_back(TrialFromRow(rows, /*with_config=*/false));
    absl::StatusOr<std::vector<PlannedTrial>> planned = follow_up_planner_(spec, trials);
    if (!planned.ok()) return planned.status();
    if (planned->empty()) return reused;
    const auto first_idx = static_cast<int64_t>(trials.size());
    InsertTrials(sweep_id, *planned, first_idx);
    SQLite::Statement count(*writer_, "UPDATE sweeps SET trial_count = ? WHERE id = ?");
    count.bind(1, static_cast<int64_t>(trials.size() + planned->size()));
    count.bind(2, sweep_id);
    count.exec();
    const int reused_now = ReuseFinishedTrials(sweep_id, first_idx, now_ms);
    if (reused_now == 0) return reused;
    reused += reused_now;
  }
}

}  // namespace bitsweep::server
