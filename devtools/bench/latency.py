"""Publish-to-commit latency, observed from outside the gateway by polling the database.

A few probe devices are watched: every `interval_s` one query asks for their rows newer
than the last seen (an index range scan on (device_id, metric, time)). A row that shows
up became visible between the previous query's snapshot and this one's, so its commit
time is taken as the midpoint of the two (error at most half the poll interval plus the
query time, a few ms). Latency = that time - the message's `ts`, which the load generator
set to the moment the message was scheduled to be published (same machine, same clock).

Every `MAINTENANCE_EVERY_S` the probe also notes the server's own work in progress (a vacuum or
analyze by table, a checkpoint being written): the half-load p99 moved between 0.3 and 1.7 s
from run to run, and `maintenance_effect` tells whether its slow commits fall while the server
maintains itself (autovacuum after the full-load phase's million rows, a checkpoint's writes).
"""

from __future__ import annotations

import bisect
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psutil
import psycopg

_NEW_ROWS = """
SELECT r.device_id, r.time
FROM unnest(%s::text[], %s::timestamptz[]) AS w(d, t)
CROSS JOIN LATERAL (
    SELECT device_id, time FROM readings
    WHERE device_id = w.d AND metric = 'pm25' AND time > w.t
    ORDER BY time
) r
"""


# the server's maintenance in progress, in every database: vacuums and analyzes by table (autovacuum's
# included), and the checkpointer while it writes (its wait event is CheckpointerMain when idle)
_MAINTENANCE = """
SELECT 'vacuum ' || coalesce(c.relname, p.relid::text) FROM pg_stat_progress_vacuum p
LEFT JOIN pg_class c ON c.oid = p.relid
UNION ALL
SELECT 'analyze ' || coalesce(c.relname, p.relid::text) FROM pg_stat_progress_analyze p
LEFT JOIN pg_class c ON c.oid = p.relid
UNION ALL
SELECT 'checkpoint' FROM pg_stat_activity
WHERE backend_type = 'checkpointer' AND wait_event IS DISTINCT FROM 'CheckpointerMain'
"""
MAINTENANCE_EVERY_S = 0.25
Maintenance = list[tuple[float, tuple[str, ...]]]  # (time, what the server was doing then)


def _probe(database_url: str, devices: list[str], since: float, interval_s: float, stop: Any, out: Any) -> None:
    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    marks: dict[str, datetime] = dict.fromkeys(devices, datetime.fromtimestamp(since).astimezone())
    samples: list[tuple[float, float]] = []  # (ts, latency_s)
    maintenance: Maintenance = []
    with psycopg.connect(database_url, autocommit=True, prepare_threshold=0) as conn:
        previous = time.time()
        noted = 0.0
        while not stop.is_set():
            sent = time.time()
            if sent - noted >= MAINTENANCE_EVERY_S:
                maintenance.append((sent, tuple(sorted(str(r[0]) for r in conn.execute(_MAINTENANCE)))))
                noted = sent
            rows = conn.execute(_NEW_ROWS, (list(marks), list(marks.values()))).fetchall()
            committed_at = (previous + sent) / 2
            for device, when in rows:
                ts = when.timestamp()
                samples.append((ts, committed_at - ts))
                marks[device] = max(marks[device], when)
            previous = sent
            time.sleep(max(0.0, interval_s - (time.time() - sent)))
    out.put((samples, maintenance, sum(proc.cpu_times()[:2]) - cpu0))


@dataclass
class LatencyStats:
    samples: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def summarize(latencies_s: list[float]) -> LatencyStats:
    if not latencies_s:
        return LatencyStats(0, None, None, None, None)
    ordered = sorted(latencies_s)

    def ms(q: float) -> float:
        return round(1000 * quantile(ordered, q), 1)

    return LatencyStats(len(ordered), ms(0.50), ms(0.95), ms(0.99), round(1000 * ordered[-1], 1))


class CommitProbe:
    """The polling probe in its own process; `stop` returns (ts, latency) samples."""

    def __init__(self, database_url: str, devices: list[str], since: float, interval_s: float = 0.025) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._out = ctx.Queue()
        self.process = ctx.Process(
            target=_probe, args=(database_url, devices, since, interval_s, self._stop, self._out), daemon=True
        )
        self.process.start()
        self.cpu_s = 0.0
        self.maintenance: Maintenance = []

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        samples, self.maintenance, self.cpu_s = self._out.get(timeout=30)
        self.process.join(10)
        return list(samples)


def _vacuuming(names: tuple[str, ...]) -> bool:
    """A note that names a vacuum or an analyze. A checkpoint is not counted: with
    checkpoint_completion_target 0.9 the checkpointer writes through most of every interval, so
    it would mark nearly every row; its seconds are reported all the same."""
    return any(not name.startswith("checkpoint") for name in names)


def maintenance_effect(
    samples: list[tuple[float, float]], maintenance: Maintenance, start: float, end: float
) -> dict[str, Any]:
    """What the server maintained between `start` and `end` (seconds seen doing each thing), and
    the latency of the rows committed while a vacuum or analyze ran against the others (a row's
    commit time is its ts + latency; it counts as "during" when a maintenance note at most 1 s
    away names one)."""
    notes = [(t, what) for t, what in maintenance if start <= t <= end]
    counts = Counter(what for _, names in notes for what in set(names))
    seen = {what: round(MAINTENANCE_EVERY_S * n, 2) for what, n in counts.items()}
    times = [t for t, _ in notes]
    during: list[float] = []
    otherwise: list[float] = []
    for ts, latency in samples:
        if not start <= ts <= end:
            continue
        committed = ts + latency
        i = bisect.bisect_left(times, committed)
        near = [j for j in (i - 1, i) if 0 <= j < len(times) and abs(times[j] - committed) <= 1.0]
        busy = any(_vacuuming(notes[j][1]) for j in near)
        (during if busy else otherwise).append(latency)
    return {
        "seconds_seen": dict(sorted(seen.items(), key=lambda kv: -kv[1])),
        "busy_share": round(sum(1 for _, names in notes if _vacuuming(names)) / len(notes), 3) if notes else None,
        "latency_while_busy": asdict(summarize(during)),
        "latency_otherwise": asdict(summarize(otherwise)),
    }
