-- LoRaWAN parking sensors through ChirpStack v4 (gateway/codecs/chirpstack.py).
--
-- devices.dev_eui: the device's EUI-64 as ChirpStack writes it (16 lower-case hex digits), set by
--   `citysense device register|update --dev-eui` through ingest/device_store.py; one device per EUI.
-- lorawan_uplinks: one row per uplink, keyed on ChirpStack's deduplicationId, written in the batch's
--   transaction before its parking event: a redelivered uplink (the broker's QoS 1 redelivery, a
--   second gateway replica, ChirpStack resending) finds its id here and stores no second event.
--   Unlike payload_digests (0008), which remembers payloads for ten minutes, this is permanent: a
--   redelivery after a day-long gateway outage is still one event. It also keeps the radio quality
--   of each uplink (best RSSI/SNR, gateways that heard it), which is what a LoRaWAN operator asks for.
-- The device trigger of 0003 is replaced so gateways hear of a new or moved EUI at once.

ALTER TABLE devices ADD COLUMN IF NOT EXISTS dev_eui text CHECK (dev_eui ~ '^[0-9a-f]{16}$');
CREATE UNIQUE INDEX IF NOT EXISTS devices_dev_eui_key ON devices (dev_eui);

CREATE TABLE IF NOT EXISTS lorawan_uplinks (
    deduplication_id uuid PRIMARY KEY,
    device_id        text NOT NULL,
    dev_eui          text NOT NULL,
    application_id   text NOT NULL,
    time             timestamptz NOT NULL,   -- the parking event's time
    f_cnt            bigint NOT NULL,
    f_port           integer NOT NULL,
    rssi             integer,                -- dBm, of the best receiving gateway
    snr              double precision,       -- dB, of the same gateway
    gateway_id       text,
    gateways         integer NOT NULL,       -- how many gateways heard the uplink
    received_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lorawan_uplinks_device_time_idx ON lorawan_uplinks (device_id, time DESC);

CREATE OR REPLACE FUNCTION citysense_notify_device() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r devices%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    -- as in 0003: an id a gateway met first is not news; nor is a change gateways do not read
    IF TG_OP = 'INSERT' AND NOT NEW.registered THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.registered IS NOT DISTINCT FROM OLD.registered
       AND NEW.retired_at IS NOT DISTINCT FROM OLD.retired_at
       AND NEW.token_hash IS NOT DISTINCT FROM OLD.token_hash
       AND NEW.sensor_type IS NOT DISTINCT FROM OLD.sensor_type
       AND NEW.kind IS NOT DISTINCT FROM OLD.kind
       AND NEW.dev_eui IS NOT DISTINCT FROM OLD.dev_eui THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('citysense_devices', json_build_object(
        'device_id', r.device_id,
        'registered', r.registered,
        'kind', r.kind,
        'active', TG_OP <> 'DELETE' AND r.retired_at IS NULL,
        'op', TG_OP,
        'dev_eui', r.dev_eui
    )::text);
    RETURN NULL;
END
$$;
