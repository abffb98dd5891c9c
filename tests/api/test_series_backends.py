"""/v1/series gives the same JSON whichever backend answers, and equals a computation from raw rows.

The fallback's aggregate tables have the names and columns of TimescaleDB's continuous
aggregates, so the aggregate query runs here too: the app is told it is on TimescaleDB and
must answer exactly as the raw-row query does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from ingest.aggregates import refresh_range

HOUR = timedelta(hours=1)


def _seed(url: str, first: datetime) -> None:
    rows = [
        (first + timedelta(seconds=37 * k), "sb-box", "pm25", 0.0, 7.3 + (k * 0.711) % 13.999576, 0)
        for k in range(600)  # ~6 hours of awkward floats every 37 s
    ]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO devices (device_id, kind) VALUES ('sb-box', 'airbox')")
        cur.executemany(
            "INSERT INTO readings (time, device_id, metric, raw, value, flags) VALUES (%s, %s, %s, %s, %s, %s)", rows
        )
    with psycopg.connect(url, autocommit=True) as conn:
        refresh_range(conn, None, None)


def _series(http: TestClient, backend: str, **params: Any) -> dict[str, Any]:
    http.app.state.backend = backend  # type: ignore[attr-defined]
    r = http.get("/v1/series", params={"device_id": "sb-box", "metric": "pm25", **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    body["meta"].pop("backend")
    return body


def test_both_backends_give_the_same_json_with_whole_buckets(database_url: str) -> None:
    first = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    _seed(database_url, first)
    odd_start = (first + timedelta(minutes=25)).isoformat()  # in the middle of the first hour
    odd_end = (first + timedelta(hours=4, minutes=10)).isoformat()
    with TestClient(create_app(Settings(database_url=database_url))) as http:
        for params in ({"bucket": "1h", "start": odd_start, "end": odd_end}, {"bucket": "1d"}, {"bucket": "1h"}):
            plain = _series(http, "postgresql", **params)
            aggregated = _series(http, "timescaledb", **params)
            assert plain == aggregated, params
        hourly = _series(http, "postgresql", bucket="1h", start=odd_start, end=odd_end)
    assert hourly["meta"]["start"].startswith(first.strftime("%Y-%m-%dT%H:00:00"))  # widened down to the hour
    assert [r["bucket"][:13] for r in hourly["results"]] == [
        (first + k * HOUR).strftime("%Y-%m-%dT%H") for k in range(5)
    ]  # whole first and last buckets, on both backends
    with psycopg.connect(database_url) as conn:
        raw = conn.execute(
            "SELECT round(avg(value)::numeric, 2), round(min(value)::numeric, 1), count(value) FROM readings"
            " WHERE time >= %s AND time < %s", (first, first + HOUR),
        ).fetchone()
    assert raw is not None
    head = hourly["results"][0]
    # the same numbers as SQL over the raw rows (rounding half-even vs half-up may differ by one in the last digit)
    assert abs(head["avg"] - float(raw[0])) <= 0.0101 and abs(head["min"] - float(raw[1])) <= 0.101
    assert head["count"] == raw[2]
