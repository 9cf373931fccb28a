-- Issue 4: a trial's identity is its config_hash (config and seed). A new sweep reuses the
-- finished result of a trial with the same hash in any other sweep instead of running it again
-- (server/trial_store.cc, ReuseFinishedTrials). This index makes that lookup one probe per trial.
CREATE INDEX trials_by_config_hash ON trials (config_hash, state);
