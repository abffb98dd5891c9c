"""Known rows for the SensorThings and LASS tests, in the seeding style of tests/api/test_api.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from ingest.latest_readings import rebuild as rebuild_latest

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
MINUTES = 120


def seed(url: str) -> None:
    """Three boxes (two in 臺北市, one in 新北市), a parking sensor; two hours of 1-minute
    pm25/rh/t readings on box-a and box-b, one stale flagged reading on box-c."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO calibrations (id, device_id, sensor_type, metric, model) VALUES "
            "(1, NULL, 'pms5003', 'pm25', '{\"type\": \"linear\", \"a\": 0.5, \"b\": 0.0}')"
        )
        conn.execute(
            "INSERT INTO devices (device_id, kind, name, site, school, lat, lon, sensor_type, registered, city, "
            "district, authority) VALUES "
            "('box-a', 'airbox', 'A', 'Roof', 'Da''an Elementary', 25.02, 121.54, 'pms5003', true, '臺北市', "
            "'大安區', 'Taipei DoE'), "
            "('box-b', 'airbox', 'B', NULL, 'Da''an Elementary', 25.03, 121.55, 'pms5003', true, '臺北市', "
            "'大安區', NULL), "
            "('box-c', 'lass', NULL, NULL, NULL, 25.01, 121.46, NULL, false, '新北市', '板橋區', NULL), "
            "('park-1', 'parking', 'P1', NULL, NULL, NULL, NULL, NULL, true, NULL, NULL, NULL)"
        )
        rows: list[tuple[datetime, str, str, float, float | None, int, int | None]] = []
        for minute in range(MINUTES):
            t = NOW - timedelta(minutes=minute)
            for dev, base in (("box-a", 10.0), ("box-b", 20.0)):
                rows.append((t, dev, "pm25", base * 2 + minute % 3, base + (minute % 3) / 2, 0, 1))
                rows.append((t, dev, "rh", 60.0, 60.0, 0, None))
                rows.append((t, dev, "t", 25.5, 25.5, 0, None))
        rows.append((NOW - timedelta(days=3), "box-c", "pm25", -1.0, None, 2, None))  # a sentinel
        rows.append((NOW - timedelta(minutes=5), "park-1", "occupied", 1.0, 1.0, 0, None))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (time, device_id, metric, raw, value, flags, calibration_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        rebuild_latest(conn)  # rows written past the batch writer: the latest values follow
