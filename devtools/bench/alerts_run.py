"""`citysense bench alerts`: one evaluation cycle over a city, and the delay from condition to delivered webhook.

Data: `devices` air boxes in `schools` schools (a school's boxes side by side) on a grid
about 300 m apart, with 12 hours of PM2.5 history (one reading every 10 minutes, near 15 µg/m³,
made inside PostgreSQL) and then live readings every `interval_s` from a feeder (one INSERT per
tick for every box still sending).

Measured:
- cycle: `Evaluator.run_cycle` on the whole city, twice before anything happens (the second is
  reported: a warm cache is the steady state of a long-running evaluator);
- silence: `silent` boxes stop; for each, webhook arrival - (last stored reading + k x the interval
  the evaluator used, from the alert's evidence), i.e. how long after the rule's condition became
  true the receiver had the alert; the
  promise is at most one cycle (plus the delivery worker's poll);
- band crossing: the last four hours of `crossing_schools` schools are raised to 80 µg/m³
  (their MOENV real-time AQI enters USG or worse); for each, webhook arrival - the commit that
  crossed; the promise is at most one cycle.
Then `citysense alerts run` logic (alerts.service.run_alerts) runs in this process with a
webhook receiver on loopback and a Mosquitto for the flags, as in production.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from alerts.evaluator import Evaluator
from alerts.rules import load_rules
from alerts.service import run_alerts
from contracts.settings import Settings
from devtools.bench.latency import quantile
from devtools.bench.servers import BenchServers
from devtools.ports import free_port

K = 3


@dataclass(frozen=True)
class AlertsOptions:
    devices: int = 10_000
    schools: int = 500
    interval_s: float = 10.0
    cycle_s: float = 10.0
    silent: int = 100
    crossing_schools: int = 20


_HISTORY = """
INSERT INTO readings (time, device_id, metric, raw, value, flags)
SELECT t, 'al-' || lpad(i::text, 5, '0'), 'pm25', v.x, v.x, 0
FROM generate_series(0, %(n)s - 1) AS i
CROSS JOIN generate_series(now() - interval '12 hours', now() - interval '10 minutes', interval '10 minutes') AS t
CROSS JOIN LATERAL (SELECT round((15 + random() * 3)::numeric, 1)::float8 AS x) v
"""

_LIVE = """
INSERT INTO readings (time, device_id, metric, raw, value, flags)
SELECT now(), 'al-' || lpad(i::text, 5, '0'), 'pm25', 16.0, 16.0, 0
FROM generate_series(0, %(n)s - 1) AS i WHERE NOT (i = ANY(%(quiet)s))
ON CONFLICT DO NOTHING
"""


class _Receiver:
    """Webhook arrivals: (rule, subject, transition) -> Unix time of the first arrival and its alert."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                key = (body["alert"]["rule"], body["alert"]["subject"], body["transition"])
                with receiver.lock:
                    receiver.first.setdefault(key, (time.time(), body["alert"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def arrived(self, rule: str, subject: str, transition: str = "opened") -> float | None:
        with self.lock:
            found = self.first.get((rule, subject, transition))
        return None if found is None else found[0]

    def silent_condition_at(self, subject: str) -> float:
        """When the silent rule's condition became true: last reading + k x the interval the evaluator used."""
        with self.lock:
            evidence = self.first[("device_silent", subject, "opened")][1]["evidence"]
        return float(datetime.fromisoformat(evidence["last_seen"]).timestamp() + evidence["k"] * evidence["interval_s"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_s": None, "p95_s": None, "max_s": None}
    ordered = sorted(values)
    return {
        "n": len(values),
        "p50_s": round(quantile(ordered, 0.5), 3),
        "p95_s": round(quantile(ordered, 0.95), 3),
        "max_s": round(ordered[-1], 3),
    }


class AlertsBench:
    def __init__(self, options: AlertsOptions) -> None:
        self.o = options
        self.servers = BenchServers(fsync=False)

    def _seed(self, url: str) -> float:
        started = time.perf_counter()
        side = max(1, round(self.o.devices**0.5))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO devices (device_id, kind, school, lat, lon, registered)"
                " SELECT 'al-' || lpad(i::text, 5, '0'), 'airbox', 'School ' || (i * %(schools)s / %(n)s),"
                " 25.0 + (i / %(side)s) * 0.0027, 121.4 + (i %% %(side)s) * 0.003, true"
                " FROM generate_series(0, %(n)s - 1) AS i",
                {"n": self.o.devices, "schools": self.o.schools, "side": side},
            )
            conn.execute("SET synchronous_commit = off")
            conn.execute(_HISTORY, {"n": self.o.devices})
            conn.execute("ANALYZE readings")
        return time.perf_counter() - started

    def run(self) -> dict[str, Any]:
        try:
            return asyncio.run(self._run())
        finally:
            self.servers.close()

    async def _cycle_seconds(self, url: str, rules_path: Path) -> list[float]:
        evaluator = Evaluator(load_rules(rules_path))
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            return [round((await evaluator.run_cycle(conn)).seconds, 3) for _ in range(2)]
        finally:
            await conn.close()

    async def _run(self) -> dict[str, Any]:
        o = self.o
        backend = self.servers.start_postgres()
        url = self.servers.database("alerts_bench")
        broker = self.servers.start_broker("flags")
        receiver = _Receiver()
        quiet: list[int] = []
        rules_path = self.servers.root / "rules.toml"
        rules_path.write_text(
            f'version = "bench"\n[device_silent]\nk = {K}\n[pipeline]\nsilent_share = 0.9\n'
            f'[[webhooks]]\nurl = "http://127.0.0.1:{receiver.port}/hook"\n'
        )
        seed_s = await asyncio.to_thread(self._seed, url)
        stop_feeding = threading.Event()

        def feed() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                while not stop_feeding.is_set():
                    conn.execute(_LIVE, {"n": o.devices, "quiet": list(quiet)})
                    stop_feeding.wait(o.interval_s)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            await asyncio.sleep(o.interval_s * 7)  # seven live readings: every box has an observed cadence
            cycles = await self._cycle_seconds(url, rules_path)
            settings = Settings(
                database_url=url,
                mqtt_url=broker.url,
                alerts_interval_s=o.cycle_s,
                alerts_metrics_port=0,
                alerts_webhook_secret="bench-secret",  # noqa: S106 - a loopback bench
                alerts_rules_file=rules_path,
            )
            stop = asyncio.Event()
            service = asyncio.create_task(run_alerts(settings, stop))
            await asyncio.sleep(o.cycle_s * 2)

            silenced = [i * max(1, o.devices // max(1, o.silent)) % o.devices for i in range(o.silent)]
            quiet.extend(silenced)
            crossing = [f"School {s}" for s in range(o.crossing_schools)]
            await asyncio.sleep(o.interval_s * 1.5)
            with psycopg.connect(url, autocommit=True) as conn:
                last: dict[str, float] = dict(
                    conn.execute(
                        "SELECT device_id, extract(epoch FROM max(time))::float8 FROM readings"
                        " WHERE device_id = ANY(%s) GROUP BY device_id",
                        ([f"al-{i:05d}" for i in silenced],),
                    ).fetchall()
                )
                conn.execute(
                    "UPDATE readings SET value = 80, raw = 80 FROM devices d WHERE d.device_id = readings.device_id"
                    " AND d.school = ANY(%s) AND readings.time > now() - interval '4 hours'",
                    (crossing,),
                )
                crossed_at = time.time()
            deadline = time.time() + K * o.interval_s + 3 * o.cycle_s + 30
            while time.time() < deadline:
                done_silent = all(receiver.arrived("device_silent", d) for d in last)
                done_school = all(receiver.arrived("school_air", s) for s in crossing)
                if done_silent and done_school:
                    break
                await asyncio.sleep(0.2)
            stop.set()
            await service
        finally:
            stop_feeding.set()
            feeder.join(30)
            receiver.close()
        silent_delays = [
            t - receiver.silent_condition_at(d) for d in last if (t := receiver.arrived("device_silent", d)) is not None
        ]
        school_delays = [t - crossed_at for s in crossing if (t := receiver.arrived("school_air", s)) is not None]
        return {
            "options": asdict(o),
            "backend": backend,
            "seed_s": round(seed_s, 1),
            "cycle_s": cycles,
            "silent_after_condition": _stats(silent_delays),
            "silent_missing": len(last) - len(silent_delays),
            "school_after_crossing": _stats(school_delays),
            "school_missing": len(crossing) - len(school_delays),
        }
