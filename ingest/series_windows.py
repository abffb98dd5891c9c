"""Per-series window state in the database, so every gateway replica gives a reading the same flags.

The stuck/spike rules judge a reading against the readings of its (device, metric) series
just before it in time. A gateway replica sees only part of a device's readings (an MQTT
shared subscription deals them out round-robin), forgets everything on restart, and may
write a batch twice (a retry after a rolled-back commit). So the rules run where all of a
series meets, inside the batch's own transaction:

- `WindowStore.lock` takes a transaction-level advisory lock per device (hashed into
  `LOCK_SLOTS` slots, taken in ascending order, so two writers never deadlock), and
  holds it until commit: two batches touching one device are written one after the other.
- `WindowStore.load` reads the device's row of the state table `series_windows` (migration
  0004: one row per device, the windows of all its series packed in one bytea); the common
  case, a batch whose rows of a series are all newer than the series' newest stored
  reading, is flagged from that state alone (`flag_new_rows`), and `WindowStore.save`
  stores the advanced state of every device the batch touched (one UPDATE of the rows it
  loaded, one upsert for devices new to the table).
- a row older than the series' newest reading (out-of-order arrival) is stored first and
  then `recompute` re-judges the affected stretch of `readings` in time order and
  corrects the flag bits that changed, so the stored flags are a function of the stored
  readings, whatever the arrival order, replica or retry.
- a rolled-back transaction leaves the state as it was: a retry feeds nothing twice.

Cost (devtools/bench/series_windows_cost.py measures it): each saved row carries the token
of the writer that saved it. A writer remembers the windows it committed last; under the
locks, a device whose row still carries its token is not transferred nor decoded again
(any other writer's save, or a lost cache, falls back to the stored row). The cache is
dropped whole when a transaction fails, since the rule advanced its windows in place.

The rules themselves are not here (ingest does not know them); the gateway passes a
`SeriesRule` (gateway.anomaly_flags.STUCK_SPIKE_RULE) to the batch writer.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from operator import itemgetter

import asyncpg

from contracts.records import ReadingRow

LOCK_SLOTS = 256  # advisory locks per batch are bounded: the shared lock table is small (64 per connection)
_LOCK_CLASS = 70_420_004  # first key of the two-key advisory locks (migrate.py uses the one-key form)
_PG_EPOCH_UNIX_S = 946_684_800.0
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Two times of a series this far apart are distinct and ordered once rounded to µs (a float
# Unix time near 2025 has a resolution of 0.24 µs); closer ones are compared as the database does.
_DISTINCT_S = 1e-5


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
    `window` past them; a reading takes part (`feeds_window`) unless it carries one of
    `no_window_flags` or its metric is one of `exempt_metrics`; `bits` are the flag bits
    the rule owns; `history` is how many readings before a reading can change its bits
    (so a change settles after `history` readings).
    """

    flag_run: Callable[[SeriesWindow, str, list[float]], list[int]]
    no_window_flags: int
    exempt_metrics: frozenset[str]
    bits: int
    history: int

    def feeds_window(self, metric: str, flags: int) -> bool:
        """Whether a reading is judged by (and feeds) the window of its series."""
        return not flags & self.no_window_flags and metric not in self.exempt_metrics


SeriesKey = tuple[str, str]
DeviceWindows = dict[str, SeriesWindow]  # metric -> window: one device's row of `series_windows`


@dataclass(slots=True)
class SeriesPlan:
    """One batch's view of its series: which were flagged from the state, which need a recompute."""

    windows: dict[SeriesKey, SeriesWindow] = field(default_factory=dict)  # advanced, to be saved
    recompute: dict[SeriesKey, tuple[int, int]] = field(default_factory=dict)  # key -> (first, last) µs
    expected: dict[SeriesKey, int] = field(default_factory=dict)  # rows of the series in the batch


# -- the packed row: per series a header, the metric's name, then the window's values ----------
_ENTRY = struct.Struct("<qdIBB")  # newest_us, last (NaN: none yet), repeats, len(recent), len(metric)
_NONE = float("nan")


@cache
def _doubles(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}d")


def pack_device(windows: DeviceWindows) -> bytes:
    """One device's windows as stored: little-endian, no text to parse.

    A `last` of None travels as NaN and comes back as None; a NaN raw value (which no
    reading equals) would come back as None too, which the rule treats alike (equal to nothing)."""
    parts: list[bytes] = []
    for metric, w in windows.items():
        name = metric.encode()
        recent = w.recent
        count = len(recent)
        parts.append(_series_entry(len(name), count).pack(
            w.newest_us, _NONE if w.last is None else w.last, w.repeats, count, len(name), name, *recent))
    return b"".join(parts)


@cache
def _series_entry(name_len: int, count: int) -> struct.Struct:
    """One series as `pack_device` writes it, in one pack call: the `_ENTRY` header, the metric's
    name, then the window's values (the layout `unpack_device` reads)."""
    return struct.Struct(f"{_ENTRY.format}{name_len}s{count}d")


