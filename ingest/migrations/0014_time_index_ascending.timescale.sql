-- TimescaleDB: nothing to change. Its hypertables keep the (time DESC) index create_hypertable
-- makes on every chunk (the plain-PostgreSQL variant of this migration says why the fallback's
-- ascends); it has not been measured on TimescaleDB here.
SELECT 1;
