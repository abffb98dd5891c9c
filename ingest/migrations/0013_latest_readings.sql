-- The newest reading of every (device, metric), kept by the batch writer in the transaction that
-- stores the readings (ingest/batch_writer.py), so the city map, health and the SensorThings
-- latest value read devices x metrics rows instead of probing the readings table per device.
-- A row only moves forward in time: late or imported history never replaces a newer value, and
-- a redelivered batch (same times) changes nothing. A plain table on both backends.
CREATE TABLE IF NOT EXISTS latest_readings (
    device_id      text NOT NULL,
    metric         text NOT NULL,
    time           timestamptz NOT NULL,
    raw            double precision,
    value          double precision,
    flags          integer NOT NULL DEFAULT 0,
    calibration_id integer,
    PRIMARY KEY (metric, device_id)  -- the map reads one metric for every device, in device order
) WITH (fillfactor = 70);  -- room on each page for HOT updates: the rows change every batch

-- Filled from the readings already stored by ingest/latest_readings.py's rebuild, which migrate()
-- runs after applying migrations (beside the aggregates' refresh).

-- A stored reading that is re-judged (series flags) or re-calibrated (`citysense calibrate apply`)
-- is updated in place; when it is the newest of its series the latest row follows, in the same
-- transaction. Row-level and on UPDATE only: the COPY of new readings never fires it.
CREATE OR REPLACE FUNCTION latest_readings_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the test is here, not in a WHEN clause: a WHEN naming columns would pin their types
    IF NEW.raw IS NOT DISTINCT FROM OLD.raw AND NEW.value IS NOT DISTINCT FROM OLD.value
       AND NEW.flags IS NOT DISTINCT FROM OLD.flags AND NEW.calibration_id IS NOT DISTINCT FROM OLD.calibration_id THEN
        RETURN NULL;
    END IF;
    UPDATE latest_readings
       SET raw = NEW.raw, value = NEW.value, flags = NEW.flags, calibration_id = NEW.calibration_id
     WHERE device_id = NEW.device_id AND metric = NEW.metric AND time = NEW.time;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS latest_readings_follow ON readings;
CREATE TRIGGER latest_readings_follow
    AFTER UPDATE ON readings FOR EACH ROW
    EXECUTE FUNCTION latest_readings_follow();
