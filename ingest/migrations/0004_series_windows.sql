-- What the stuck/spike rules remember of each (device, metric) series, read and written inside
-- each batch's transaction (ingest/series_windows.py), so every gateway replica agrees.
CREATE TABLE IF NOT EXISTS series_windows (
    device_id text NOT NULL,
    metric    text NOT NULL,
    newest_us bigint NOT NULL,              -- newest reading judged: µs since 2000-01-01 UTC (timestamptz's own unit)
    last_raw  double precision,             -- its raw value
    repeats   integer NOT NULL DEFAULT 0,   -- readings before it equal to it, capped where STUCK starts
    recent    bytea NOT NULL,               -- raw values of the last readings, oldest first (little-endian doubles)
    PRIMARY KEY (device_id, metric)
) WITH (fillfactor = 50);  -- every batch updates its series' rows: room on the page keeps updates HOT
