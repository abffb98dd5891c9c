"""Profile the SensorThings query Taiwan's clients send, on a seeded city, in seconds (not `citysense bench`).

    python -m devtools.bench.sta_latest_profile --data /tmp/sta-profile [--devices 1000] [--hours 24] [--top 1000]

The query: `Datastreams?$expand=Thing,Observations($orderby=phenomenonTime desc;$top=1)&$filter=name eq
'PM2.5' and Thing/properties/city eq '臺北市'&$count=true` (the default $top of 100; `--top 1000` asks for the
page Taiwan's clients ask for). The script
1. seeds `devices` air boxes in 臺北市 with `hours` of one-minute pm25, t and rh (made inside PostgreSQL),
   once: a second run with the same `--data` reuses the server and its data and only applies
   migrations it has not yet (so an index added by a migration is measured on the same rows);
2. prints EXPLAIN ANALYZE of every statement the request runs (auto_explain, into this session), and
   each statement's median server-side duration over 30 requests;
3. times `requests` GETs over HTTP against `python -m citysense api`, one at a time on a kept-alive
   connection, as `citysense bench api` does, and prints p50/p95/max.
Bounded: 1,000 devices x 24 h is 4.3M rows (about a minute to load here), 100 requests a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from api.sensorthings.query_runner import QueryRunner
from devtools.bench.latency import quantile
from devtools.bench.servers import REPO, with_children
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port, wait_for_port
from ingest.device_store import DeviceFields, register_devices
from ingest.latest_readings import rebuild as rebuild_latest
from ingest.migrate import migrate

PARAMS = {
    "$expand": "Thing,Observations($orderby=phenomenonTime desc;$top=1)",
    "$filter": "name eq 'PM2.5' and Thing/properties/city eq '臺北市'",
    "$count": "true",
}
DATABASE = "sta_profile"
PORT_FILE = "port"

_READINGS = """
INSERT INTO readings (time, device_id, metric, raw, value, flags)
SELECT t, d.device_id, m.metric, v.x, v.x, 0
FROM devices d
CROSS JOIN (VALUES ('pm25', 18.0), ('rh', 70.0), ('t', 24.0)) AS m(metric, base)
CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS t
CROSS JOIN LATERAL (SELECT floor(10 * (m.base + random() * 4)) / 10 AS x) v
WHERE d.device_id >= %(low)s AND d.device_id < %(high)s
"""


def _server(data: Path) -> tuple[LocalPostgres, bool]:
    """The profile's server, started; True when its data was made by an earlier run."""
    port_file = data / PORT_FILE
    reused = port_file.exists()
    port = int(port_file.read_text()) if reused else free_port()
    server = LocalPostgres(data / "pg", port, fsync=False)
    server.start()
    port_file.write_text(str(port))
    return server, reused


