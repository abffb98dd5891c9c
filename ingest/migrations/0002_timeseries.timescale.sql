-- TimescaleDB 2.x: every TimescaleDB-specific statement of the project lives in *.timescale.sql
-- files (schema) and ingest/maintenance.py (foreground jobs). Written from the 2.x API reference:
-- create_hypertable(by_range), compression settings, add_compression_policy, add_retention_policy,
-- continuous aggregates with real-time aggregation (materialized_only = false).

SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('parking_events', by_range('time', INTERVAL '7 days'), if_not_exists => TRUE, migrate_data => TRUE);

ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, metric',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('readings', compress_after => INTERVAL '7 days', if_not_exists => TRUE);

ALTER TABLE parking_events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('parking_events', compress_after => INTERVAL '30 days', if_not_exists => TRUE);

-- Retention drops raw chunks only; the continuous aggregates below keep their rows, because their
-- refresh window (3 days for hourly, 7 for daily) never reaches back to dropped chunks.
SELECT add_retention_policy('readings', drop_after => INTERVAL '365 days', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       metric,
       avg(value) AS avg,
       min(value) AS min,
       max(value) AS max,
       count(value) AS count
FROM readings
GROUP BY time_bucket(INTERVAL '1 hour', time), device_id, metric
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', time) AS bucket,
       device_id,
       metric,
       avg(value) AS avg,
       min(value) AS min,
       max(value) AS max,
       count(value) AS count
FROM readings
GROUP BY time_bucket(INTERVAL '1 day', time), device_id, metric
WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_1h',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('readings_1d',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);
