"""Every dashboard marks alerts on its graphs: a Grafana annotation query on the `alerts` table
(one row per alert: rule, subject, state, started_at, ended_at) that shows each alert
overlapping the time range as a region, scoped to the dashboard's school or parking sensors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devtools.local_postgres import LocalPostgres
from tests.api.seed import NOW, seed_city
from tests.ingest.test_database_roles import apply_roles

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "grafana" / "dashboards").glob("*.json"))
SQL_DATASOURCE = "grafana-postgresql-datasource"
SCHOOL = "Da'an Elementary"
WINDOW = (NOW - timedelta(hours=6), NOW)


def annotation_sql(path: Path) -> str:
    board: dict[str, Any] = json.loads(path.read_text())
    queries = [a["target"]["rawSql"] for a in board["annotations"]["list"]
               if a.get("datasource", {}).get("type") == SQL_DATASOURCE]
    assert len(queries) == 1, f"{path.stem}: one alert annotation query"
    return str(queries[0])


def expand(sql: str) -> str:
    """Grafana's time-range macros over WINDOW and the school variable, as Grafana expands them."""
    sql = sql.replace("$__timeFrom()", f"'{WINDOW[0].isoformat()}'::timestamptz")
    sql = sql.replace("$__timeTo()", f"'{WINDOW[1].isoformat()}'::timestamptz")
    sql = sql.replace("$school", SCHOOL.replace("'", "''"))
    assert "$" not in sql, f"unexpanded Grafana macro or variable in: {sql}"
    return sql


def seed_alerts(url: str) -> None:
    rows: list[tuple[str, str, str, datetime, datetime | None]] = [
        ("school_aqi", SCHOOL, "open", NOW - timedelta(hours=1), None),
        ("device_silent", "box-a", "resolved", NOW - timedelta(hours=8), NOW - timedelta(hours=5)),
        ("device_silent", "park-1", "acknowledged", NOW - timedelta(hours=2), None),
        ("hotspot", "box-c", "resolved", NOW - timedelta(hours=4), NOW - timedelta(hours=3)),
        ("device_silent", "box-b", "resolved", NOW - timedelta(days=2), NOW - timedelta(days=1)),  # before WINDOW
    ]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            b"INSERT INTO alerts (rule, subject, state, started_at, ended_at, rules_version) "
            b"VALUES (%s, %s, %s, %s, %s, 'test')", rows
        )


ALL_IN_WINDOW = ["device_silent · box-a (resolved)", "hotspot · box-c (resolved)",
                 "device_silent · park-1 (acknowledged)", f"school_aqi · {SCHOOL} (open)"]
EXPECTED = {  # dashboard -> the alerts it marks over WINDOW, in start order
    "school": ["device_silent · box-a (resolved)", f"school_aqi · {SCHOOL} (open)"],
    "parking": ["device_silent · park-1 (acknowledged)"],
    "live-pm25-map": ALL_IN_WINDOW,
    "pipeline-health": ALL_IN_WINDOW,
}


def test_every_dashboard_has_an_alert_annotation() -> None:
    assert {p.stem for p in DASHBOARDS} == set(EXPECTED)
    for path in DASHBOARDS:
        assert "FROM alerts" in annotation_sql(path)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_the_annotation_marks_the_alerts_overlapping_the_range_as_regions(
    pg_server: LocalPostgres, database_url: str, path: Path
) -> None:
    seed_city(database_url)
    seed_alerts(database_url)
    apply_roles(database_url)  # Grafana logs in as the reader
    reader_url = database_url.replace(f"//{pg_server.superuser}@", "//citysense_reader@")
    with psycopg.connect(reader_url) as conn:
        rows = conn.execute(expand(annotation_sql(path)).encode()).fetchall()
    assert [text for _, _, text, _ in rows] == EXPECTED[path.stem]
    for start, end, text, tags in rows:
        assert start < end <= datetime.now(UTC), text  # an open alert's region runs to now
        assert tags.split(",")[0] == text.split(" · ")[0], tags
