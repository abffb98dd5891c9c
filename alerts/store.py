"""Every SQL statement of the alerts: what the evaluator reads, the transitions, the outbox, the flags, the API's reads.

Guarantees, each kept by a statement here:
- one open alert per (rule, subject): `open_alerts_now` is INSERT ... ON CONFLICT DO NOTHING on the
  partial unique index of migration 0010, so a second evaluator, or a restarted one, that
  finds the same condition inserts nothing and sends nothing;
- a transition is written with its messages in one transaction (`enqueue_many` runs inside the
  caller's), and the evaluator's write phase holds `lock_evaluation` (a transaction-level
  advisory lock), so two evaluators never interleave a read-then-write of the same alert or flag;
- a message is delivered at least once: `claim_due` leases rows with FOR UPDATE SKIP LOCKED and
  pushes `next_attempt_at` past the lease, so a worker killed mid-send leaves the row to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.conditions import (
    IMPLAUSIBLE_FLAGS,
    STUCK_FLAG,
    Activity,
    DetectorStatus,
    DeviceInfo,
    Finding,
    FlagCounts,
    HumidityCounts,
    StuckRun,
)
from alerts.neighbourhood import Hourly
from alerts.school_air import SchoolFlag

_EVALUATION_LOCK = 7_042_025_015
RECENT_TIMES = 7
"""Reading times per device read for its observed cadence (six gaps, their median)."""

AnyConn = AsyncConnection[Any]


async def db_now(conn: AnyConn) -> datetime:
    """The database's clock: every evaluator judges by the same time, whatever its host's clock says."""
    row = await (await conn.execute("SELECT now()")).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


async def load_devices(conn: AnyConn) -> list[DeviceInfo]:
    cur = await conn.execute(
        "SELECT device_id, kind, school, district, lat, lon FROM devices WHERE retired_at IS NULL ORDER BY device_id"
    )
    return [DeviceInfo(*row) for row in await cur.fetchall()]


_ACTIVITY_SQL = f"""
WITH last AS (
    SELECT device_id, max(last_seen) AS last_seen FROM (
        SELECT device_id, max(time) AS last_seen FROM readings WHERE time > %(since)s GROUP BY device_id
        UNION ALL
        SELECT device_id, max(time) FROM parking_events WHERE time > %(since)s GROUP BY device_id
    ) heard GROUP BY device_id
)
SELECT l.device_id, l.last_seen, ARRAY(
    SELECT r.time FROM readings r WHERE r.device_id = l.device_id AND r.metric = 'pm25' AND r.time > %(since)s
    ORDER BY r.time DESC LIMIT {RECENT_TIMES}
) || ARRAY(
    SELECT p.time FROM parking_events p WHERE p.device_id = l.device_id AND p.time > %(since)s
    ORDER BY p.time DESC LIMIT {RECENT_TIMES}
)
FROM last l
"""


async def load_activity(conn: AnyConn, since: datetime) -> dict[str, Activity]:
    """device -> last reading time since `since`, and the times of its latest PM2.5 readings and parking
    events (one index probe each on their unique indexes: the observed cadence costs no scan)."""
    cur = await conn.execute(_ACTIVITY_SQL, {"since": since})
    return {row[0]: Activity(row[0], row[1], tuple(row[2])) for row in await cur.fetchall()}


async def load_stuck_runs(conn: AnyConn, since: datetime) -> list[StuckRun]:
    cur = await conn.execute(
        "SELECT device_id, metric, max(time),"
        f" max(time) FILTER (WHERE flags & {STUCK_FLAG} = 0), min(time) FILTER (WHERE flags & {STUCK_FLAG} <> 0)"
        " FROM readings WHERE time > %s GROUP BY device_id, metric"
        f" HAVING bool_or(flags & {STUCK_FLAG} <> 0)",
        (since,),
    )
    return [StuckRun(*row) for row in await cur.fetchall()]


async def load_detector_statuses(conn: AnyConn) -> list[DetectorStatus]:
    """The online sensors whose newest status says their detector needs re-learning (an offline one
    is the silent rule's: its last will carries no detector fields)."""
    cur = await conn.execute(
        "SELECT device_id, needs_relearning, baseline_age_s, detector_confidence, updated_at FROM device_status"
        " WHERE online AND needs_relearning"
    )
    return [DetectorStatus(*row) for row in await cur.fetchall()]


async def load_flag_counts(conn: AnyConn, since: datetime) -> list[FlagCounts]:
    cur = await conn.execute(
        f"SELECT device_id, count(*), count(*) FILTER (WHERE flags & {IMPLAUSIBLE_FLAGS} <> 0)"
        " FROM readings WHERE time > %s GROUP BY device_id",
        (since,),
    )
    return [FlagCounts(*row) for row in await cur.fetchall()]


async def load_humidity_counts(conn: AnyConn, since: datetime, pinned_at: float) -> list[HumidityCounts]:
    cur = await conn.execute(
        "SELECT device_id, count(*), count(*) FILTER (WHERE raw >= %s)"
        " FROM readings WHERE metric = 'rh' AND time > %s GROUP BY device_id",
        (pinned_at, since),
    )
    return [HumidityCounts(*row) for row in await cur.fetchall()]


async def load_hourly_pm25(conn: AnyConn, first_hour: datetime) -> Hourly:
    """device -> UTC hour (Unix seconds) -> mean calibrated PM2.5, from the readings themselves (no aggregate
    job needed)."""
    cur = await conn.execute(
        "SELECT device_id, extract(epoch FROM date_bin('1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'))::bigint,"
        " avg(value)"
        " FROM readings WHERE metric = 'pm25' AND value IS NOT NULL AND time >= %s GROUP BY 1, 2",
        (first_hour,),
    )
    out: Hourly = {}
    for device_id, hour, mean in await cur.fetchall():
        out.setdefault(device_id, {})[int(hour)] = float(mean)
    return out


async def load_pipeline_counts(
    conn: AnyConn, since: datetime, window_start: datetime
) -> tuple[datetime | None, int, int]:
    """(newest reading since `since`, dead letters since `window_start`, messages stored since then)."""
    cur = await conn.execute(
        "SELECT (SELECT max(time) FROM readings WHERE time > %(since)s),"
        " (SELECT count(*) FROM rejected_messages WHERE received_at > %(window)s),"
        " (SELECT count(*) FROM (SELECT DISTINCT device_id, time FROM readings WHERE time > %(window)s) m)",
        {"since": since, "window": window_start},
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], int(row[1]), int(row[2])


# ---- transitions (inside the evaluator's write transaction) ----


async def lock_evaluation(conn: AnyConn) -> None:
    """Serialise the write phase of concurrent evaluators until this transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_EVALUATION_LOCK,))


@dataclass(frozen=True)
class OpenAlert:
    id: int
    rule: str
    subject: str
    evidence: dict[str, Any]


async def open_alerts(conn: AnyConn) -> dict[tuple[str, str], OpenAlert]:
    cur = await conn.execute("SELECT id, rule, subject, evidence FROM alerts WHERE state <> 'resolved'")
    return {(row[1], row[2]): OpenAlert(*row) for row in await cur.fetchall()}


_ALERT_COLUMNS = (
    "id, rule, subject, state, school, device_id, started_at, ended_at, evidence, end_evidence,"
    " rules_version, acknowledged_by, acknowledged_at"
)


async def open_alerts_now(
    conn: AnyConn, findings: Sequence[Finding], now: datetime, rules_version: str
) -> list[dict[str, Any]]:
    """Open an alert for each finding in one statement; returns the rows inserted. A finding whose
    (rule, subject) has an open alert already (another evaluator's) inserts nothing."""
    if not findings:
        return []
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "INSERT INTO alerts (rule, subject, school, device_id, started_at, evidence, rules_version)"
        " SELECT f.rule, f.subject, f.school, f.device_id, %s, f.evidence, %s"
        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[])"
        " AS f(rule, subject, school, device_id, evidence)"
        " ON CONFLICT (rule, subject) WHERE state <> 'resolved' DO NOTHING"
        f" RETURNING {_ALERT_COLUMNS}",
        (
            now,
            rules_version,
            [f.rule for f in findings],
            [f.subject for f in findings],
            [f.school for f in findings],
            [f.device_id for f in findings],
            [Jsonb(f.evidence) for f in findings],
        ),
    )
    return sorted(await cur.fetchall(), key=lambda r: int(r["id"]))


