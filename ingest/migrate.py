"""Apply the SQL migrations in order, once each, with the TimescaleDB parts guarded.

A migration is `NNNN_name.sql` (always applied) or a pair `NNNN_name.timescale.sql` /
`NNNN_name.postgres.sql` of which exactly one is applied, chosen by whether the
`timescaledb` extension can be created. Versions are recorded in `schema_migrations`
so a second run changes nothing; an advisory lock keeps two gateways starting at once
from racing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

log = logging.getLogger(__name__)

Backend = Literal["timescaledb", "postgresql"]
_LOCK_KEY = 7_042_025_001


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str


def _migration_files() -> dict[str, dict[str, str]]:
    """version -> {variant: sql}, where variant is 'any', 'timescale' or 'postgres'."""
    found: dict[str, dict[str, str]] = {}
    for entry in resources.files("ingest.migrations").iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        stem = name[: -len(".sql")]
        variant = "any"
        for suffix in ("timescale", "postgres"):
            if stem.endswith("." + suffix):
                stem, variant = stem[: -len(suffix) - 1], suffix
        found.setdefault(stem, {})[variant] = entry.read_text(encoding="utf-8")
    return found


def plan(backend: Backend) -> list[Migration]:
    """The ordered migrations for a backend."""
    chosen = "timescale" if backend == "timescaledb" else "postgres"
    out = []
    for version, variants in sorted(_migration_files().items()):
        sql = variants.get("any") or variants.get(chosen)
        if sql is None:
            raise RuntimeError(f"migration {version} has no variant for {backend}")
        out.append(Migration(version, sql))
    return out


def detect_backend(conn: psycopg.Connection) -> Backend:
    """Create the timescaledb extension if the server has it; say clearly when it does not."""
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning(
            "event=timescaledb_unavailable fallback=postgresql reason=%r "
            "(hypertables, compression and continuous aggregates are off; plain tables and "
            "materialized views are used instead)",
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )
        return "postgresql"
    log.info("event=timescaledb_available backend=timescaledb")
    return "timescaledb"


def current_backend(conn: psycopg.Connection) -> Backend:
    """What an already migrated database runs on (used by the API's health check)."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return "timescaledb" if row else "postgresql"


def migrate(database_url: str) -> tuple[Backend, list[str]]:
    """Bring the schema up to date; returns the backend and the versions applied now."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, backend text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            backend = detect_backend(conn)
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
            for migration in plan(backend):
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode("utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version, backend) VALUES (%s, %s)",
                        (migration.version, backend),
                    )
                log.info("event=migration_applied version=%s backend=%s", migration.version, backend)
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return backend, applied_now
