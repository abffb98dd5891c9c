"""Per-series window state in the database, so every gateway replica gives a reading the same flags.

The stuck/spike rules judge a reading against the readings of its (device, metric) series
just before it in time. A gateway replica sees only part of a device's readings (an MQTT
shared subscription deals them out round-robin), forgets everything on restart, and may
write a batch twice (a retry after a rolled-back commit). So the rules run where all of a
series meets, inside the batch's own transaction:

- `lock_devices` takes a transaction-level advisory lock per device (hashed into
  `LOCK_SLOTS` slots, taken in ascending order, so two writers never deadlock), and
  holds it until commit: two batches touching one device are written one after the other.
- `load` reads the state table `series_windows` (migration 0004); the common case, a
  batch whose rows of a series are all newer than the series' newest stored reading, is
  flagged from that state alone (`flag_new_rows`), and `save` stores the advanced state.
- a row older than the series' newest reading (out-of-order arrival) is stored first and
  then `recompute` re-judges the affected stretch of `readings` in time order and
  corrects the flag bits that changed, so the stored flags are a function of the stored
  readings, whatever the arrival order, replica or retry.
- a rolled-back transaction leaves the state as it was: a retry feeds nothing twice.

The rules themselves are not here (ingest does not know them); the gateway passes a
`SeriesRule` (gateway.anomaly_flags.STUCK_SPIKE_RULE) to the batch writer.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from contracts.records import ReadingRow

LOCK_SLOTS = 256  # advisory locks per batch are bounded: the shared lock table is small (64 per connection)
_LOCK_CLASS = 70_420_004  # first key of the two-key advisory locks (migrate.py uses the one-key form)
_PG_EPOCH_UNIX_S = 946_684_800.0
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def time_us(ts: float) -> int:
    """Unix seconds as timestamptz stores them: microseconds since 2000-01-01, rounded half to even
    (the rounding of PostgreSQL's to_timestamp and of the batch writer's timestamptz codec)."""
    return round((ts - _PG_EPOCH_UNIX_S) * 1_000_000)


@dataclass(slots=True)
class SeriesWindow:
    """What the rules remember of one series, after its newest reading (`newest_us`)."""

    newest_us: int = -(2**62)
    last: float | None = None
    repeats: int = 0
    recent: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SeriesRule:
    """A rule over a series' readings in time order, as the gateway defines it.

    `flag_run(window, metric, raws)` returns the flag bits of each raw value and advances
    `window` past them; `feeds_window(metric, flags)` says whether a reading takes part;
    `no_window_flags` are the flag bits that exclude a reading (the same test, in SQL);
    `bits` are the flag bits the rule owns; `history` is how many readings before a
    reading can change its bits (so a change settles after `history` readings).
    """

    flag_run: Callable[[SeriesWindow, str, list[float]], list[int]]
    feeds_window: Callable[[str, int], bool]
    no_window_flags: int
    bits: int
    history: int


SeriesKey = tuple[str, str]


@dataclass(slots=True)
class SeriesPlan:
    """One batch's view of its series: which were flagged from the state, which need a recompute."""

    windows: dict[SeriesKey, SeriesWindow] = field(default_factory=dict)  # advanced, to be saved
    recompute: dict[SeriesKey, tuple[int, int]] = field(default_factory=dict)  # key -> (first, last) µs
    expected: dict[SeriesKey, int] = field(default_factory=dict)  # rows of the series in the batch
    known: set[SeriesKey] = field(default_factory=set)  # series with a stored window


def lock_slots(device_ids: Sequence[str]) -> list[int]:
    """The sorted advisory lock slots of a set of devices (a stable hash, the same in every replica)."""
    return sorted({
        int.from_bytes(hashlib.blake2b(d.encode(), digest_size=4).digest(), "big") % LOCK_SLOTS for d in device_ids
    })


async def lock_devices(conn: asyncpg.Connection, device_ids: Sequence[str]) -> None:
    """Hold the devices' locks until this transaction ends (ascending order: no deadlock between writers)."""
    slots = lock_slots(device_ids)
    if slots:
        await conn.execute(
            "SELECT count(pg_advisory_xact_lock($1::int, s)) FROM unnest($2::int[]) AS s", _LOCK_CLASS, slots
        )


_LOAD = """
SELECT s.device_id, s.metric, s.newest_us, s.last_raw, s.repeats, s.recent
FROM series_windows s JOIN unnest($1::text[], $2::text[]) AS k(d, m) ON s.device_id = k.d AND s.metric = k.m
"""

