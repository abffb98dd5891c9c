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


def test_second_migration_changes_nothing_and_fallback_is_logged(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ingest.migrate"):
        backend, applied = migrate(database_url)
    assert backend == "postgresql" and applied == []  # the template was migrated already
    assert "fallback=postgresql" in caplog.text
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == ["0001_core", "0002_timeseries", "0003_device_notify"]
        for table in ("devices", "readings", "parking_events", "rejected_messages", "calibrations", "readings_1h"):
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (table,)


def test_fresh_database_migrates_from_scratch(pg_server: object) -> None:
    url = pg_server.create_database("fresh_migrate_test")  # type: ignore[attr-defined]
    _backend, applied = migrate(url)
    assert applied == ["0001_core", "0002_timeseries", "0003_device_notify"]
    assert migrate(url)[1] == []
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:  # type: ignore[attr-defined]
        conn.execute("DROP DATABASE fresh_migrate_test WITH (FORCE)")
