"""Refresh the hourly and daily aggregates over a window, on either backend.

TimescaleDB refreshes its continuous aggregates (`refresh_continuous_aggregate`, which must
run outside a transaction). The plain-PostgreSQL fallback keeps the same two tables and
recomputes the buckets the window touches from the raw rows, in one transaction: readers see
the old buckets or the new ones, and buckets outside the window (including those whose raw
rows retention has deleted) are kept, as TimescaleDB keeps them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ingest.backend import current_backend

VIEWS = {"readings_1h": "1 hour", "readings_1d": "1 day"}
_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"


def refresh_range(conn: psycopg.Connection[Any], start: datetime | None, end: datetime | None) -> str:
    """Refresh both aggregates over [start, end) (None: unbounded); `conn` must be in autocommit mode.

    On the fallback the window is widened to whole buckets, so no bucket is left half-computed.
    """
    if not conn.autocommit:
        raise ValueError("refresh_range needs an autocommit connection (TimescaleDB refuses a transaction)")
    backend = current_backend(conn)
    if backend == "timescaledb":
        for view in VIEWS:
            conn.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)", (view, start, end)
            )
        return backend
    with conn.transaction():
        for view, width in VIEWS.items():
            step = f"INTERVAL '{width}'"
            lo = f"date_bin({step}, %(start)s::timestamptz, {_ORIGIN})"
            hi = f"date_bin({step}, %(end)s::timestamptz - INTERVAL '1 microsecond', {_ORIGIN}) + {step}"
            window = (
                f"(%(start)s::timestamptz IS NULL OR {{col}} >= {lo})"
                f" AND (%(end)s::timestamptz IS NULL OR {{col}} < {hi})"
            )
            args = {"start": start, "end": end}
            conn.execute(f"DELETE FROM {view} WHERE {window.format(col='bucket')}".encode(), args)
            conn.execute(
                f"INSERT INTO {view} (bucket, device_id, metric, avg, min, max, count) "
                f"SELECT date_bin(INTERVAL '{width}', time, {_ORIGIN}), device_id, metric, "
                f"avg(value), min(value), max(value), count(value) FROM readings "
                f"WHERE {window.format(col='time')} GROUP BY 1, 2, 3".encode(),
                args,
            )
    return backend
