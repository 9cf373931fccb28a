-- Issue 4: checkpoints for resume, sweep identity for idempotent submits, attempt budgets that
-- releases and reruns do not consume, and pruning decisions. Never edit: add 0003_*.sql.

-- The latest checkpoint of each trial (one row per trial, replaced by newer uploads).
CREATE TABLE checkpoints (
  trial_id INTEGER PRIMARY KEY REFERENCES trials (id) ON DELETE CASCADE,
  attempt INTEGER NOT NULL,            -- the attempt that uploaded it
  iteration INTEGER NOT NULL,          -- taken after this iteration; points up to it are stored
  state BLOB NOT NULL,                 -- the trainer's serialised state (opaque)
  created_ms INTEGER NOT NULL
);

-- Hex SHA-256 of the deterministic serialization of the spec: resubmitting the same spec finds
-- the sweep instead of duplicating it.
ALTER TABLE sweeps ADD COLUMN spec_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX sweeps_by_spec_hash ON sweeps (spec_hash);

-- Attempts that do not count against max_attempts: a worker's release on shutdown, and the
-- attempts before a rerun. Lost leases = attempt - free_attempts.
ALTER TABLE trials ADD COLUMN free_attempts INTEGER NOT NULL DEFAULT 0;
-- 1 once the pruning rule stopped the trial; the worker then completes it as PRUNED.
ALTER TABLE trials ADD COLUMN prune INTEGER NOT NULL DEFAULT 0;
