"""Coverage counts against each device's own cadence, not a fixed 60 s."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings

HOUR_START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def seed(url: str) -> None:
    """Two full hours then one half-empty hour: box-5min every 300 s, box-10s every 10 s."""
    rows = []
    for device, step in (("box-5min", 300), ("box-10s", 10)):
        t = HOUR_START
        while t < HOUR_START + timedelta(hours=3):
            half_empty = t >= HOUR_START + timedelta(hours=2, minutes=30)
            if not half_empty:
                rows.append((t, device, "pm25", 10.0, 10.0, 0))
            t += timedelta(seconds=step)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO devices (device_id, kind, registered) VALUES ('box-5min', 'airbox', true), "
                     "('box-10s', 'airbox', true)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO readings (time, device_id, metric, raw, value, flags) "
                            "VALUES (%s, %s, %s, %s, %s, %s)", rows)


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    seed(database_url)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def _coverage(http: TestClient, device: str, **params: object) -> tuple[dict[str, object], list[float], set[int]]:
    body = http.get("/v1/series", params={"device_id": device, "bucket": "1h", "start": HOUR_START.isoformat(),
                                          "end": (HOUR_START + timedelta(hours=3)).isoformat(), **params}).json()
    return body["meta"], [r["coverage"] for r in body["results"]], {r["expected"] for r in body["results"]}


@pytest.mark.parametrize(("device", "interval", "expected"), [("box-5min", 300, 12), ("box-10s", 10, 360)])
def test_coverage_counts_against_the_devices_observed_cadence(
    http: TestClient, device: str, interval: int, expected: int
) -> None:
    meta, coverage, expected_per_hour = _coverage(http, device)
    assert meta["interval_s"] == interval and meta["interval_source"] == "observed"
    assert coverage == [1.0, 1.0, 0.5] and expected_per_hour == {expected}


def test_an_interval_given_in_the_request_wins(http: TestClient) -> None:
    meta, coverage, _ = _coverage(http, "box-5min", interval_s=150)
    assert meta["interval_source"] == "request" and coverage == [0.5, 0.5, 0.25]
