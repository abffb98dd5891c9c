-- Every reading the gateway accepts reaches the aggregates, and late writes never land in a
-- compressed chunk: the gateway accepts device times up to 14 days old (contracts/limits.py
-- MAX_READING_AGE_S), so the refresh policies reach back 16 days (AGGREGATE_REFRESH_DAYS: the
-- lateness plus a margin; a test keeps the two numbers equal) and raw chunks are compressed
-- only after that. Written from the TimescaleDB 2.x reference: remove_continuous_aggregate_policy
-- (if_exists since 2.8), add_continuous_aggregate_policy, remove_compression_policy,
-- add_compression_policy.

SELECT remove_continuous_aggregate_policy('readings_1h', if_exists => TRUE);
SELECT add_continuous_aggregate_policy('readings_1h',
    start_offset => INTERVAL '16 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);

SELECT remove_continuous_aggregate_policy('readings_1d', if_exists => TRUE);
SELECT add_continuous_aggregate_policy('readings_1d',
    start_offset => INTERVAL '16 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);

SELECT remove_compression_policy('readings', if_exists => TRUE);
SELECT add_compression_policy('readings', compress_after => INTERVAL '16 days', if_not_exists => TRUE);