def unpack_device(data: bytes) -> DeviceWindows:
    """The inverse of `pack_device`."""
    out: DeviceWindows = {}
    pos = 0
    end = len(data)
    header = _ENTRY.size
    while pos < end:
        newest, last, repeats, count, name_len = _ENTRY.unpack_from(data, pos)
        pos += header
        metric = data[pos : pos + name_len].decode()
        pos += name_len
        recent = list(_doubles(count).unpack_from(data, pos))
        pos += 8 * count
        out[metric] = SeriesWindow(newest, None if math.isnan(last) else last, repeats, recent)
    return out


def lock_slots(device_ids: Iterable[str]) -> list[int]:
    """The sorted advisory lock slots of a set of devices (a stable hash, the same in every replica)."""
    return sorted({_slot(d) for d in device_ids})


def _slot(device_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(device_id.encode(), digest_size=4).digest(), "big") % LOCK_SLOTS


_LOCK = "SELECT count(pg_advisory_xact_lock($1::int, s)) FROM unnest($2::int[]) AS s"

# every stored device row; the packed windows only where the row is not the one this writer saved last
_LOAD = """
SELECT s.device_id, s.saved_by = k.t, CASE WHEN s.saved_by = k.t THEN NULL ELSE s.windows END
FROM unnest($1::text[], $2::int8[]) AS k(d, t) JOIN series_windows s ON s.device_id = k.d
"""

_SAVE = """
INSERT INTO series_windows AS s (device_id, saved_by, windows)
SELECT d, $2, w FROM unnest($1::text[], $3::bytea[]) AS u(d, w)
ON CONFLICT (device_id) DO UPDATE SET saved_by = EXCLUDED.saved_by, windows = EXCLUDED.windows
"""
# the rows `load` found, under the devices' locks: one WAL record per row where the upsert above
# writes two (it locks the conflicting row first)
_SAVE_LOADED = """
UPDATE series_windows AS s SET saved_by = $2, windows = u.w
FROM unnest($1::text[], $3::bytea[]) AS u(d, w) WHERE s.device_id = u.d
"""


class WindowStore:
    """One writer's access to `series_windows`: locks, loads and saves device rows, and keeps
    the windows it committed last (see the module docstring) so it need not load them again.

    Call `committed()` after the transaction that saved commits and `forget()` when it fails.
    """

    def __init__(self, max_cached_devices: int = 20_000) -> None:
        self.token = secrets.randbits(62) + 1  # 0 is never a token: "load it whatever the row says"
        self.max_cached_devices = max_cached_devices
        self._cached: dict[str, DeviceWindows] = {}
        self._saved: dict[str, DeviceWindows] = {}  # saved by the open transaction
        self._loaded: set[str] = set()  # devices whose row the open transaction's `load` found
        self._slots: dict[str, int] = {}

    async def lock(self, conn: asyncpg.Connection, device_ids: Iterable[str]) -> None:
        """Hold the devices' locks until this transaction ends (ascending order: no deadlock between writers)."""
        slots = self._slots
        if len(slots) > 4 * self.max_cached_devices:
            slots.clear()
        wanted = set()
        for d in device_ids:
            s = slots.get(d)
            if s is None:
                s = slots[d] = _slot(d)
            wanted.add(s)
        if wanted:
            await conn.execute(_LOCK, _LOCK_CLASS, sorted(wanted))

    async def load(self, conn: asyncpg.Connection, device_ids: Sequence[str]) -> dict[str, DeviceWindows]:
        """The stored windows of these devices, under their locks (a device never seen has none)."""
        cached = self._cached
        token = self.token
        rows = await conn.fetch(_LOAD, device_ids, [token if d in cached else 0 for d in device_ids])
        out: dict[str, DeviceWindows] = {}
        for device, mine, packed in rows:
            if mine and packed is None:
                out[device] = cached[device]
            else:
                out[device] = unpack_device(packed)
        self._loaded = set(out)
        return out

    async def save(self, conn: asyncpg.Connection, devices: dict[str, DeviceWindows]) -> None:
        """Store these devices' windows, with this writer's token: the rows `load` found by an
        UPDATE, the others (and any row that vanished meanwhile) by the upsert."""
        if not devices:
            return
        loaded = self._loaded
        found = [d for d in devices if d in loaded]
        new = [d for d in devices if d not in loaded]
        if found:
            updated = await conn.execute(_SAVE_LOADED, found, self.token, [pack_device(devices[d]) for d in found])
            if int(updated.rsplit(" ", 1)[-1]) < len(found):  # a row deleted under us: write them all again
                new = list(devices)
        if new:
            await conn.execute(_SAVE, new, self.token, [pack_device(devices[d]) for d in new])
        self._saved.update(devices)

    def committed(self) -> None:
        """The transaction that saved committed: what it saved is what the rows hold now."""
        cached = self._cached
        for device, windows in self._saved.items():
            cached.pop(device, None)
            cached[device] = windows  # most recent last: the oldest go first when the cache is full
        self._saved = {}
        self._loaded = set()
        while len(cached) > self.max_cached_devices:
            del cached[next(iter(cached))]

    def forget(self) -> None:
        """The transaction failed (its windows were advanced in place): load everything again."""
        self._cached.clear()
        self._saved = {}
        self._loaded = set()


