-- Issue 8: predictions of seed 001 (noise gains, mismatch bound, per-layer precision) and seed 003
-- (accumulator width) recorded on a sweep by `bitsweep predict --record`, shown by the dashboard
-- next to the sweep's measurements. Never edit: add 0007_*.sql.
CREATE TABLE predictions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sweep_id INTEGER NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
  created_ms INTEGER NOT NULL,
  source_trial_id INTEGER NOT NULL DEFAULT 0,  -- the trial whose weights it used (0: none)
  source TEXT NOT NULL DEFAULT '',             -- where the model came from, for people
  json TEXT NOT NULL                           -- `bitsweep predict --json`'s object
);
CREATE INDEX predictions_by_sweep ON predictions (sweep_id, id);
