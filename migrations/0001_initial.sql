-- The initial schema (DESIGN §6). Never edit an applied migration: add 0002_*.sql instead.
-- States are the numeric values of bitsweep.v1.SweepState / TrialState; times are Unix ms.

CREATE TABLE sweeps (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  spec BLOB NOT NULL,                  -- serialized bitsweep.v1.SweepSpec
  priority INTEGER NOT NULL DEFAULT 0,
  state INTEGER NOT NULL,
  trial_count INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sweeps_by_state ON sweeps (state, priority, id);

CREATE TABLE trials (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sweep_id INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,                -- position in the sweep's expansion order
  state INTEGER NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,  -- leases handed out so far: the fencing token
  config BLOB NOT NULL,                -- serialized bitsweep.v1.TrialConfig (seed included)
  params TEXT NOT NULL,                -- JSON [[path, value], ...]
  seed INTEGER NOT NULL,
  config_hash TEXT NOT NULL,
  lease_owner TEXT,                    -- worker id holding the lease (RUNNING, or CANCELLED while running)
  lease_expires_ms INTEGER NOT NULL DEFAULT 0,
  result BLOB,                         -- serialized bitsweep.v1.TrialResult when DONE
  outcome INTEGER NOT NULL DEFAULT 0,  -- result's TrialOutcome, for counting diverged trials
  error TEXT NOT NULL DEFAULT '',
  worker_id TEXT NOT NULL DEFAULT '',  -- the last worker that ran it
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  change_seq INTEGER NOT NULL DEFAULT 0, -- store-wide sequence of the last state change (watchers)
  UNIQUE (sweep_id, idx)
);
CREATE INDEX trials_by_sweep_state ON trials (sweep_id, state, idx);
-- Covers the per-state counts (with diverged outcomes) of sweep summaries.
CREATE INDEX trials_by_sweep_outcome ON trials (sweep_id, state, outcome);
CREATE INDEX trials_by_change ON trials (sweep_id, change_seq);
CREATE INDEX trials_running ON trials (state, lease_expires_ms);
CREATE INDEX trials_by_owner ON trials (lease_owner) WHERE lease_owner IS NOT NULL;

-- A re-sent point (same trial and iteration, e.g. after a resume) replaces the old one.
CREATE TABLE curve_points (
  trial_id INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
  iteration INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  epoch REAL NOT NULL,
  train_loss REAL NOT NULL,
  train_accuracy REAL NOT NULL,
  test_loss REAL NOT NULL,
  test_accuracy REAL NOT NULL,
  learning_rate REAL NOT NULL,
  PRIMARY KEY (trial_id, iteration)
) WITHOUT ROWID;

CREATE TABLE workers (
  id TEXT PRIMARY KEY,
  incarnation TEXT NOT NULL,
  host TEXT NOT NULL DEFAULT '',
  slots INTEGER NOT NULL DEFAULT 1,
  registered_ms INTEGER NOT NULL,
  last_heartbeat_ms INTEGER NOT NULL,
  trials_done INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms INTEGER NOT NULL,
  sweep_id INTEGER,
  trial_id INTEGER,
  worker_id TEXT,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT ''
);