def series_of(rule: SeriesRule, rows: Sequence[ReadingRow]) -> tuple[dict[SeriesKey, list[int]], set[int]]:
    """Indexes of the rows that take part, grouped by series in time order, and the indexes
    of rows repeating an earlier row's (device, metric, time): those are stored once and
    judged once (the first copy wins, as in the merge's ON CONFLICT DO NOTHING).

    Hot path (every reading): no object per row beyond its index; a series whose rows came
    in time order (the common case) is not sorted."""
    groups: dict[SeriesKey, list[int]] = {}
    get = groups.get
    no_window = rule.no_window_flags
    exempt = rule.exempt_metrics
    for i, (_ts, device, metric, _raw, _value, flags, _cid) in enumerate(rows):
        if flags & no_window or metric in exempt:
            continue
        key = (device, metric)
        group = get(key)
        if group is None:
            groups[key] = [i]
        else:
            group.append(i)
    repeated: set[int] = set()
    for group in groups.values():
        if len(group) == 1:  # at half load most series of a batch hold one row
            continue
        previous = -float("inf")
        for i in group:
            t = rows[i][0]
            if t - previous <= _DISTINCT_S:
                break
            previous = t
        else:
            continue  # in time order, no two times alike
        kept: list[int] = []
        last_us = None
        for us, i in sorted([(time_us(rows[i][0]), i) for i in group]):
            if us == last_us:
                repeated.add(i)
            else:
                kept.append(i)
                last_us = us
        group[:] = kept
    return groups, repeated


_FLAGS = itemgetter(5)


def flag_new_rows(
    rule: SeriesRule, rows: list[ReadingRow], groups: dict[SeriesKey, list[int]],
    stored: dict[str, DeviceWindows], *, copy_windows: bool,
) -> tuple[list[ReadingRow], SeriesPlan]:
    """Rows with the rule's bits set from the stored windows (the fast path); a series with a
    row not newer than its window is left to `recompute` (its rows keep the bits clear).

    The stored windows are advanced in place unless `copy_windows` (a merge may yet decide
    not to save a series, whose stored window must then stay as it was)."""
    out = list(rows)
    plan = SeriesPlan()
    bits_owned = rule.bits
    keep = ~bits_owned
    flag_run = rule.flag_run
    # bits set before the rule ran (none, from the gateway); C-level loops: this runs over every row
    carried = any(map(bits_owned.__and__, map(_FLAGS, rows)))
    expected = plan.expected
    advanced = plan.windows
    for key, group in groups.items():
        # hot path (every series of every batch; at half load most series hold one row): a
        # one-row series converts its time once and makes its list of raws without a comprehension
        n = len(group)
        expected[key] = n
        device = stored.get(key[0])
        window = device.get(key[1]) if device is not None else None
        first = rows[group[0]]
        first_us = time_us(first[0])
        last_us = first_us if n == 1 else time_us(rows[group[-1]][0])
        if window is not None and first_us <= window.newest_us:
            plan.recompute[key] = (first_us, last_us)
            if carried:
                for i in group:
                    r = rows[i]
                    if r[5] & bits_owned:
                        out[i] = (r[0], r[1], r[2], r[3], r[4], r[5] & keep, r[6])
            continue
        if window is None:
            window = SeriesWindow()
        elif copy_windows:
            window = SeriesWindow(window.newest_us, window.last, window.repeats, window.recent.copy())
        bits = flag_run(window, key[1], [first[3]] if n == 1 else [rows[i][3] for i in group])
        window.newest_us = last_us
        advanced[key] = window
        if carried or any(bits):
            for i, extra in zip(group, bits, strict=True):
                r = rows[i]
                flags = (r[5] & keep) | extra
                if flags != r[5]:
                    out[i] = (r[0], r[1], r[2], r[3], r[4], flags, r[6])
    return out, plan


def devices_to_save(
    stored: dict[str, DeviceWindows], windows: dict[SeriesKey, SeriesWindow]
) -> dict[str, DeviceWindows]:
    """The device rows a batch changes: each stored row with the batch's advanced windows in."""
    touched: dict[str, DeviceWindows] = {}
    for (device, metric), window in windows.items():
        row = touched.get(device)
        if row is None:
            row = touched[device] = stored.get(device, {})
        row[metric] = window
    return touched


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
