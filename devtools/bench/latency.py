"""Publish-to-commit latency, observed from outside the gateway by polling the database.

A few probe devices are watched: every `interval_s` one query asks for their rows newer
than the last seen (an index range scan on (device_id, metric, time)). A row that shows
up became visible between the previous query's snapshot and this one's, so its commit
time is taken as the midpoint of the two (error at most half the poll interval plus the
query time, a few ms). Latency = that time - the message's `ts`, which the load generator
set to the moment the message was scheduled to be published (same machine, same clock).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
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


def _probe(database_url: str, devices: list[str], since: float, interval_s: float, stop: Any, out: Any) -> None:
    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    marks: dict[str, datetime] = dict.fromkeys(devices, datetime.fromtimestamp(since).astimezone())
    samples: list[tuple[float, float]] = []  # (ts, latency_s)
    with psycopg.connect(database_url, autocommit=True, prepare_threshold=0) as conn:
        previous = time.time()
        while not stop.is_set():
            sent = time.time()
            rows = conn.execute(_NEW_ROWS, (list(marks), list(marks.values()))).fetchall()
            committed_at = (previous + sent) / 2
            for device, when in rows:
                ts = when.timestamp()
                samples.append((ts, committed_at - ts))
                marks[device] = max(marks[device], when)
            previous = sent
            time.sleep(max(0.0, interval_s - (time.time() - sent)))
    out.put((samples, sum(proc.cpu_times()[:2]) - cpu0))


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

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        samples, self.cpu_s = self._out.get(timeout=30)
        self.process.join(10)
        return list(samples)