# new series are inserted, known ones updated in place (cheaper than ON CONFLICT: no speculative insert);
# under the devices' locks no other writer can add the same series in between
_INSERT = """
INSERT INTO series_windows (device_id, metric, newest_us, last_raw, repeats, recent)
SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::float8[], $5::int4[], $6::bytea[])
"""
_UPDATE = """
UPDATE series_windows s SET newest_us = u.n, last_raw = u.l, repeats = u.r, recent = u.w
FROM unnest($1::text[], $2::text[], $3::int8[], $4::float8[], $5::int4[], $6::bytea[]) AS u(d, m, n, l, r, w)
WHERE s.device_id = u.d AND s.metric = u.m
"""
_PACKED = struct.Struct("<d")  # the window travels and rests as little-endian doubles: no text parsing


def _pack(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def _unpack(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // _PACKED.size}d", data))


async def load(conn: asyncpg.Connection, keys: Sequence[SeriesKey]) -> dict[SeriesKey, SeriesWindow]:
    """The stored windows of these series (a series never seen has none)."""
    rows = await conn.fetch(_LOAD, [k[0] for k in keys], [k[1] for k in keys])
    return {(r[0], r[1]): SeriesWindow(r[2], r[3], r[4], _unpack(r[5])) for r in rows}


async def save(conn: asyncpg.Connection, windows: dict[SeriesKey, SeriesWindow], known: set[SeriesKey]) -> None:
    """Store the windows; `known` are the series that have a stored window already."""
    for sql, items in ((_UPDATE, [i for i in windows.items() if i[0] in known]),
                       (_INSERT, [i for i in windows.items() if i[0] not in known])):
        if items:
            await conn.execute(
                sql, [k[0] for k, _ in items], [k[1] for k, _ in items], [w.newest_us for _, w in items],
                [w.last for _, w in items], [w.repeats for _, w in items], [_pack(w.recent) for _, w in items],
            )


def series_of(rule: SeriesRule, rows: Sequence[ReadingRow]) -> tuple[dict[SeriesKey, list[tuple[int, int]]], set[int]]:
    """Rows that take part, grouped by series as sorted (time µs, row index), and the indexes
    of rows repeating an earlier row's (device, metric, time): those are stored once and
    judged once (the first copy wins, as in the merge's ON CONFLICT DO NOTHING)."""
    groups: dict[SeriesKey, list[tuple[int, int]]] = {}
    feeds = rule.feeds_window
    for i, row in enumerate(rows):
        metric = row[2]
        if not feeds(metric, row[5]):
            continue
        key = (row[1], metric)
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
        group.append((time_us(row[0]), i))
    repeated: set[int] = set()
    for group in groups.values():
        group.sort()
        previous = None
        kept = []
        for entry in group:
            if entry[0] == previous:
                repeated.add(entry[1])
            else:
                kept.append(entry)
                previous = entry[0]
        if len(kept) != len(group):
            group[:] = kept
    return groups, repeated


def flag_new_rows(
    rule: SeriesRule, rows: list[ReadingRow], groups: dict[SeriesKey, list[tuple[int, int]]],
    stored: dict[SeriesKey, SeriesWindow],
) -> tuple[list[ReadingRow], SeriesPlan]:
    """Rows with the rule's bits set from the stored windows (the fast path); a series with a
    row not newer than its window is left to `recompute` (its rows keep the bits clear)."""
    out = list(rows)
    plan = SeriesPlan(known=set(stored))
    keep = ~rule.bits
    for key, group in groups.items():
        plan.expected[key] = len(group)
        window = stored.get(key)
        if window is not None and group[0][0] <= window.newest_us:
            plan.recompute[key] = (group[0][0], group[-1][0])
            for _, i in group:
                r = rows[i]
                if r[5] & rule.bits:
                    out[i] = (r[0], r[1], r[2], r[3], r[4], r[5] & keep, r[6])
            continue
        if window is None:
            window = SeriesWindow()
        bits = rule.flag_run(window, key[1], [rows[i][3] for _, i in group])
        window.newest_us = group[-1][0]
        plan.windows[key] = window
        for (_, i), extra in zip(group, bits, strict=True):
            r = rows[i]
            flags = (r[5] & keep) | extra
            if flags != r[5]:
                out[i] = (r[0], r[1], r[2], r[3], r[4], flags, r[6])
    return out, plan


_STRETCH = """
SELECT k.i, p.part, p.time, p.raw, p.flags
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) WITH ORDINALITY AS k(d, m, t0, t1, i)
CROSS JOIN LATERAL (
    (SELECT 0 AS part, time, raw, flags FROM readings
      WHERE device_id = k.d AND metric = k.m AND time < k.t0 AND flags & $5 = 0 ORDER BY time DESC LIMIT $6)
    UNION ALL
    (SELECT 1, time, raw, flags FROM readings
      WHERE device_id = k.d AND metric = k.m AND time >= k.t0 AND time <= k.t1 AND flags & $5 = 0)
    UNION ALL
    (SELECT 2, time, raw, flags FROM readings
      WHERE device_id = k.d AND metric = k.m AND time > k.t1 AND flags & $5 = 0 ORDER BY time LIMIT $6)
) AS p
"""

_CORRECT = """
UPDATE readings r SET flags = u.f
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) AS u(d, m, t, f)
WHERE r.device_id = u.d AND r.metric = u.m AND r.time = u.t
"""


def _at(us: int) -> datetime:
    """The instant of `us` as a datetime, which the timestamptz codec encodes exactly."""
    return _PG_EPOCH + timedelta(microseconds=us)


def _datetime_us(t: datetime) -> int:
    delta = t - _PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def recompute(
    conn: asyncpg.Connection, rule: SeriesRule, stretches: dict[SeriesKey, tuple[int, int]]
) -> tuple[int, dict[SeriesKey, SeriesWindow]]:
    """Re-judge each series from `history` readings before its stretch to `history` readings
    after it (beyond that the window holds only readings the change did not touch, so no
    later bit can differ); store the bits that changed. Returns the number of corrected
    rows and the windows of the series whose stretch reached their newest reading."""
    if not stretches:
        return 0, {}
    keys = list(stretches)
    rows = await conn.fetch(
        _STRETCH, [k[0] for k in keys], [k[1] for k in keys], [_at(stretches[k][0]) for k in keys],
        [_at(stretches[k][1]) for k in keys], rule.no_window_flags, rule.history,
    )
    parts: dict[int, list[list[tuple[datetime, float, int]]]] = {}
    for r in rows:
        parts.setdefault(r[0], [[], [], []])[r[1]].append((r[2], r[3], r[4]))
    fixes: list[tuple[str, str, datetime, int]] = []
    windows: dict[SeriesKey, SeriesWindow] = {}
    keep = ~rule.bits
    for n, key in enumerate(keys, 1):
        before, inside, after = parts.get(n, [[], [], []])
        before.sort()
        inside.sort()
        after.sort()
        window = SeriesWindow()
        rule.flag_run(window, key[1], [raw for _, raw, _ in before])
        judged = inside + after
        bits = rule.flag_run(window, key[1], [raw for _, raw, _ in judged])
        for (t, _raw, flags), extra in zip(judged, bits, strict=True):
            if (flags & keep) | extra != flags:
                fixes.append((key[0], key[1], t, (flags & keep) | extra))
        if len(after) < rule.history and judged:  # the stretch reached the series' newest reading
            window.newest_us = _datetime_us(judged[-1][0])
            windows[key] = window
    if fixes:
        await conn.execute(
            _CORRECT, [f[0] for f in fixes], [f[1] for f in fixes], [f[2] for f in fixes], [f[3] for f in fixes]
        )
    return len(fixes), windows


def settle_after_merge(
    plan: SeriesPlan, inserted: Sequence[tuple[str, str, int, datetime | None, datetime | None]]
) -> None:
    """Adjust `plan` to what a merge stored: (device, metric, judged rows, first, last time) per series.

    A series none of whose rows was new (a redelivery) changes nothing; a series flagged
    from its window but not fully stored (a row met a stored copy) is recomputed instead,
    from what was stored.
    """
    by_key = {
        (r[0], r[1]): (r[2], _datetime_us(r[3]), _datetime_us(r[4]))
        for r in inserted if r[2] and r[3] is not None and r[4] is not None
    }
    for key, expected in plan.expected.items():
        got = by_key.get(key)
        if key not in plan.recompute and got is not None and got[0] == expected:
            continue  # flagged from its window and fully stored
        plan.windows.pop(key, None)
        if got is None:
            plan.recompute.pop(key, None)
        else:
            plan.recompute[key] = (got[1], got[2])