def _seed(url: str, devices: int, hours: float) -> None:
    started = time.perf_counter()
    register_devices(url, [
        (f"sta-{i:05d}", DeviceFields(name=f"Box {i}", school=f"School {i % 300}", lat=25.0 + (i % 40) * 0.004,
                                      lon=121.45 + (i // 40) * 0.006, city="臺北市"))
        for i in range(devices)
    ])
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"SET synchronous_commit = off")
        for low in range(0, devices, 100):
            conn.execute(_READINGS.encode(), {"start": end - timedelta(hours=hours), "end": end,
                                              "low": f"sta-{low:05d}", "high": f"sta-{low + 100:05d}"})
        rebuild_latest(conn)  # readings made past the batch writer: latest_readings follows them here
        conn.execute(b"VACUUM ANALYZE")
        rows = conn.execute(b"SELECT count(*) FROM readings").fetchone()
    print(f"seeded {devices} devices, {rows[0] if rows else 0} readings in {time.perf_counter() - started:.0f} s")


async def _explain(url: str, params: dict[str, str]) -> None:
    """Every statement of one request, with its plan as it ran (auto_explain, reported to this session)."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    plans: list[str] = []
    conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                    "SET auto_explain.log_analyze = on", "SET auto_explain.log_buffers = on",
                    "SET auto_explain.log_nested_statements = on", "SET auto_explain.log_level = notice"):
        await conn.execute(setting.encode())
    await QueryRunner(conn, "http://127.0.0.1/sta/v1.1").get("Datastreams", params)  # warm
    plans.clear()
    started = time.perf_counter()
    await QueryRunner(conn, "http://127.0.0.1/sta/v1.1").get("Datastreams", params)
    print(f"one request in-process with auto_explain: {1000 * (time.perf_counter() - started):.0f} ms, "
          f"{len(plans)} statements")
    for plan in plans:
        print(plan, "\n")
    await conn.close()


async def _statement_ms(url: str, runs: int, params: dict[str, str]) -> list[float]:
    """Median server-side duration of each statement of the request over `runs` requests
    (auto_explain's duration, without per-node timing): the database's part, client excluded."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    durations: list[float] = []

    def note(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if text.startswith("duration:"):
            durations.append(float(text.split()[1]))

    conn.add_notice_handler(note)
    for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                    "SET auto_explain.log_format = json", "SET auto_explain.log_level = notice"):
        await conn.execute(setting.encode())
    per_run: list[list[float]] = []
    for _ in range(runs + 3):
        durations.clear()
        await QueryRunner(conn, "http://127.0.0.1/sta/v1.1").get("Datastreams", params)
        per_run.append(list(durations))
    await conn.close()
    per_run = per_run[3:]  # warmed
    return [round(sorted(run[i] for run in per_run)[len(per_run) // 2], 2) for i in range(len(per_run[0]))]


def _cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _time_http(url: str, requests: int, server: LocalPostgres, params: dict[str, str]) -> dict[str, Any]:
    """Wall time per request (what a client sees; on a busy machine mostly what the others do), and
    the CPU the API and PostgreSQL spent per request (what the request costs, whoever else runs)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(CITYSENSE_DATABASE_URL=url, CITYSENSE_LOG_LEVEL="WARNING", CITYSENSE_API_RATE_LIMIT_PER_S="0",
               PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "citysense", "api", "--port", str(port)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            count = 0
            for _ in range(10):
                resp = http.get("/sta/v1.1/Datastreams", params=params)
                resp.raise_for_status()
                count = resp.json()["@iot.count"]
            times = []
            api = psutil.Process(proc.pid)
            # the postmaster's pid is the first line of postmaster.pid; its children are the backends
            postgres = with_children(int((server.datadir / "postmaster.pid").read_text().split()[0]))
            cpu_before = (_cpu_s([api]), _cpu_s(postgres))
            for _ in range(requests):
                t0 = time.perf_counter()
                http.get("/sta/v1.1/Datastreams", params=params).raise_for_status()
                times.append(time.perf_counter() - t0)
            api_cpu, pg_cpu = _cpu_s([api]) - cpu_before[0], _cpu_s(postgres) - cpu_before[1]
    finally:
        proc.terminate()
        proc.wait(15)
    ordered = sorted(times)
    return {"n": requests, "count": count, "p50_ms": round(1000 * quantile(ordered, 0.5), 1),
            "p95_ms": round(1000 * quantile(ordered, 0.95), 1), "max_ms": round(1000 * ordered[-1], 1),
            "api_cpu_ms": round(1000 * api_cpu / requests, 1), "postgres_cpu_ms": round(1000 * pg_cpu / requests, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder for the server (kept for the next run)")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--top", type=int, help="the page's $top (default: the service's default of 100)")
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args()
    params = PARAMS if args.top is None else {**PARAMS, "$top": str(args.top)}
    args.data.mkdir(parents=True, exist_ok=True)
    server, reused = _server(args.data)
    try:
        url = server.create_database(DATABASE)
        migrate(url)
        if not reused:
            _seed(url, args.devices, args.hours)
        if not args.no_explain:
            asyncio.run(_explain(url, params))
        print("statements, server ms (page, expand Thing, expand Observations, $count):",
              asyncio.run(_statement_ms(url, 30, params)))
        print("HTTP:", _time_http(url, args.requests, server, params))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