async def resolve_alerts(
    conn: AnyConn, ending: Sequence[tuple[int, dict[str, Any]]], now: datetime
) -> list[dict[str, Any]]:
    """Resolve these alerts (id, evidence at the end) in one statement; returns the rows changed
    (one resolved already, by another evaluator, is not returned)."""
    if not ending:
        return []
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "UPDATE alerts a SET state = 'resolved', ended_at = %s, end_evidence = e.evidence"
        " FROM unnest(%s::bigint[], %s::jsonb[]) AS e(id, evidence)"
        " WHERE a.id = e.id AND a.state <> 'resolved'"
        " RETURNING " + ", ".join(f"a.{c.strip()}" for c in _ALERT_COLUMNS.split(",")),
        (now, [i for i, _ in ending], [Jsonb(e) for _, e in ending]),
    )
    return sorted(await cur.fetchall(), key=lambda r: int(r["id"]))


async def update_evidence(conn: AnyConn, changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """New evidence for alerts still open (a hotspot's rank and excess move hour by hour)."""
    if changes:
        await conn.cursor().executemany(
            "UPDATE alerts SET evidence = %s WHERE id = %s AND state <> 'resolved'",
            [(Jsonb(evidence), alert_id) for alert_id, evidence in changes],
        )


async def enqueue_many(conn: AnyConn, messages: Sequence[tuple[int | None, str, str, str, dict[str, Any]]]) -> int:
    """Outbox rows (alert id, transition, channel, target, payload), in one pipelined batch; a duplicate
    of a row queued already for the same transition is skipped."""
    if not messages:
        return 0
    await conn.cursor().executemany(
        "INSERT INTO alert_outbox (alert_id, transition, channel, target, payload) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        [
            (alert_id, transition, channel, target, Jsonb(payload))
            for alert_id, transition, channel, target, payload in messages
        ],
    )
    return len(messages)


