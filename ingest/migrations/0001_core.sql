-- Core tables, plain PostgreSQL. TimescaleDB-specific parts live only in *.timescale.sql files.

CREATE TABLE IF NOT EXISTS devices (
    device_id   text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    kind        text NOT NULL CHECK (kind IN ('airbox', 'parking', 'lass')),
    name        text,
    site        text,
    school      text,
    lat         double precision CHECK (lat BETWEEN -90 AND 90),
    lon         double precision CHECK (lon BETWEEN -180 AND 180),
    owner       text,
    sensor_type text,
    registered  boolean NOT NULL DEFAULT false,
    token_hash  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

CREATE TABLE IF NOT EXISTS readings (
    time           timestamptz NOT NULL,
    device_id      text NOT NULL,
    metric         text NOT NULL,
    raw            double precision,
    value          double precision,
    flags          integer NOT NULL DEFAULT 0,
    calibration_id integer,
    CONSTRAINT readings_device_metric_time_key UNIQUE (device_id, metric, time)
);

CREATE TABLE IF NOT EXISTS parking_events (
    time      timestamptz NOT NULL,
    device_id text NOT NULL,
    occupied  boolean,
    mag       double precision,
    batt_mv   integer,
    temp      double precision,
    ev        text NOT NULL DEFAULT 'change' CHECK (ev IN ('change', 'heartbeat', 'boot')),
    flags     integer NOT NULL DEFAULT 0,
    CONSTRAINT parking_events_device_time_key UNIQUE (device_id, time)
);

CREATE TABLE IF NOT EXISTS parking_spots (
    spot_id   text PRIMARY KEY,
    device_id text UNIQUE REFERENCES devices (device_id),
    zone      text NOT NULL,
    lat       double precision,
    lon       double precision,
    geometry  jsonb
);

CREATE TABLE IF NOT EXISTS calibrations (
    id          serial PRIMARY KEY,
    device_id   text,             -- NULL: the default for every device of sensor_type
    sensor_type text,
    metric      text NOT NULL,
    model       jsonb NOT NULL,
    valid_from  timestamptz NOT NULL DEFAULT '-infinity',
    valid_to    timestamptz,
    fitted_at   timestamptz NOT NULL DEFAULT now(),
    fit_stats   jsonb
);
CREATE INDEX IF NOT EXISTS calibrations_device_metric_idx ON calibrations (device_id, metric, valid_from);

CREATE TABLE IF NOT EXISTS rejected_messages (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    digest      bytea NOT NULL,
    CONSTRAINT rejected_messages_digest_key UNIQUE (digest)
);

CREATE TABLE IF NOT EXISTS device_status (
    device_id  text PRIMARY KEY,
    online     boolean,
    fw         text,
    ip         text,
    rssi       integer,
    heap       integer,
    queued     integer,
    status     jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
