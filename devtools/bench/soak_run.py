"""`citysense bench soak`: a steady load for many minutes, watching the gateway's memory.

A gateway that leaks a few bytes per message looks fine in a 30 s benchmark and dies after
a week; this run samples the gateway's resident memory every few seconds under a constant
offered rate and reports the first and last minutes' averages and the growth per minute
(least-squares slope over the steady part), together with loss as in `bench ingest`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil

from devtools.bench.ingest_run import ACKED, _count, _wait, machine_facts, register_devices
from devtools.bench.loadgen import METRICS_PER_MESSAGE, BackgroundLoad, LoadSpec
from devtools.bench.servers import BenchServers, GatewayGroup


@dataclass(frozen=True)
class SoakOptions:
    devices: int = 1000
    rate: float = 2000.0
    minutes: float = 10.0
    sample_s: float = 5.0


class RssSampler:
    """Resident memory (MB) of a process group, sampled on a thread."""

    def __init__(self, processes: Any, interval_s: float) -> None:
        self.processes = processes
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss_mb(self) -> float:
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.interval_s):
            self.samples.append((time.monotonic() - t0, self._rss_mb()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def memory_summary(samples: list[tuple[float, float]]) -> dict[str, float | None]:
    """First/last minute averages, peak, and the slope (MB/min) after the first minute."""
    if len(samples) < 4:
        return {"first_min_mb": None, "last_min_mb": None, "peak_mb": None, "slope_mb_per_min": None}
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples])
    steady = t >= 60.0 if t[-1] > 120.0 else t >= t[len(t) // 4]
    slope = float(np.polyfit(t[steady] / 60.0, mb[steady], 1)[0]) if steady.sum() >= 3 else None
    first = mb[t < min(60.0, t[-1] / 4 + 1e-9)]
    last = mb[t > t[-1] - min(60.0, t[-1] / 4)]
    return {
        "first_min_mb": round(float(first.mean()), 1) if first.size else None,
        "last_min_mb": round(float(last.mean()), 1) if last.size else None,
        "peak_mb": round(float(mb.max()), 1),
        "slope_mb_per_min": None if slope is None else round(slope, 3),
    }


def run_soak(o: SoakOptions) -> dict[str, Any]:
    servers = BenchServers(fsync=True)
    started = time.time()
    results: dict[str, Any] = {"kind": "soak", "options": o.__dict__, "machine": machine_facts()}
    try:
        servers.start_postgres()
        broker = servers.start_broker("soak")
        db = servers.database("bench_soak")
        register_devices(db, o.devices)
        gw = GatewayGroup(1, broker.url, db, servers.root)
        try:
            gw.wait_ready()
            spec = LoadSpec("127.0.0.1", broker.port, o.devices, o.rate, o.minutes * 60.0)
            sampler = RssSampler(gw.processes, o.sample_s)
            sampler.start()
            load = BackgroundLoad(spec)
            result = load.join()
            drained = _wait(lambda: gw.metric(ACKED) >= result.acked, 60 + result.published / 2000)
            samples = sampler.stop()
        finally:
            gw.stop()
        stored = _count(db, "SELECT count(*) FROM readings")
        results["memory"] = memory_summary(samples)
        results["memory_samples"] = [[round(t, 1), round(m, 1)] for t, m in samples]
        results["loss"] = {
            "published_and_broker_acked": result.acked,
            "readings_expected": result.acked * METRICS_PER_MESSAGE,
            "readings_stored": stored,
            "lost_messages": max(0, result.acked - stored // METRICS_PER_MESSAGE),
            "drained": drained,
        }
        results["published_msg_s"] = round(result.rate, 1)
        broker.stop()
    finally:
        servers.close()
    results["elapsed_s"] = round(time.time() - started, 1)
    return results
