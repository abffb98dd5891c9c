-- Plain-PostgreSQL fallback: the aggregates become tables refreshed by window (ingest/aggregates.py),
-- like TimescaleDB's continuous aggregates, instead of materialized views rebuilt whole. A whole
-- rebuild recomputed every bucket from the raw rows still there, so once retention deleted old raw
-- readings their hourly and daily aggregates vanished too; the architecture keeps aggregates forever.

CREATE TABLE readings_1h_t (
    bucket timestamptz NOT NULL,
    device_id text NOT NULL,
    metric text NOT NULL,
    avg double precision,
    min double precision,
    max double precision,
    count bigint NOT NULL,
    PRIMARY KEY (device_id, metric, bucket)
);
INSERT INTO readings_1h_t
SELECT date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'), device_id, metric,
       avg(value), min(value), max(value), count(value)
FROM readings GROUP BY 1, 2, 3;
DROP MATERIALIZED VIEW readings_1h;
ALTER TABLE readings_1h_t RENAME TO readings_1h;
ALTER INDEX readings_1h_t_pkey RENAME TO readings_1h_pkey;
CREATE INDEX readings_1h_bucket_idx ON readings_1h (bucket);

CREATE TABLE readings_1d_t (
    bucket timestamptz NOT NULL,
    device_id text NOT NULL,
    metric text NOT NULL,
    avg double precision,
    min double precision,
    max double precision,
    count bigint NOT NULL,
    PRIMARY KEY (device_id, metric, bucket)
);
INSERT INTO readings_1d_t
SELECT date_bin(INTERVAL '1 day', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'), device_id, metric,
       avg(value), min(value), max(value), count(value)
FROM readings GROUP BY 1, 2, 3;
DROP MATERIALIZED VIEW readings_1d;
ALTER TABLE readings_1d_t RENAME TO readings_1d;
ALTER INDEX readings_1d_t_pkey RENAME TO readings_1d_pkey;
CREATE INDEX readings_1d_bucket_idx ON readings_1d (bucket);
