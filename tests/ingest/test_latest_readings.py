"""latest_readings holds the newest reading of every series, whatever writes or rewrites the readings."""

from __future__ import annotations

import time

import psycopg
import pytest

from contracts.flags import Flag
from contracts.records import ReadingRow
from ingest.latest_readings import COPY_FROM_ROWS, newest_per_series, rebuild
from tests.conftest import write_batches


def _row(device: str, metric: str, ts: float, value: float, flags: int = 0) -> ReadingRow:
    return (ts, device, metric, value, value, Flag(flags), None)  # the pipeline hands IntFlags


def _latest(url: str) -> dict[tuple[str, str], tuple[float, float | None, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            b"SELECT device_id, metric, extract(epoch FROM time)::float8, value, flags FROM latest_readings"
        ).fetchall()
    return {(d, m): (round(t, 3), v, f) for d, m, t, v, f in rows}


def test_newest_per_series_keeps_the_newest_row_of_each_device_and_metric() -> None:
    rows = [_row("a", "pm25", 3.0, 1), _row("a", "pm25", 5.0, 2), _row("a", "pm25", 4.0, 3), _row("a", "rh", 1.0, 4),
            _row("b", "pm25", 2.0, 5)]
    assert sorted(newest_per_series(rows)) == sorted([rows[1], rows[3], rows[4]])


def test_latest_moves_forward_only_late_data_and_redelivery_leave_it(database_url: str) -> None:
    now = round(time.time(), 3)
    first = [_row("lt-1", "pm25", now - 60 + i, 10.0 + i) for i in range(30)] + [_row("lt-1", "rh", now - 50, 60.0)]
    write_batches(database_url, first)
    assert _latest(database_url) == {("lt-1", "pm25"): (now - 31, 39.0, 0), ("lt-1", "rh"): (now - 50, 60.0, 0)}

    late = [_row("lt-1", "pm25", now - 3600, 99.0)]  # an hour late (a flash queue drained): not the newest
    write_batches(database_url, late, first)  # and the first batch again (a redelivery, merged)
    assert _latest(database_url)[("lt-1", "pm25")] == (now - 31, 39.0, 0)

    write_batches(database_url, [_row("lt-1", "pm25", now - 1, 7.0)])
    assert _latest(database_url)[("lt-1", "pm25")] == (now - 1, 7.0, 0)


def test_a_future_reading_never_becomes_the_latest(database_url: str) -> None:
    now = round(time.time(), 3)
    write_batches(database_url, [_row("lt-f", "pm25", now - 5, 3.0)])
    with psycopg.connect(database_url) as conn:  # a row from a clock far ahead, stored past the gateway's checks
        conn.execute(b"INSERT INTO readings (time, device_id, metric, raw, value, flags) "
                     b"VALUES (now() + interval '1 day', 'lt-f', 'pm25', 50, 50, 0)")
        rebuild(conn)
    assert _latest(database_url)[("lt-f", "pm25")] == (now - 5, 3.0, 0)


def test_an_update_of_the_newest_reading_is_followed_and_of_an_older_one_ignored(database_url: str) -> None:
    now = round(time.time(), 3)
    write_batches(database_url, [_row("lt-u", "pm25", now - 20, 20.0), _row("lt-u", "pm25", now - 10, 10.0)])
    with psycopg.connect(database_url) as conn:  # what `calibrate apply` and the series rule do
        conn.execute(b"UPDATE readings SET value = 5.5, calibration_id = NULL, flags = 4 "
                     b"WHERE device_id = 'lt-u' AND time = to_timestamp(%s)", (now - 10,))
        conn.execute(b"UPDATE readings SET value = 1.0 WHERE device_id = 'lt-u' AND time = to_timestamp(%s)",
                     (now - 20,))
    assert _latest(database_url)[("lt-u", "pm25")] == (now - 10, 5.5, 4)


def test_rebuild_fills_from_readings_written_past_the_batch_writer(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(b"INSERT INTO readings (time, device_id, metric, raw, value, flags) VALUES "
                     b"(now() - interval '2 min', 'lt-r', 'pm25', 1, 1, 0), "
                     b"(now() - interval '1 min', 'lt-r', 'pm25', 2, 2, 0)")
        assert ("lt-r", "pm25") not in _latest(database_url)
        assert rebuild(conn) == 1
        assert rebuild(conn) == 0  # nothing left to change
    assert _latest(database_url)[("lt-r", "pm25")][1] == 2.0


@pytest.mark.parametrize("devices", [3, COPY_FROM_ROWS], ids=["rows as arrays", "rows copied"])
def test_both_row_sources_move_forward_insert_new_series_and_skip_future_rows(database_url: str, devices: int) -> None:
    """The small-batch form (array parameters) and the large-batch form (COPY) apply one rule."""
    now = round(time.time(), 3)
    ids = [f"lt-s{devices}-{i}" for i in range(devices)]
    write_batches(database_url, [_row(d, "pm25", now - 100, 1.0) for d in ids])
    write_batches(database_url, [_row(d, "pm25", now - 200 if i == 0 else now - 50, 2.0) for i, d in enumerate(ids)]
           + [_row(ids[1], "t", now - 40, -3.5), _row(ids[2], "rh", now + 3600, 50.0)])
    latest = _latest(database_url)
    assert latest[(ids[0], "pm25")] == (now - 100, 1.0, 0)  # late: left as it was
    assert {latest[(d, "pm25")] for d in ids[1:]} == {(now - 50, 2.0, 0)}  # moved forward
    assert latest[(ids[1], "t")] == (now - 40, -3.5, 0)  # a new series
    assert (ids[2], "rh") not in latest  # from the future: never the latest
