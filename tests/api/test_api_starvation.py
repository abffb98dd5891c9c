"""The open API cannot be starved: slow exports, a locked table and a database restart against a real server.

A real `citysense api` (uvicorn) process and raw sockets, because the attack is slow TCP
readers: each export client shrinks its receive buffer and reads 1 kB every 50 ms (20 kB/s,
like `curl --limit-rate 20k`), so the server has to hold the export open while it waits.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port
from ingest.migrate import migrate
from tests.api.conftest import StartApi
from tests.api.seed import NOW, seed_city

SLOW_CLIENTS = 12
HISTORY_MINUTES = 4  # one pm10 reading of box-a every 4 minutes for a year: ~131k rows, ~6 MB of CSV


def _seed_year_of_pm10(url: str) -> int:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO readings (time, device_id, metric, raw, value, flags) "
            "SELECT t, 'box-a', 'pm10', 30, 30, 0 FROM generate_series(%s::timestamptz, %s::timestamptz, %s) AS t",
            [NOW - timedelta(days=365), NOW - timedelta(hours=1), timedelta(minutes=HISTORY_MINUTES)],
        )
        row = conn.execute("SELECT count(*) FROM readings WHERE metric = 'pm10'").fetchone()
        return int(row[0]) if row else 0


@dataclass
class SlowExport:
    """One raw-socket client: asks for a year of CSV, reads it slowly until told to hurry, then to the end."""

    port: int
    path: str
    hurry: threading.Event
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    def run(self) -> None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(60)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = bytearray()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                chunk = sock.recv(1024 if not self.hurry.is_set() else 1 << 20)
                if not chunk:
                    break
                data += chunk
                if not self.hurry.is_set():
                    time.sleep(0.05)
            sock.close()
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            self.body = body
        except OSError as exc:
            self.error = repr(exc)


def _dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body."""
    parts, at = [], 0
    while at < len(body):
        eol = body.index(b"\r\n", at)
        size = int(body[at:eol].split(b";")[0], 16)
        if size == 0:
            break
        parts.append(body[eol + 2:eol + 2 + size])
        at = eol + 2 + size + 2
    return b"".join(parts)


