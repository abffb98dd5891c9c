"""Model versions and re-calibration against a real PostgreSQL (the shared `database_url` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from calibration.engine import ModelHistory
from ingest.calibration_store import (
    count_rows,
    ensure_default_calibration,
    get_device,
    hourly_series,
    insert_calibration,
    list_calibrations,
    model_versions,
    recalibrate,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
HOURS = 72


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url) as connection:
        yield connection


def seed(conn: psycopg.Connection[Any], device: str = "tp-school-0042", sensor_type: str = "pms5003") -> None:
    """A device with 3 days of pm25 (raw = 10 + hour of day) and rh, every 10 minutes."""
    conn.execute(
        "INSERT INTO devices (device_id, kind, sensor_type, lat, lon) VALUES (%s, 'airbox', %s, 25.01, 121.46)",
        (device, sensor_type),
    )
    rows = []
    for step in range(HOURS * 6):
        at = T0 + timedelta(minutes=10 * step)
        raw = 10.0 + at.hour
        rows.append((at, device, "pm25", raw, raw, 0, None))
        rows.append((at, device, "rh", 60.0, 60.0, 0, None))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (time, device_id, metric, raw, value, flags, calibration_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    conn.commit()


def pm25_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT time, raw, value, calibration_id FROM readings WHERE metric = 'pm25' ORDER BY time"
    ).fetchall()


def test_recalibration_changes_value_keeps_raw_and_is_idempotent(conn: psycopg.Connection[Any]) -> None:
    seed(conn)
    before = pm25_rows(conn)
    cid = insert_calibration(
        conn, metric="pm25", model={"type": "linear", "a": 0.5, "b": 1.0}, device_id="tp-school-0042", valid_from=T0
    )
    seen: list[int] = []
    report = recalibrate(conn, "tp-school-0042", T0, batch_size=100, progress=seen.append)
    after = pm25_rows(conn)
    assert report.rows_seen == len(before) == HOURS * 6 and sum(seen) == report.rows_seen
    assert report.rows_changed == len(before)
    assert report.calibration_ids == (cid,)
    assert [r[1] for r in after] == [r[1] for r in before], "raw is never touched"
    assert all(r[2] == pytest.approx(0.5 * r[1] + 1.0) for r in after)
    assert {r[3] for r in after} == {cid}
    again = recalibrate(conn, "tp-school-0042", T0, batch_size=100)
    assert again.rows_seen == report.rows_seen and again.rows_changed == 0
    assert pm25_rows(conn) == after
    rh = conn.execute("SELECT DISTINCT value FROM readings WHERE metric = 'rh'").fetchall()
    assert rh == [(60.0,)], "other metrics are left alone"


def test_versions_split_history_and_since_limits_the_range(conn: psycopg.Connection[Any]) -> None:
    seed(conn)
    first = insert_calibration(
        conn, metric="pm25", model={"type": "linear", "a": 1.0, "b": 5.0}, device_id="tp-school-0042", valid_from=T0
    )
    switch = T0 + timedelta(days=1)
    second = insert_calibration(
        conn, metric="pm25", model={"type": "linear", "a": 2.0, "b": 0.0}, device_id="tp-school-0042", valid_from=switch
    )
    records = list_calibrations(conn, "tp-school-0042")
    assert records[0].valid_to == switch, "the older version is closed where the new one starts"
    report = recalibrate(conn, "tp-school-0042", T0)
    assert report.calibration_ids == (first, second)
    rows = pm25_rows(conn)
    for at, raw, value, cid in rows:
        expected = (raw + 5.0, first) if at < switch else (2.0 * raw, second)
        assert (value, cid) == (pytest.approx(expected[0]), expected[1])
    later = T0 + timedelta(days=2)
    insert_calibration(conn, metric="pm25", model={"type": "identity"}, device_id="tp-school-0042", valid_from=later)
    assert count_rows(conn, "tp-school-0042", "pm25", later, None) == 24 * 6
    partial = recalibrate(conn, "tp-school-0042", later)
    assert partial.rows_seen == 24 * 6 and partial.rows_changed == 24 * 6
    untouched = [r for r in pm25_rows(conn) if r[0] < later]
    assert untouched == [r for r in rows if r[0] < later]


def test_device_without_model_gets_sensor_type_default_with_an_id(conn: psycopg.Connection[Any]) -> None:
    seed(conn)
    report = recalibrate(conn, "tp-school-0042", T0)
    defaults = [r for r in list_calibrations(conn) if r.device_id is None]
    assert len(defaults) == 1 and defaults[0].model == {"type": "epa_pms5003_2021", "input": "atm"}
    assert report.calibration_ids == (defaults[0].id,)
    _, raw, value, cid = pm25_rows(conn)[0]
    assert cid == defaults[0].id
    assert value == pytest.approx(0.524 * raw - 0.0862 * 60.0 + 5.75)
    assert ensure_default_calibration(conn, "pms5003", "pm25") == defaults[0].id, "not inserted twice"


def test_unknown_sensor_type_falls_back_to_identity(conn: psycopg.Connection[Any]) -> None:
    seed(conn, device="lass-1", sensor_type="mystery")
    conn.execute("UPDATE readings SET value = NULL")
    conn.commit()
    report = recalibrate(conn, "lass-1", T0)
    assert report.calibration_ids == ()
    assert all(r[2] == r[1] and r[3] is None for r in pm25_rows(conn))


def test_hourly_series_and_the_stored_version_valid_at_a_time(conn: psycopg.Connection[Any]) -> None:
    seed(conn)
    series = hourly_series(conn, "tp-school-0042", T0, T0 + timedelta(days=1))
    assert len(series) == 24
    assert series.times[0] == np.datetime64("2025-03-01T00:00:00")
    assert series.pm25[5] == 15.0 and series.rh is not None and series.rh[5] == 60.0
    cid = insert_calibration(
        conn, metric="pm25", model={"type": "linear", "a": 1.0, "b": 0.0}, device_id="tp-school-0042", valid_from=T0
    )
    device = get_device(conn, "tp-school-0042")
    history = ModelHistory(model_versions(list_calibrations(conn, device.device_id)))
    chosen = history.choose("pm25", (T0 + timedelta(hours=1)).timestamp())
    assert chosen is not None and chosen[0] == cid
    assert history.choose("pm25", (T0 - timedelta(hours=1)).timestamp()) is None


def test_bad_model_is_refused_before_storing(conn: psycopg.Connection[Any]) -> None:
    seed(conn)
    with pytest.raises(ValueError, match="needs 'b'"):
        insert_calibration(conn, metric="pm25", model={"type": "linear", "a": 1.0}, device_id="tp-school-0042")
    assert list_calibrations(conn) == []
