"""Apply the SQL migrations in order, once each, with the TimescaleDB parts guarded.

A migration is `NNNN_name.sql` (always applied) or a pair `NNNN_name.timescale.sql` /
`NNNN_name.postgres.sql` of which exactly one is applied, chosen by the backend
(ingest/backend.py decides it once and records it). Versions are recorded in
`schema_migrations` so a second run changes nothing; an advisory lock keeps two gateways
starting at once from racing. After migrations were applied the aggregates get one full
refresh and the latest readings a rebuild, so history already in the tables is aggregated (and
its newest values known) before anything reads it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

from ingest import latest_readings
from ingest.aggregates import refresh_range
from ingest.backend import Backend, BackendError, choose_backend, create_extension, recorded_backend, server_support

log = logging.getLogger(__name__)

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


def migrate(
    database_url: str, *, require_timescaledb: bool = False, allow_timescaledb: bool = True
) -> tuple[Backend, list[str]]:
    """Bring the schema up to date; returns the backend and the versions applied now.

    `allow_timescaledb=False` makes a new database plain PostgreSQL on a TimescaleDB server
    (the bench measures both backends in one run); a database's recorded backend always wins.

    Raises BackendError (one sentence) when the database cannot run on the backend it needs.
    """
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, backend text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            recorded = recorded_backend(conn)
            support = server_support(conn)
            backend = choose_backend(recorded, support, require_timescaledb=require_timescaledb)
            if not allow_timescaledb and recorded is None:
                backend = "postgresql"
            if backend == "timescaledb" and not support.created:
                try:
                    create_extension(database_url)
                except BackendError as exc:
                    if recorded is not None or require_timescaledb:
                        raise
                    log.warning("event=timescaledb_unavailable fallback=postgresql reason=%r", str(exc))
                    backend = "postgresql"
            log.info("event=backend backend=%s recorded=%s", backend, recorded or "none (first migration)")
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
            if applied_now:
                refresh_range(conn, None, None)
                latest_readings.rebuild(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return backend, applied_now
