-- Alerts (issue 15): the state of every alert, the outbox the delivery worker drains, and each
-- school's air-quality flag. Plain tables on both backends.
--
-- One open alert per (rule, subject) is the partial unique index `alerts_one_open`: the evaluator
-- opens with INSERT ... ON CONFLICT DO NOTHING and resolves with UPDATE ... WHERE state <> 'resolved',
-- so two evaluators, or one restarted mid-cycle, write each transition once (alerts/store.py).
CREATE TABLE IF NOT EXISTS alerts (
    id              bigserial PRIMARY KEY,
    rule            text NOT NULL CHECK (rule ~ '^[a-z][a-z0-9_]{0,63}$'),
    subject         text NOT NULL CHECK (length(subject) BETWEEN 1 AND 300),
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    school          text,
    device_id       text,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    evidence        jsonb NOT NULL DEFAULT '{}'::jsonb,
    end_evidence    jsonb,
    rules_version   text NOT NULL,
    acknowledged_by text,
    acknowledged_at timestamptz,
    CHECK ((state = 'resolved') = (ended_at IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (rule, subject) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_started_idx ON alerts (started_at DESC);
CREATE INDEX IF NOT EXISTS alerts_school_idx ON alerts (school, started_at DESC);
CREATE INDEX IF NOT EXISTS alerts_device_idx ON alerts (device_id, started_at DESC);

-- One row per message to send, written in the transaction of the transition that caused it, so a
-- transition is never committed without its messages nor a message without its transition.
CREATE TABLE IF NOT EXISTS alert_outbox (
    id              bigserial PRIMARY KEY,
    alert_id        bigint REFERENCES alerts (id),
    transition      text NOT NULL CHECK (transition IN ('opened', 'resolved', 'flag')),
    channel         text NOT NULL CHECK (channel IN ('webhook', 'email', 'mqtt')),
    target          text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    dead_at         timestamptz,
    last_error      text
);
CREATE INDEX IF NOT EXISTS alert_outbox_due_idx ON alert_outbox (channel, next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS alert_outbox_one_per_transition
    ON alert_outbox (alert_id, transition, channel, target) WHERE alert_id IS NOT NULL;

-- A school's flag: the hysteresis band it stands in, the colour and AQI shown, since when.
CREATE TABLE IF NOT EXISTS school_flags (
    school     text PRIMARY KEY,
    band       integer NOT NULL,
    colour     text NOT NULL CHECK (colour IN ('green', 'yellow', 'orange', 'red', 'purple', 'maroon')),
    rgb        text NOT NULL,
    aqi        integer,
    scale      text NOT NULL,
    category   text NOT NULL,
    since      timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
