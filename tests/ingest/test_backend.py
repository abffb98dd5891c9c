"""The backend is decided before any CREATE EXTENSION, recorded once, and never changed half-way."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools.local_postgres import LocalPostgres
from ingest.backend import (
    PRELOAD_HINT,
    BackendError,
    ServerSupport,
    choose_backend,
    create_extension,
    current_backend,
    server_support,
)
from ingest.migrate import migrate

NOTHING = ServerSupport(available=False, preloaded=False, created=False)
NOT_PRELOADED = ServerSupport(available=True, preloaded=False, created=False)
READY = ServerSupport(available=True, preloaded=True, created=False)
CREATED = ServerSupport(available=True, preloaded=True, created=True)


def test_a_first_migration_takes_timescaledb_only_when_installed_and_preloaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert choose_backend(None, READY, require_timescaledb=False) == "timescaledb"
    with caplog.at_level(logging.WARNING, logger="ingest.backend"):
        assert choose_backend(None, NOT_PRELOADED, require_timescaledb=False) == "postgresql"
    assert "installed but not preloaded" in caplog.text and PRELOAD_HINT in caplog.text
    assert choose_backend(None, NOTHING, require_timescaledb=False) == "postgresql"


def test_requiring_timescaledb_refuses_the_fallback_with_the_fix() -> None:
    with pytest.raises(BackendError, match="shared_preload_libraries"):
        choose_backend(None, NOT_PRELOADED, require_timescaledb=True)
    with pytest.raises(BackendError, match="not installed"):
        choose_backend(None, NOTHING, require_timescaledb=True)


def test_a_recorded_backend_is_kept_whatever_the_server_offers_later(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ingest.backend"):
        assert choose_backend("postgresql", CREATED, require_timescaledb=False) == "postgresql"
    assert "stays on plain PostgreSQL" in caplog.text
    with pytest.raises(BackendError, match="cannot change backend in place"):
        choose_backend("postgresql", CREATED, require_timescaledb=True)
    with pytest.raises(BackendError, match="shared_preload_libraries"):
        choose_backend("timescaledb", NOT_PRELOADED, require_timescaledb=False)
    with pytest.raises(BackendError, match="no timescaledb extension installed"):
        choose_backend("timescaledb", NOTHING, require_timescaledb=False)
    assert choose_backend("timescaledb", CREATED, require_timescaledb=False) == "timescaledb"


def test_current_backend_of_an_unmigrated_database_says_to_migrate(pg_server: LocalPostgres) -> None:
    url = pg_server.create_database("backend_unmigrated")
    try:
        with psycopg.connect(url) as conn, pytest.raises(BackendError, match="citysense db migrate"):
            current_backend(conn)
    finally:
        _drop(pg_server, "backend_unmigrated")


@pytest.fixture
def installed_not_preloaded(pg_server: LocalPostgres) -> Iterator[None]:
    """The server sees a timescaledb package it has not preloaded.

    With a real TimescaleDB installed the suite's server already is in that state (it is never
    started with the library preloaded unless CITYSENSE_TEST_PG_PRELOAD says so). Without one, a
    stand-in extension is put in the server's share directory whose script ends the session the
    way the real library's FATAL does ("extension must be preloaded" closes the connection).
    """
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        if conn.execute("SELECT current_setting('shared_preload_libraries') LIKE '%timescaledb%'").fetchone() == (
            True,
        ):
            pytest.skip("this suite runs on a server with timescaledb preloaded (CITYSENSE_TEST_PG_PRELOAD)")
        row = conn.execute("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'").fetchone()
    assert row is not None
    extension_dir = Path(row[0]) / "extension"
    control = extension_dir / "timescaledb.control"
    if control.exists():
        yield
        return
    script = extension_dir / "timescaledb--0.0.0-stand-in.sql"
    control.write_text(
        "comment = 'citysense test stand-in: behaves like TimescaleDB installed but not preloaded'\n"
        "default_version = '0.0.0-stand-in'\nrelocatable = false\nsuperuser = true\n"
    )
    script.write_text("SELECT pg_terminate_backend(pg_backend_pid());\n")
    try:
        yield
    finally:
        control.unlink(missing_ok=True)
        script.unlink(missing_ok=True)


def test_installed_but_not_preloaded_migrates_on_the_fallback_with_one_clear_line(
    pg_server: LocalPostgres, installed_not_preloaded: None, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_server.create_database("backend_not_preloaded")
    try:
        with psycopg.connect(url) as conn:
            assert server_support(conn) == NOT_PRELOADED
        with caplog.at_level(logging.WARNING, logger="ingest.backend"):
            backend, applied = migrate(url)
        assert backend == "postgresql" and applied
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "installed but not preloaded" in warnings[0], warnings
        with pytest.raises(BackendError, match="cannot change backend in place"):
            migrate(url, require_timescaledb=True)
    finally:
        _drop(pg_server, "backend_not_preloaded")


def test_creating_the_extension_cannot_close_the_callers_connection(
    pg_server: LocalPostgres, installed_not_preloaded: None
) -> None:
    url = pg_server.create_database("backend_create_fails")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            with pytest.raises(BackendError, match="CREATE EXTENSION timescaledb failed"):
                create_extension(url)
            assert conn.execute("SELECT 1").fetchone() == (1,)  # still open
    finally:
        _drop(pg_server, "backend_create_fails")


def _drop(pg_server: LocalPostgres, name: str) -> None:
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
