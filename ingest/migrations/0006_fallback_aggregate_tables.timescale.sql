-- TimescaleDB: nothing to change; its continuous aggregates already refresh by window and keep
-- their rows when retention drops raw chunks. The fallback variant turns its views into tables.
SELECT 1;
