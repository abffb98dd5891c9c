-- What the stuck/spike rules remember of each device's series, read and written inside each
-- batch's transaction (ingest/series_windows.py), so every gateway replica agrees.
-- One row per device: a batch of 1,000 devices x 5 metrics loads and saves 1,000 rows, not 5,000.
CREATE TABLE IF NOT EXISTS series_windows (
    device_id text PRIMARY KEY,
    saved_by  bigint NOT NULL,  -- token of the writer that saved the row (a writer that saved it last need not load it)
    windows   bytea NOT NULL    -- per metric: newest reading (µs since 2000-01-01), last raw, repeats, recent raws
) WITH (fillfactor = 50);  -- every batch updates its devices' rows: room on the page keeps updates HOT
