-- Per-site quantisation statistics and per-layer gradient statistics of a curve point
-- (CurvePoint.sites and CurvePoint.layers), stored as a serialised bitsweep.v1.CurvePoint
-- holding only those two fields. NULL when the worker recorded none, which keeps the rows of
-- trials without statistics as small as before.
ALTER TABLE curve_points ADD COLUMN stats BLOB;
