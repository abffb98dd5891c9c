"""Which backend a database runs on: decided once, before any CREATE EXTENSION, and recorded.

TimescaleDB that is installed but not in `shared_preload_libraries` makes `CREATE EXTENSION`
a FATAL that closes the connection, so the server is asked first (`pg_available_extensions`,
the preload list) and the extension is only ever created on a connection of its own. The
backend chosen at the first migration is recorded in `schema_migrations`; from then on it is
what the database runs on, whatever the server later offers: a schema made by the fallback is
never served half as TimescaleDB (its aggregates would be plain materialized views read as
continuous ones), and a TimescaleDB schema on a server that lost the extension is refused
with a sentence instead of being served stale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

log = logging.getLogger(__name__)

Backend = Literal["timescaledb", "postgresql"]

PRELOAD_HINT = (
    "add timescaledb to shared_preload_libraries in postgresql.conf "
    "(shared_preload_libraries = 'timescaledb') and restart PostgreSQL"
)


class BackendError(RuntimeError):
    """The database cannot run on the backend it needs; the text says what to do."""


class SchemaMissing(BackendError):
    """The database has no citysense schema yet."""

    def __init__(self) -> None:
        super().__init__("the database has no citysense schema: run `citysense db migrate`")


@dataclass(frozen=True)
class ServerSupport:
    """What the server offers for TimescaleDB, read without touching the extension."""

    available: bool  # the package is installed (pg_available_extensions)
    preloaded: bool  # its library is loaded at server start (shared_preload_libraries)
    created: bool  # the extension exists in this database


def server_support(conn: psycopg.Connection[Any]) -> ServerSupport:
    """Ask the server; safe on any connection, since nothing here can raise a FATAL."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
        # a loaded library registers its settings; readable by any role, unlike the preload list
        " current_setting('timescaledb.license', true) IS NOT NULL"
    ).fetchone()
    assert row is not None
    available, created, loaded = bool(row[0]), bool(row[1]), bool(row[2])
    return ServerSupport(available, loaded or _in_preload_list(conn), created)


def _in_preload_list(conn: psycopg.Connection[Any]) -> bool:
    """shared_preload_libraries names timescaledb (only superusers and pg_read_all_settings may read it)."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return False
    libraries = (row[0] if row else "") or ""
    return any(lib.strip().strip('"').rsplit("/", 1)[-1].startswith("timescaledb") for lib in libraries.split(","))


_HAS_SCHEMA_SQL = "SELECT to_regclass('schema_migrations') IS NOT NULL"
_FIRST_BACKEND_SQL = "SELECT backend FROM schema_migrations ORDER BY version LIMIT 1"


def parse_recorded(value: object) -> Backend | None:
    """The recorded backend from RECORDED_BACKEND_SQL's one value."""
    if value is None:
        return None
    if value == "timescaledb":
        return "timescaledb"
    if value == "postgresql":
        return "postgresql"
    raise BackendError(f"schema_migrations records an unknown backend {value!r}")


def recorded_backend(conn: psycopg.Connection[Any]) -> Backend | None:
    """The backend of the first migration, or None for a database never migrated."""
    has = conn.execute(_HAS_SCHEMA_SQL).fetchone()
    if not has or not has[0]:
        return None
    row = conn.execute(_FIRST_BACKEND_SQL).fetchone()
    return parse_recorded(row[0] if row else None)


async def recorded_backend_async(conn: psycopg.AsyncConnection[Any]) -> Backend | None:
    """recorded_backend for the API's async connections (same two statements)."""
    cur = await conn.execute(_HAS_SCHEMA_SQL)
    has = await cur.fetchone()
    if not has or not has[0]:
        return None
    cur = await conn.execute(_FIRST_BACKEND_SQL)
    row = await cur.fetchone()
    return parse_recorded(row[0] if row else None)


def current_backend(conn: psycopg.Connection[Any]) -> Backend:
    """What a migrated database runs on (the API's health and series, the maintenance jobs)."""
    backend = recorded_backend(conn)
    if backend is None:
        raise SchemaMissing
    return backend


def choose_backend(recorded: Backend | None, support: ServerSupport, *, require_timescaledb: bool) -> Backend:
    """The backend to migrate on; raises BackendError with the sentence a person needs.

    Pure, so each case is tested without a TimescaleDB server.
    """
    if recorded == "timescaledb":
        if not support.available:
            raise BackendError(
                "this database's schema was made on TimescaleDB, but the server has no timescaledb "
                "extension installed: install the TimescaleDB package for this PostgreSQL"
            )
        if not support.preloaded:
            raise BackendError(f"this database's schema was made on TimescaleDB: {PRELOAD_HINT}")
        return "timescaledb"
    if recorded == "postgresql":
        if require_timescaledb:
            raise BackendError(
                "CITYSENSE_REQUIRE_TIMESCALEDB=true, but this database's schema was made for plain PostgreSQL; "
                "a schema cannot change backend in place: migrate a new database and copy the readings into it"
            )
        if support.created:
            log.warning(
                "event=backend_kept backend=postgresql reason='the timescaledb extension exists in this "
                "database, but its schema was made for plain PostgreSQL; it stays on plain PostgreSQL "
                "(migrate a new database to use TimescaleDB)'"
            )
        return "postgresql"
    if support.available and support.preloaded:
        return "timescaledb"
    reason = (
        f"timescaledb is installed but not preloaded: {PRELOAD_HINT}"
        if support.available else "the timescaledb extension is not installed on this server"
    )
    if require_timescaledb:
        raise BackendError(f"CITYSENSE_REQUIRE_TIMESCALEDB=true, but {reason}")
    log.warning(
        "event=timescaledb_unavailable fallback=postgresql reason=%r (hypertables, compression and "
        "continuous aggregates are off; plain tables and materialized views give the same answers)",
        reason,
    )
    return "postgresql"


def create_extension(database_url: str) -> None:
    """CREATE EXTENSION on a connection of its own, so even a FATAL cannot close the caller's."""
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"CREATE EXTENSION timescaledb failed: {first}") from exc
