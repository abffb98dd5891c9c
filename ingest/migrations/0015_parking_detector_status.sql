-- What a parking sensor's detector says of itself, from the keys its status message carries
-- (firmware/parking/app.py; validated by gateway/codecs/status.py): seconds since it last saw
-- the empty bay, how clearly the field sits at the reported state (0..1), and whether its
-- baseline needs confirming or re-learning. Generated from the stored status, so the API
-- (/v1/devices) and the alerts' `parking_relearn` rule read columns with one meaning, and the
-- writer and the wire format need nothing new. NULL for air boxes and while the sensor is
-- offline (its last will is {"online":false}). Out-of-range values (the codec refuses them; a row
-- stored before it did) give NULL, never a failed write. A plain table on both backends.
ALTER TABLE device_status
    ADD COLUMN IF NOT EXISTS baseline_age_s bigint GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(status -> 'base_age_s') = 'number' THEN  -- nested: CASE keeps the order
            CASE WHEN (status ->> 'base_age_s')::numeric BETWEEN 0 AND 2147483647
                 THEN round((status ->> 'base_age_s')::numeric)::bigint END END
    ) STORED,
    ADD COLUMN IF NOT EXISTS detector_confidence double precision GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(status -> 'conf') = 'number' THEN
            CASE WHEN (status ->> 'conf')::numeric BETWEEN 0 AND 1 THEN (status ->> 'conf')::numeric::double precision END
        END
    ) STORED,
    ADD COLUMN IF NOT EXISTS needs_relearning boolean GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(status -> 'relearn') = 'boolean' THEN (status ->> 'relearn')::boolean END
    ) STORED;
