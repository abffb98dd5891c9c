"""`citysense device list`: tab-separated, a header row first, for a spreadsheet or `cut`."""

from __future__ import annotations

import psycopg

from tests.citysense.test_one_line_errors import run_cli


def test_device_list_starts_with_a_header_row(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO devices (device_id, kind, school, lat, lon, registered) "
                     "VALUES ('box-01', 'airbox', 'Da''an Elementary', 25.02, 121.54, true)")
    proc = run_cli("device", "list", database_url=database_url)
    assert proc.returncode == 0, proc.stderr
    header, *rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert header == ["device_id", "kind", "registered", "school_or_site", "lat", "lon"]
    assert rows == [["box-01", "airbox", "True", "Da'an Elementary", "25.02", "121.54"]]