@pytest.mark.slow
def test_slow_exports_cannot_starve_health_or_the_map(database_url: str, start_api: StartApi) -> None:
    seed_city(database_url)
    history = _seed_year_of_pm10(database_url)
    api = start_api(database_url, api_max_concurrent_exports="4", api_latest_cache_s="0")
    start = (NOW - timedelta(days=365)).isoformat().replace("+00:00", "Z")
    path = f"/v1/readings?device_id=box-a&metric=pm10&start={start}&format=csv"
    hurry = threading.Event()
    clients = [SlowExport(api.port, path, hurry) for _ in range(SLOW_CLIENTS)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    time.sleep(1.0)  # every client has asked; the ones with a slot are being fed slowly

    timings: dict[str, list[float]] = {"/v1/health": [], "/v1/latest": [], "/v1/devices": []}
    with httpx.Client(base_url=api.base_url, timeout=10) as http:
        attack_end = time.monotonic() + 5.0
        while time.monotonic() < attack_end:
            for probe, seconds in timings.items():
                t0 = time.perf_counter()
                r = http.get(probe)
                seconds.append(time.perf_counter() - t0)
                assert r.status_code == 200, (probe, r.status_code, r.text)
            time.sleep(0.2)
        during = http.get("/v1/health").json()
        hurry.set()
        for t in threads:
            t.join(120)
        after = http.get(path.replace("format=csv", "format=csv&end=" + (NOW - timedelta(days=300)).isoformat()
                                      .replace("+00:00", "Z")))

    worst = {probe: round(max(s), 3) for probe, s in timings.items()}
    print(f"slow-export attack: worst latency {worst}, probes {len(timings['/v1/health'])} each, pool {during['pool']}")
    assert all(w < 1.0 for w in worst.values()), worst
    assert not [c.error for c in clients if c.error]
    served = [c for c in clients if c.status == 200]
    refused = [c for c in clients if c.status == 429]
    assert len(served) + len(refused) == SLOW_CLIENTS, [c.status for c in clients]
    assert len(served) == 4 and all(c.headers.get("retry-after") for c in refused)
    for c in served:  # each admitted client got the whole year, every row once
        lines = _dechunk(c.body).decode().splitlines()
        assert lines[0] == "time,metric,value,raw,flags,calibration_id" and len(lines) == 1 + history
    assert during["pool"]["waiting"] == 0
    assert after.status_code == 200  # the slots were given back


@pytest.mark.slow
def test_health_answers_within_a_second_while_readings_are_locked(database_url: str, start_api: StartApi) -> None:
    seed_city(database_url)
    api = start_api(database_url)
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
        t0 = time.perf_counter()
        r = httpx.get(f"{api.base_url}/v1/health", timeout=10)
        elapsed = time.perf_counter() - t0
        locker.rollback()
    assert elapsed < 1.0 and r.status_code == 503, (elapsed, r.text)
    assert r.json()["status"] == "degraded" and "lock" in r.json()["database"]
    assert httpx.get(f"{api.base_url}/v1/health", timeout=10).json()["status"] == "ok"


@pytest.mark.slow
def test_a_slow_query_is_cancelled_by_the_statement_timeout_with_a_503(database_url: str, start_api: StartApi) -> None:
    seed_city(database_url)
    api = start_api(database_url, api_statement_timeout_ms="300")
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE")
        t0 = time.perf_counter()
        r = httpx.get(f"{api.base_url}/v1/devices", timeout=10)
        elapsed = time.perf_counter() - t0
        locker.rollback()
    assert r.status_code == 503 and elapsed < 2.0, (r.status_code, elapsed)
    assert "300 ms" in r.json()["detail"] and r.headers["retry-after"]


@pytest.mark.slow
def test_a_postgresql_restart_costs_no_server_error(start_api: StartApi) -> None:
    """Its own PostgreSQL server (the session's is shared), restarted twice.

    First a quick restart between requests: every pooled connection is dead and the pool does
    not know it, so only the check before use (psycopg_pool `check=`) stands between the next
    requests and a 500; each of them must be a 200. Then a restart with requests while the
    server is down: those answer 503 with Retry-After, never 500, and the API recovers alone.
    """
    # outside pytest's tmp_path, which a concurrent pytest run may rotate away (as tests/conftest.py does)
    server = LocalPostgres(Path(f"/tmp/citysense-test-pg-restart-{os.getpid()}") / "data", free_port(), fsync=False)
    server.start()
    try:
        url = server.create_database("restart")
        migrate(url)
        seed_city(url)
        api = start_api(url, api_latest_cache_s="0", api_pool_timeout_s="2")
        probes = ("/v1/devices", "/v1/latest", "/v1/readings?device_id=box-a", "/v1/health")
        with httpx.Client(base_url=api.base_url, timeout=20) as http:

            def round_of_requests() -> list[httpx.Response]:
                return [http.get(probe) for probe in probes]

            warm = [r.status_code for _ in range(5) for r in round_of_requests()]  # the pool holds connections
            server.stop("fast")
            server.start()
            after_quick_restart = [r.status_code for _ in range(3) for r in round_of_requests()]
            server.stop("fast")
            while_down = [r for _ in range(2) for r in round_of_requests()]
            server.start()
            recovery = [r.status_code for _ in range(15) for r in round_of_requests()]
    finally:
        server.remove()
    print(f"postgres restart: after a quick restart {after_quick_restart}; while down "
          f"{[r.status_code for r in while_down]}; recovery {recovery}")
    assert set(warm) == {200} and set(after_quick_restart) == {200}, after_quick_restart
    assert {r.status_code for r in while_down} == {503} and all(r.headers.get("retry-after") for r in while_down)
    assert set(recovery) <= {200, 503} and 200 in recovery
    first_ok = recovery.index(200)
    assert set(recovery[first_ok + len(probes):]) == {200}, recovery  # once back, it stays back
