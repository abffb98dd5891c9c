"""`citysense bench api`: a city's two weeks of data, then the API's main reads over HTTP.

Data: `devices` air boxes x `days` of one reading per minute of pm25, t and rh (1,000 x 14
days = 60.5M rows), made inside PostgreSQL with generate_series (no rows cross the wire),
with the table's two indexes dropped during the load and built once afterwards (the same
names and definitions as the migrations). The server runs with fsync
off for the load (what is measured are reads, which fsync does not touch).

Reads: `python -m citysense api` in a child process, timed from an HTTP client with a
kept-alive connection, one request at a time: GET /v1/latest?metric=pm25 (the city map)
GET /v1/readings for one random device and one random day, and the SensorThings query Taiwan's
Civil IoT clients send for "the latest PM2.5 of every station in a city" (every bench box is in
臺北市, so its $count is all 1,000 Datastreams; the page is the default $top of 100, and once more
with $top=1000 for all of them in one response). Then the map page itself in chromium
(devtools/bench/map_page.py): when every one of the 1,000 markers is drawn, cold and warm.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from devtools.bench.latency import quantile
from devtools.bench.map_page import map_page_timings
from devtools.bench.servers import REPO, BenchServers
from devtools.ports import free_port, wait_for_port
from ingest.device_store import DeviceFields, register_devices
from ingest.latest_readings import rebuild as rebuild_latest

# One device per statement. Values follow a daily cycle plus noise, to 0.1 like the sensors.
_READINGS = """
INSERT INTO readings (time, device_id, metric, raw, value, flags)
SELECT t, %(device)s, m.metric, v.x, v.x, 0
FROM (VALUES ('pm25', 18.0, 10.0, 4.0), ('rh', 70.0, 12.0, 3.0), ('t', 24.0, 4.0, 0.5))
     AS m(metric, base, swing, noise)
CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS t
CROSS JOIN LATERAL (
    SELECT floor(10 * (m.base + m.swing * sin(extract(epoch FROM t) / 13750.987) + random() * m.noise)) / 10 AS x
) v
"""


@dataclass(frozen=True)
class ApiOptions:
    devices: int = 1000
    days: float = 14.0
    requests: int = 200


def _device(i: int) -> str:
    return f"api-{i:05d}"


class ApiBench:
    def __init__(self, options: ApiOptions) -> None:
        self.o = options
        self.servers = BenchServers(fsync=False)
        self.end = datetime.now(UTC).replace(second=0, microsecond=0)
        self.start = self.end - timedelta(days=options.days) + timedelta(minutes=1)

    # -- data ----------------------------------------------------------------------------------
    def _load_part(self, url: str, part: int, parts: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(b"SET synchronous_commit = off")
            for i in range(part, self.o.devices, parts):
                conn.execute(_READINGS.encode(), {"device": _device(i), "start": self.start, "end": self.end})

    def _generate(self, url: str) -> dict[str, Any]:
        started = time.perf_counter()
        register_devices(url, [
            (_device(i), DeviceFields(name=f"Box {i}", school=f"School {i % 300}", lat=25.0 + (i % 40) * 0.004,
                                      lon=121.45 + (i // 40) * 0.006, owner="bench", city="臺北市"))
            for i in range(self.o.devices)
        ])
        with psycopg.connect(url, autocommit=True) as conn:
            # rebuilt after the load exactly as the migrations defined it (its direction is per backend)
            row = conn.execute(b"SELECT indexdef FROM pg_indexes WHERE indexname = 'readings_time_idx'").fetchone()
            time_index = str(row[0]) if row else "CREATE INDEX readings_time_idx ON readings (time)"
            conn.execute(b"DROP INDEX IF EXISTS readings_time_idx")
            conn.execute(b"ALTER TABLE readings DROP CONSTRAINT IF EXISTS readings_device_metric_time_key")
        parts = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(parts) as pool:
            for f in [pool.submit(self._load_part, url, p, parts) for p in range(parts)]:
                f.result()
        loaded = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(b"SET maintenance_work_mem = '1GB'")
            conn.execute(
                b"ALTER TABLE readings ADD CONSTRAINT readings_device_metric_time_key UNIQUE (device_id, metric, time)"
            )
            conn.execute(time_index.encode())
            rebuild_latest(conn)  # the bulk load bypassed the batch writer that keeps them
            conn.execute(b"VACUUM ANALYZE readings")
            conn.execute(b"VACUUM ANALYZE latest_readings")
            conn.execute(b"VACUUM ANALYZE devices")
            row = conn.execute(b"SELECT count(*) FROM readings").fetchone()
            size = conn.execute(b"SELECT pg_size_pretty(pg_total_relation_size('readings'))").fetchone()
        rows = int(row[0]) if row else 0
        seconds = time.perf_counter() - started
        return {
            "devices": self.o.devices, "days": self.o.days, "rows": rows, "seconds": round(seconds, 1),
            "insert_seconds": round(loaded - started, 1), "rows_s": round(rows / (loaded - started), 1),
            "table_size": size[0] if size else None,
        }

    # -- reads -----------------------------------------------------------------------------------
    def _time(self, http: httpx.Client, make: Any, n: int) -> dict[str, Any]:
        for _ in range(min(10, n)):  # warm the pool, the plan cache and the page cache a little
            path, params = make()
            http.get(path, params=params).raise_for_status()
        times: list[float] = []
        sizes: list[int] = []
        for _ in range(n):
            path, params = make()
            t0 = time.perf_counter()
            resp = http.get(path, params=params)
            times.append(time.perf_counter() - t0)
            resp.raise_for_status()
            sizes.append(len(resp.content))
        ordered = sorted(times)
        return {
            "n": n, "p50_ms": round(1000 * quantile(ordered, 0.5), 1),
            "p95_ms": round(1000 * quantile(ordered, 0.95), 1), "p99_ms": round(1000 * quantile(ordered, 0.99), 1),
            "max_ms": round(1000 * ordered[-1], 1),
            "mean_bytes": round(sum(sizes) / len(sizes)),
        }

    @contextlib.contextmanager
    def _api(self, url: str, **extra_env: str) -> Iterator[httpx.Client]:
        """`citysense api` in its own process, as in production, and a client on it."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
        # the bench is one very fast client: the per-client rate limit would measure itself, not the queries
        env.update(CITYSENSE_DATABASE_URL=url, CITYSENSE_LOG_LEVEL="WARNING", CITYSENSE_API_RATE_LIMIT_PER_S="0",
                   PYTHONPATH=str(REPO), **extra_env)
        log_path = self.servers.root / "api.log"
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "citysense", "api", "--port", str(port)], env=env, cwd=REPO,
                stdout=log_file, stderr=subprocess.STDOUT,
            )
            try:
                wait_for_port(port, 60)
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                    yield http
            finally:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _reads(self, url: str) -> dict[str, Any]:
        rng = random.Random(6)
        whole_days = max(1, int(self.o.days))

        def latest() -> tuple[str, dict[str, str]]:
            return "/v1/latest", {"metric": "pm25"}

        misses = itertools.count()

        def latest_new_age() -> tuple[str, dict[str, str]]:
            # a max_age_s never asked before is a new body: the rows come from memory, cut per request
            return "/v1/latest", {"metric": "pm25", "max_age_s": str(10_800 + next(misses))}

        def one_day() -> tuple[str, dict[str, str]]:
            day_start = self.end - timedelta(days=rng.randint(1, whole_days))
            return "/v1/readings", {
                "device_id": _device(rng.randrange(self.o.devices)), "metric": "pm25",
                "start": day_start.isoformat(), "end": (day_start + timedelta(days=1)).isoformat(),
            }

        def sta_latest(top: int | None) -> Any:
            def make() -> tuple[str, dict[str, str]]:
                params = {
                    "$expand": "Thing,Observations($orderby=phenomenonTime desc;$top=1)",
                    "$filter": "name eq 'PM2.5' and Thing/properties/city eq '臺北市'", "$count": "true",
                }
                if top is not None:
                    params["$top"] = str(top)
                return "/sta/v1.1/Datastreams", params
            return make

        with self._api(url) as http:
            first = http.get("/v1/latest", params={"metric": "pm25"})
            first.raise_for_status()
            features = len(first.json().get("features", []))
            path, params = one_day()
            sample = http.get(path, params=params).json()
            out = {
                "GET /v1/latest?metric=pm25": self._time(http, latest, self.o.requests),
                "GET /v1/latest?metric=pm25 (new max_age_s, rows cached)": self._time(
                    http, latest_new_age, self.o.requests
                ),
                "GET /v1/readings (1 device, pm25, 1 day)": self._time(http, one_day, self.o.requests),
                "GET /sta/v1.1/Datastreams latest PM2.5 in a city ($top 100, $count)": self._time(
                    http, sta_latest(None), self.o.requests
                ),
                "GET /sta/v1.1/Datastreams latest PM2.5 in a city ($top=1000)": self._time(
                    http, sta_latest(1000), max(1, self.o.requests // 4)
                ),
            }
        # the map page in a browser, on a fresh API (its first load finds the cache cold)
        with self._api(url) as http:
            out["_map_page"] = map_page_timings(str(http.base_url).rstrip("/"), features)
        # no cache at all: every request reads the database and builds the body
        with self._api(url, CITYSENSE_API_LATEST_CACHE_S="0") as http:
            out["GET /v1/latest?metric=pm25 (cache off: query every time)"] = self._time(
                http, latest, self.o.requests
            )
        out["_check"] = {"latest_features": features, "one_day_rows": len(sample.get("results", []))}
        return out

    def run(self) -> dict[str, Any]:
        started = time.time()
        try:
            backend = self.servers.start_postgres()
            url = self.servers.database("bench_api")
            data = self._generate(url)
            queries = self._reads(url)
        finally:
            self.servers.close()
        check = queries.pop("_check")
        map_page = queries.pop("_map_page")
        return {
            "kind": "api", "backend": backend, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "options": asdict(self.o), "data": data, "queries": queries, "check": check, "map_page": map_page,
            "elapsed_s": round(time.time() - started, 1),
        }