async def load_school_flags(conn: AnyConn) -> dict[str, SchoolFlag]:
    cur = await conn.execute("SELECT school, band, colour, rgb, aqi, scale, category FROM school_flags")
    return {row[0]: SchoolFlag(*row) for row in await cur.fetchall()}


async def save_school_flag(conn: AnyConn, flag: SchoolFlag, now: datetime, changed: bool) -> None:
    """Store what the flag shows; `since` moves only when the colour changes."""
    await conn.execute(
        "INSERT INTO school_flags (school, band, colour, rgb, aqi, scale, category, since, updated_at)"
        " VALUES (%(school)s, %(band)s, %(colour)s, %(rgb)s, %(aqi)s, %(scale)s, %(category)s, %(now)s, %(now)s)"
        " ON CONFLICT (school) DO UPDATE SET band = EXCLUDED.band, colour = EXCLUDED.colour, rgb = EXCLUDED.rgb,"
        " aqi = EXCLUDED.aqi, scale = EXCLUDED.scale, category = EXCLUDED.category, updated_at = EXCLUDED.updated_at,"
        " since = CASE WHEN %(changed)s THEN EXCLUDED.since ELSE school_flags.since END",
        {**flag.__dict__, "now": now, "changed": changed},
    )


async def open_counts(conn: AnyConn) -> dict[str, int]:
    cur = await conn.execute("SELECT rule, count(*) FROM alerts WHERE state <> 'resolved' GROUP BY rule")
    return {row[0]: int(row[1]) for row in await cur.fetchall()}


# ---- the outbox (delivery worker) ----


@dataclass(frozen=True)
class OutboxRow:
    id: int
    channel: str
    target: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


