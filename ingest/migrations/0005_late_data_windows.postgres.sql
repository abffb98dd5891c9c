-- Plain-PostgreSQL fallback: nothing to change. Its materialized views are rebuilt whole by
-- `citysense db maintain` and after migrations, so no reading is ever outside a refresh window;
-- the TimescaleDB variant widens the policies' windows to the gateway's accepted lateness.
SELECT 1;
