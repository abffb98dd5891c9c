"""Every SQL panel and variable of every provisioned dashboard runs against the real schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devtools.local_postgres import LocalPostgres
from tests.api.seed import seed_city
from tests.ingest.test_database_roles import apply_roles

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "grafana" / "dashboards").glob("*.json"))
SQL_DATASOURCE = "grafana-postgresql-datasource"


def _expand_macros(sql: str) -> str:
    """The Grafana PostgreSQL macros and variables the dashboards use, as Grafana expands them."""
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", r"\1 BETWEEN now() - interval '7 days' AND now()", sql)
    sql = sql.replace("$__timeFrom()", "(now() - interval '7 days')").replace("$__timeTo()", "now()")
    sql = sql.replace("$school", "Da''an Elementary")
    assert "$" not in sql, f"unexpanded Grafana macro or variable in: {sql}"
    return sql


def _sql_queries() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        board: dict[str, Any] = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") == SQL_DATASOURCE:
                    found.append((f"{path.stem}: {panel['title']}", target["rawSql"]))
        for var in board.get("templating", {}).get("list", []):
            if var.get("datasource", {}).get("type") == SQL_DATASOURCE:
                found.append((f"{path.stem}: variable {var['name']}", var["query"]))
    return found


def test_dashboards_are_valid_provisioning_json() -> None:
    assert len(DASHBOARDS) == 4
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    assert len(_sql_queries()) >= 12


@pytest.mark.parametrize(("where", "sql"), _sql_queries(), ids=[w for w, _ in _sql_queries()])
def test_panel_query_runs_against_real_schema(database_url: str, where: str, sql: str) -> None:
    seed_city(database_url)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(_expand_macros(sql).encode()).fetchall()
    assert isinstance(rows, list), where


def test_every_panel_query_runs_as_the_reader_role(pg_server: LocalPostgres, database_url: str) -> None:
    """Grafana's data source logs in as deploy/postgres/roles.sql's reader: SELECT only, no token hashes."""
    seed_city(database_url)
    apply_roles(database_url)
    reader_url = database_url.replace(f"//{pg_server.superuser}@", "//citysense_reader@")
    assert "//citysense_reader@" in reader_url
    refused = []
    with psycopg.connect(reader_url, autocommit=True) as conn:
        for where, sql in _sql_queries():
            try:
                conn.execute(_expand_macros(sql).encode()).fetchall()
            except psycopg.errors.InsufficientPrivilege as exc:
                refused.append(f"{where}: {exc}")
    assert refused == []
