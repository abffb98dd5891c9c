"""Migrations: ordered, recorded, idempotent, and the fallback is the one applied here."""

from __future__ import annotations

import logging

import psycopg
import pytest

from ingest.migrate import migrate, plan


def test_plan_picks_one_variant_per_backend() -> None:
    ts = plan("timescaledb")
    pg = plan("postgresql")
    assert [m.version for m in ts] == [m.version for m in pg]
    ts_sql = dict((m.version, m.sql) for m in ts)["0002_timeseries"]
    pg_sql = dict((m.version, m.sql) for m in pg)["0002_timeseries"]
    assert "create_hypertable('readings'" in ts_sql and "timescaledb.continuous" in ts_sql
    assert "add_retention_policy('readings'" in ts_sql and "add_compression_policy('readings'" in ts_sql
    assert "timescaledb" not in pg_sql.replace("TimescaleDB", "")


def test_second_migration_changes_nothing(database_url: str, backend: str) -> None:
    assert migrate(database_url) == (backend, [])  # the template was migrated already
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in plan(backend)]  # type: ignore[arg-type]
        tables = ("devices", "readings", "parking_events", "rejected_messages", "calibrations", "readings_1h",
                  "series_windows")
        for table in tables:
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (table,)


def test_fresh_database_migrates_from_scratch_and_logs_a_fallback(
    pg_server: object, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_server.create_database("fresh_migrate_test")  # type: ignore[attr-defined]
    try:
        with caplog.at_level(logging.WARNING, logger="ingest.backend"):
            got, applied = migrate(url)
        assert got == backend
        assert applied == [m.version for m in plan(backend)]  # type: ignore[arg-type]
        if backend == "postgresql":
            assert "fallback=postgresql" in caplog.text
        assert migrate(url)[1] == []
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:  # type: ignore[attr-defined]
            conn.execute("DROP DATABASE fresh_migrate_test WITH (FORCE)")


def test_fallback_time_indexes_ascend_and_serve_the_newest_reading_first(database_url: str, backend: str) -> None:
    """Migration 0014 (plain PostgreSQL): ascending time indexes, read backwards by the health
    probe's max(time) and a newest-first scan, so no query lost the index it had."""
    if backend != "postgresql":
        pytest.skip("TimescaleDB keeps create_hypertable's (time DESC) chunk indexes")
    with psycopg.connect(database_url) as conn:
        for table in ("readings", "parking_events"):
            (definition,) = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (f"{table}_time_idx",)
            ).fetchone() or ("",)
            assert definition.endswith(f"ON public.{table} USING btree (\"time\")"), definition
        conn.execute("SET enable_seqscan = off")
        for query in (
            "SELECT max(time) FROM readings WHERE time > now() - interval '1 day'",
            "SELECT time FROM readings ORDER BY time DESC LIMIT 10",
            "SELECT time FROM parking_events ORDER BY time DESC LIMIT 10",
        ):
            plan_text = "\n".join(r[0] for r in conn.execute(("EXPLAIN " + query).encode()))
            assert "Index Only Scan Backward using" in plan_text and "_time_idx" in plan_text, plan_text
