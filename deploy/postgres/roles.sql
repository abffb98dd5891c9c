-- Least-privilege database roles for citysense (deploy/README.md, "Database roles").
--
--   citysense_owner   owns the schema: `citysense db migrate`, `citysense db maintain`
--                     (and `calibrate apply` on TimescaleDB, whose aggregate refresh needs the owner)
--   citysense_writer  the gateways and the API's admin registration: inserts readings, parking
--                     events, dead letters, device status, payload digests, series windows;
--                     registers, updates and retires devices; stores calibrations
--   citysense_reader  the API's reads (CITYSENSE_DATABASE_READ_URL) and Grafana: SELECT only,
--                     and never the devices' token hashes
--
-- Idempotent. Run it as a superuser in the citysense database twice: before the first migration
-- (it creates the roles and lets the owner create in schema public) and after every
-- `citysense db migrate` (it grants on the tables that exist now). Passwords are optional
-- session settings, so they stay out of this file:
--   PGOPTIONS="-c citysense.owner_password=... -c citysense.writer_password=... -c citysense.reader_password=..." \
--     psql -v ON_ERROR_STOP=1 -d citysense -f deploy/postgres/roles.sql

DO $roles$
DECLARE
    who text;
    secret text;
BEGIN
    FOREACH who IN ARRAY ARRAY['owner', 'writer', 'reader'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'citysense_' || who) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', 'citysense_' || who);
        END IF;
        secret := current_setting('citysense.' || who || '_password', true);
        IF coalesce(secret, '') <> '' THEN
            EXECUTE format('ALTER ROLE %I PASSWORD %L', 'citysense_' || who, secret);
        END IF;
        -- TEMPORARY: the batch writer stages each batch in temp tables
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), 'citysense_' || who);
    END LOOP;
END
$roles$;

GRANT USAGE, CREATE ON SCHEMA public TO citysense_owner;
GRANT USAGE ON SCHEMA public TO citysense_writer, citysense_reader;
-- tables a later migration adds are readable at once; their write rights come from the next run
ALTER DEFAULT PRIVILEGES FOR ROLE citysense_owner IN SCHEMA public GRANT SELECT ON TABLES TO citysense_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE citysense_owner IN SCHEMA public GRANT SELECT ON TABLES TO citysense_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE citysense_owner IN SCHEMA public GRANT USAGE ON SEQUENCES TO citysense_writer;

DO $grants$
DECLARE
    rel record;
    rights text;
    readable text;
BEGIN
    FOR rel IN
        SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
    LOOP
        EXECUTE format('GRANT SELECT ON %I TO citysense_writer', rel.relname);
        IF rel.relname = 'devices' THEN
            -- the reader sees every column but the MQTT token hashes
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO readable FROM pg_attribute
            WHERE attrelid = 'public.devices'::regclass AND attnum > 0 AND NOT attisdropped
              AND attname <> 'token_hash';
            EXECUTE 'REVOKE SELECT ON devices FROM citysense_reader';
            EXECUTE format('GRANT SELECT (%s) ON devices TO citysense_reader', readable);
        ELSE
            EXECUTE format('GRANT SELECT ON %I TO citysense_reader', rel.relname);
        END IF;
        rights := CASE rel.relname
            WHEN 'readings' THEN 'INSERT, UPDATE'          -- batches; flag recomputation; calibrate apply
            WHEN 'parking_events' THEN 'INSERT'
            WHEN 'rejected_messages' THEN 'INSERT'
            WHEN 'device_status' THEN 'INSERT, UPDATE'
            WHEN 'payload_digests' THEN 'INSERT, UPDATE, DELETE'
            WHEN 'series_windows' THEN 'INSERT, UPDATE'
            WHEN 'devices' THEN 'INSERT, UPDATE'           -- open-network ids, registration, retirement
            WHEN 'calibrations' THEN 'INSERT, UPDATE'
            WHEN 'readings_1h' THEN 'INSERT, DELETE'       -- plain-PostgreSQL aggregate tables, refreshed
            WHEN 'readings_1d' THEN 'INSERT, DELETE'       -- by calibrate apply over the range it touched
            WHEN 'latest_readings' THEN 'INSERT, UPDATE, DELETE'  -- each batch; the trigger; retention
            WHEN 'lorawan_uplinks' THEN 'INSERT'           -- ChirpStack deduplication ids
            WHEN 'alerts' THEN 'INSERT, UPDATE'            -- the alert evaluator's transitions, acknowledgements
            WHEN 'alert_outbox' THEN 'INSERT, UPDATE'      -- its deliveries
            WHEN 'school_flags' THEN 'INSERT, UPDATE'      -- the schools' flag colours
        END;
        IF rights IS NOT NULL AND rel.relkind IN ('r', 'p') THEN
            EXECUTE format('GRANT %s ON %I TO citysense_writer', rights, rel.relname);
        END IF;
    END LOOP;
END
$grants$;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO citysense_writer;
