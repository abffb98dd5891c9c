-- Plain-PostgreSQL fallback: the time indexes of readings and parking_events ascend.
-- Readings arrive in time order, so a (time DESC) index took every new entry at its leftmost
-- leaf: each insert descended the whole tree, and each full leftmost page split in halves
-- that were never filled again (500,000 readings of the ingest bench: 10.4 MB of index; an
-- ascending one, whose rightmost leaf PostgreSQL caches and splits 90/10, holds them in 5.9 MB).
-- A btree is read in either direction, so every query these indexes serve is served the same:
-- the health probe's newest reading (api/health_probe.py, max(time)), the alert evaluator's
-- "readings since" scans (alerts/store.py), retention (ingest/maintenance.py, time < cutoff) and
-- the parking queries by time.
DROP INDEX IF EXISTS readings_time_idx;
CREATE INDEX readings_time_idx ON readings (time);
DROP INDEX IF EXISTS parking_events_time_idx;
CREATE INDEX parking_events_time_idx ON parking_events (time);
