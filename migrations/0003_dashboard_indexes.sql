-- The dashboard's read model (server/sweep_read_model.cc) checks every trial of a sweep for
-- changes on each request: (id, state, change_seq) in expansion order. This index covers that
-- scan, so a 10,000-trial sweep is read from the index alone instead of 10,000 table rows.
CREATE INDEX trials_dashboard ON trials (sweep_id, idx, state, change_seq);