async def claim_due(
    conn: AnyConn, channel: str, limit: int, lease_s: float, target: str | None = None
) -> list[OutboxRow]:
    """Lease up to `limit` due messages of a channel (of one target when given), oldest first; commits."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE alert_outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => %s)"
            " WHERE o.id IN (SELECT id FROM alert_outbox WHERE channel = %s"
            " AND delivered_at IS NULL AND dead_at IS NULL"
            " AND next_attempt_at <= now() AND (%s::text IS NULL OR target = %s::text)"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING o.id, o.channel, o.target, o.payload, o.attempts, o.created_at",
            (lease_s, channel, target, target, limit),
        )
        rows = [OutboxRow(*row) for row in await cur.fetchall()]
    return sorted(rows, key=lambda r: r.id)


async def mark_delivered(conn: AnyConn, ids: Sequence[int]) -> None:
    async with conn.transaction():
        await conn.execute(
            "UPDATE alert_outbox SET delivered_at = now(), last_error = NULL WHERE id = ANY(%s)", (list(ids),)
        )


async def mark_failed(conn: AnyConn, ids: Sequence[int], error: str, retry_in_s: float | None) -> None:
    """Schedule another try in `retry_in_s`, or dead-letter the messages (None)."""
    async with conn.transaction():
        if retry_in_s is None:
            await conn.execute(
                "UPDATE alert_outbox SET dead_at = now(), last_error = %s WHERE id = ANY(%s)", (error[:500], list(ids))
            )
        else:
            await conn.execute(
                "UPDATE alert_outbox SET next_attempt_at = now() + make_interval(secs => %s), last_error = %s"
                " WHERE id = ANY(%s)",
                (retry_in_s, error[:500], list(ids)),
            )


async def email_targets_due(conn: AnyConn, digest_s: float) -> list[str]:
    """Recipients with messages due and no e-mail sent to them in the last `digest_s` seconds."""
    cur = await conn.execute(
        "SELECT DISTINCT o.target FROM alert_outbox o WHERE o.channel = 'email' AND o.delivered_at IS NULL"
        " AND o.dead_at IS NULL AND o.next_attempt_at <= now() AND NOT EXISTS ("
        " SELECT 1 FROM alert_outbox s WHERE s.channel = 'email' AND s.target = o.target"
        " AND s.delivered_at > now() - make_interval(secs => %s))",
        (digest_s,),
    )
    return [row[0] for row in await cur.fetchall()]


_FLAG_COLUMNS = "school, colour, rgb, aqi, scale, category, since, updated_at"


async def school_flag_row(conn: AnyConn, school: str) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_FLAG_COLUMNS} FROM school_flags WHERE school = %s", (school,))
    return await cur.fetchone()


# ---- the API's reads and the acknowledgement ----


@dataclass(frozen=True)
class AlertFilter:
    state: str | None = None
    rule: str | None = None
    school: str | None = None
    device_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 100
    offset: int = 0


async def list_alerts(conn: AnyConn, where: AlertFilter) -> tuple[int, list[dict[str, Any]]]:
    """(how many match, one page of them): alerts whose life overlaps [start, end), newest first;
    hotspots by their excess, largest first."""
    params = {
        "state": where.state,
        "rule": where.rule,
        "school": where.school,
        "device": where.device_id,
        "start": where.start,
        "end": where.end,
        "limit": where.limit,
        "offset": where.offset,
    }
    condition = (
        " WHERE (%(state)s::text IS NULL OR state = %(state)s::text)"
        " AND (%(rule)s::text IS NULL OR rule = %(rule)s::text)"
        " AND (%(school)s::text IS NULL OR school = %(school)s::text)"
        " AND (%(device)s::text IS NULL OR device_id = %(device)s::text)"
        " AND (%(end)s::timestamptz IS NULL OR started_at < %(end)s::timestamptz)"
        " AND (%(start)s::timestamptz IS NULL OR ended_at IS NULL OR ended_at >= %(start)s::timestamptz)"
    )
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT count(*) AS n FROM alerts" + condition, params)
    found = await cur.fetchone()
    await cur.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts"
        + condition
        + " ORDER BY (CASE WHEN rule = 'hotspot' THEN (evidence->>'excess_ugm3')::float END) DESC NULLS LAST,"
        " started_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s",
        params,
    )
    return int(found["n"]) if found else 0, list(await cur.fetchall())


async def acknowledge(conn: AnyConn, alert_id: int, by: str) -> dict[str, Any] | None:
    """Mark an open alert acknowledged by `by` (None: no such alert). Resolved or acknowledged already: unchanged."""
    cur = conn.cursor(row_factory=dict_row)
    async with conn.transaction():
        await cur.execute(
            "UPDATE alerts SET state = 'acknowledged', acknowledged_by = %s, acknowledged_at = now()"
            " WHERE id = %s AND state = 'open'",
            (by, alert_id),
        )
        await cur.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = %s", (alert_id,))
        return await cur.fetchone()
