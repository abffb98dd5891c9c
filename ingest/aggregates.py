"""Refresh the hourly and daily aggregates, on either backend.

TimescaleDB refreshes just the window asked for (`refresh_continuous_aggregate`, which
must run outside a transaction); the plain-PostgreSQL fallback can only rebuild the
whole materialized view, concurrently so readers are never blocked.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from ingest.migrate import current_backend

VIEWS = ("readings_1h", "readings_1d")


def refresh_range(conn: psycopg.Connection, start: datetime | None, end: datetime | None) -> str:
    """Refresh both aggregates over [start, end); `conn` must be in autocommit mode."""
    if not conn.autocommit:
        raise ValueError("refresh_range needs an autocommit connection (TimescaleDB refuses a transaction)")
    backend = current_backend(conn)
    for view in VIEWS:
        if backend == "timescaledb":
            conn.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)", (view, start, end)
            )
        else:
            populated = conn.execute(
                "SELECT ispopulated FROM pg_matviews WHERE matviewname = %s", (view,)
            ).fetchone()
            concurrently = " CONCURRENTLY" if populated and populated[0] else ""
            conn.execute(f"REFRESH MATERIALIZED VIEW{concurrently} {view}".encode())
    return backend
