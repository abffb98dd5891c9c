-- Plain-PostgreSQL fallback (laptops, CI): the same names as the TimescaleDB variant, with the
-- aggregates as materialized views refreshed by `citysense db maintain` and ingest.aggregates.
-- Reads that must be live (the API's series) fall back to the raw table for recent buckets.

CREATE INDEX IF NOT EXISTS readings_time_idx ON readings (time DESC);
CREATE INDEX IF NOT EXISTS parking_events_time_idx ON parking_events (time DESC);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h AS
SELECT date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       device_id,
       metric,
       avg(value) AS avg,
       min(value) AS min,
       max(value) AS max,
       count(value) AS count
FROM readings
GROUP BY 1, device_id, metric
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS readings_1h_key ON readings_1h (device_id, metric, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1d AS
SELECT date_bin(INTERVAL '1 day', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       device_id,
       metric,
       avg(value) AS avg,
       min(value) AS min,
       max(value) AS max,
       count(value) AS count
FROM readings
GROUP BY 1, device_id, metric
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS readings_1d_key ON readings_1d (device_id, metric, bucket);
