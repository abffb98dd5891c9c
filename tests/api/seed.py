"""Known rows for the API tests: two fresh air boxes, one stale, two parking sensors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from ingest.latest_readings import rebuild as rebuild_latest

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def seed_city(url: str) -> None:
    """Three hours of 1-minute pm25 and rh readings of box-a (10) and box-b (20), and parking events."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, kind, name, school, lat, lon, registered) VALUES "
            "('box-a', 'airbox', 'A', 'Da''an Elementary', 25.02, 121.54, true), "
            "('box-b', 'airbox', 'B', 'Da''an Elementary', 25.03, 121.55, true), "
            "('box-c', 'airbox', 'C', 'Other School', 25.05, 121.50, false), "
            "('park-1', 'parking', 'P1', NULL, 25.04, 121.56, true), "
            "('park-2', 'parking', 'P2', NULL, 25.04, 121.56, true)"
        )
        rows = []
        for minute in range(180):  # three hours of 1-minute readings
            t = NOW - timedelta(minutes=minute)
            for dev, base in (("box-a", 10.0), ("box-b", 20.0)):
                rows.append((t, dev, "pm25", base * 2, base, 0))
                rows.append((t, dev, "rh", 60.0, 60.0, 0))
        rows.append((NOW - timedelta(days=3), "box-c", "pm25", 99.0, 99.0, 0))  # stale: not on the map
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (time, device_id, metric, raw, value, flags) VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
            cur.execute(
                "INSERT INTO parking_spots (spot_id, device_id, zone) VALUES ('s1', 'park-1', 'ximen'), "
                "('s2', 'park-2', 'ximen')"
            )
            cur.execute(
                "INSERT INTO parking_events (time, device_id, occupied, ev) VALUES "
                "(now() - interval '5 min', 'park-1', true, 'change'), "
                "(now() - interval '1 min', 'park-1', false, 'change'), "
                "(now() - interval '2 min', 'park-2', true, 'change')"
            )
        rebuild_latest(conn)  # rows written past the batch writer: the map's latest values follow
