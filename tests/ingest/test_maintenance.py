"""`db maintain` aggregates every reading the gateway accepts and reports what it changed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib import resources

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.limits import AGGREGATE_REFRESH_DAYS, MAX_READING_AGE_S
from contracts.settings import Settings
from ingest.aggregates import refresh_range
from ingest.maintenance import run_maintenance

HOUR = timedelta(hours=1)


def test_refresh_window_covers_the_accepted_lateness_in_code_and_in_the_timescaledb_policies() -> None:
    assert AGGREGATE_REFRESH_DAYS * 86400 >= MAX_READING_AGE_S + 86400  # a day of margin at least
    sql = resources.files("ingest.migrations").joinpath("0005_late_data_windows.timescale.sql").read_text()
    windows = re.findall(r"(?:start_offset|compress_after) => INTERVAL '(\d+) days'", sql)
    assert windows == [str(AGGREGATE_REFRESH_DAYS)] * 3, windows


def _insert_hours(url: str, first: datetime, hours: int, device: str = "late-box") -> None:
    rows = [
        (first + timedelta(minutes=m), device, "pm25", 10.0 + m % 7, 10.0 + m % 7 + (m % 3) * 0.1, 0)
        for m in range(hours * 60)
    ]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'airbox') ON CONFLICT DO NOTHING", (device,))
        cur.executemany(
            "INSERT INTO readings (time, device_id, metric, raw, value, flags) VALUES (%s, %s, %s, %s, %s, %s)", rows
        )


def _from_raw(url: str, start: datetime, end: datetime) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT date_bin('1 hour', time, TIMESTAMPTZ '2000-01-01'), avg(value), min(value), max(value),"
            " count(value) FROM readings WHERE device_id = 'late-box' AND time >= %s AND time < %s"
            " GROUP BY 1 ORDER BY 1", (start, end),
        ).fetchall()


def _aggregated(url: str, start: datetime, end: datetime) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT bucket, avg, min, max, count FROM readings_1h WHERE device_id = 'late-box'"
            " AND bucket >= %s AND bucket < %s ORDER BY bucket", (start, end),
        ).fetchall()


def test_readings_13_days_late_reach_the_aggregates_and_the_series(database_url: str) -> None:
    first = (datetime.now(UTC) - timedelta(days=13)).replace(minute=0, second=0, microsecond=0)
    _insert_hours(database_url, first, hours=3)
    lines = list(run_maintenance(database_url, retention_days=365))
    assert "refreshed" in lines[0]
    raw = _from_raw(database_url, first, first + 3 * HOUR)
    assert len(raw) == 3 and all(r[4] == 60 for r in raw)
    assert _aggregated(database_url, first, first + 3 * HOUR) == raw
    with TestClient(create_app(Settings(database_url=database_url))) as http:
        body = http.get("/v1/series", params={
            "device_id": "late-box", "metric": "pm25", "bucket": "1h",
            "start": first.isoformat(), "end": (first + 3 * HOUR).isoformat(),
        }).json()
    assert [r["count"] for r in body["results"]] == [60, 60, 60]
    # the series rounds avg to one digit past pm25's registry precision
    assert [r["avg"] for r in body["results"]] == [round(float(r[1]), 2) for r in raw]  # type: ignore[arg-type]


def test_a_second_maintenance_run_reports_nothing_changed(database_url: str) -> None:
    _insert_hours(database_url, datetime.now(UTC) - timedelta(days=400), hours=1)
    first = list(run_maintenance(database_url, retention_days=365))
    assert any(re.search(r"(deleted|dropped): [1-9]", line) for line in first), first
    second = list(run_maintenance(database_url, retention_days=365))
    assert not any(re.search(r"(deleted|dropped|compressed now): [1-9]", line) for line in second), second


def test_retention_drops_raw_readings_and_keeps_their_aggregates(database_url: str) -> None:
    first = (datetime.now(UTC) - timedelta(days=25)).replace(minute=0, second=0, microsecond=0)
    _insert_hours(database_url, first, hours=2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        refresh_range(conn, None, None)  # aggregated back then, as the first migration's full refresh does
    aggregated = _aggregated(database_url, first, first + 2 * HOUR)
    assert len(aggregated) == 2
    for _run in range(2):  # the second run refreshes again and must still keep them
        lines = list(run_maintenance(database_url, retention_days=20))
        assert _from_raw(database_url, first, first + 2 * HOUR) == [], lines
        assert _aggregated(database_url, first, first + 2 * HOUR) == aggregated


def test_a_retention_inside_the_refresh_window_is_refused(database_url: str) -> None:
    """A refresh over buckets whose raw rows are gone would empty them, on both backends."""
    with pytest.raises(ValueError, match="retention"):
        list(run_maintenance(database_url, retention_days=AGGREGATE_REFRESH_DAYS))


def test_dead_letters_past_their_retention_are_deleted(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO rejected_messages (received_at, topic, payload, payload_bytes, reason, digest) VALUES "
            "(now() - interval '40 days', 't', 'old', 3, 'r', 'd1'),"
            " (now() - interval '1 day', 't', 'new', 3, 'r', 'd2')"
        )
    lines = list(run_maintenance(database_url, retention_days=365, dead_letter_days=30))
    assert "dead letters older than 30 days deleted: 1" in lines
    assert _dead_letters(database_url) == [b"new"]


def _dead_letters(url: str) -> list[bytes]:
    with psycopg.connect(url) as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT payload FROM rejected_messages")]
