-- Tell every listening gateway at commit time that a device or a calibration changed, so a
-- registration, retirement, token rotation or new calibration takes effect on the next
-- reading instead of after the gateway's cache TTL. Plain PostgreSQL (no TimescaleDB part).
--
-- Channel `citysense_devices` (registrations, rotations, retirements, kind or sensor-type
--   changes; not the unregistered rows a gateway inserts itself): payload is JSON
--   {"device_id", "registered", "kind", "active", "op"}
--   with the row as committed (op DELETE: the old row, active false), so a gateway updates
--   its registry from the payload alone, without a query between the NOTIFY and the reading.
-- Channel `citysense_calibrations`: payload is the device id, or '' for a sensor-type
--   default (which may concern every device).
-- NOTIFY is delivered only on commit and dropped on rollback; the listener reloads
-- everything when it (re)connects, so a gateway that was away misses nothing.

CREATE OR REPLACE FUNCTION citysense_notify_device() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r devices%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    -- an id a gateway met first (open network) is stored unregistered: every gateway treats an
    -- unknown id exactly so, so telling them is noise (and would let made-up ids flood the channel)
    IF TG_OP = 'INSERT' AND NOT NEW.registered THEN
        RETURN NULL;
    END IF;
    -- gateways need registration, retirement, token, kind and sensor type: skip the rest
    -- (a LASS device's first position, an owner's new name)
    IF TG_OP = 'UPDATE' AND NEW.registered IS NOT DISTINCT FROM OLD.registered
       AND NEW.retired_at IS NOT DISTINCT FROM OLD.retired_at
       AND NEW.token_hash IS NOT DISTINCT FROM OLD.token_hash
       AND NEW.sensor_type IS NOT DISTINCT FROM OLD.sensor_type
       AND NEW.kind IS NOT DISTINCT FROM OLD.kind THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('citysense_devices', json_build_object(
        'device_id', r.device_id,
        'registered', r.registered,
        'kind', r.kind,
        'active', TG_OP <> 'DELETE' AND r.retired_at IS NULL,
        'op', TG_OP
    )::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS devices_notify ON devices;
CREATE TRIGGER devices_notify AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION citysense_notify_device();

CREATE OR REPLACE FUNCTION citysense_notify_calibration() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('citysense_calibrations', coalesce(OLD.device_id, ''));
    ELSE
        PERFORM pg_notify('citysense_calibrations', coalesce(NEW.device_id, ''));
        IF TG_OP = 'UPDATE' AND OLD.device_id IS DISTINCT FROM NEW.device_id THEN
            PERFORM pg_notify('citysense_calibrations', coalesce(OLD.device_id, ''));
        END IF;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS calibrations_notify ON calibrations;
CREATE TRIGGER calibrations_notify AFTER INSERT OR UPDATE OR DELETE ON calibrations
    FOR EACH ROW EXECUTE FUNCTION citysense_notify_calibration();
