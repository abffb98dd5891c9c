"""`citysense db maintain`: the jobs TimescaleDB would run in the background, run now.

Some PostgreSQL minor releases break TimescaleDB's background workers, and nothing in
the API may depend on them, so an operator (or the systemd timer) runs this in the
foreground. Each step reports what it did, not what it looked at: a second run in a row
compresses 0 chunks and drops 0 rows.

The refresh reaches back AGGREGATE_REFRESH_DAYS, past the oldest reading the gateway
accepts, so a replayed or late reading always reaches the aggregates; raw chunks are
compressed only once they are older than that window, so late writes never land in a
compressed chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg

from contracts.limits import AGGREGATE_REFRESH_DAYS
from ingest.aggregates import refresh_range
from ingest.backend import current_backend

# TimescaleDB-only statements: with the *.timescale.sql migrations, the only TimescaleDB SQL
# of the project (timescaledb_information.chunks and compress_chunk/drop_chunks of the 2.x API).
_TS_UNCOMPRESSED_BEFORE = (
    "SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks "
    "WHERE hypertable_name = %s AND NOT is_compressed AND range_end <= %s ORDER BY range_start"
)
_TS_COMPRESS = "SELECT compress_chunk(%s::regclass, if_not_compressed => true)"
_TS_EXPIRED = (
    "SELECT format('%%I.%%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks "
    "WHERE hypertable_name = %s AND range_end <= %s"
)
_TS_DROP = "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s::timestamptz)"


def run_maintenance(database_url: str, retention_days: int, dead_letter_days: int = 30) -> Iterator[str]:
    """Refresh, compress, expire; yields one line per step saying what changed.

    The retention must reach past the refresh window: refreshing buckets whose raw rows are
    gone would empty them (on TimescaleDB as on the fallback).
    """
    if retention_days <= AGGREGATE_REFRESH_DAYS:
        raise ValueError(
            f"retention of {retention_days} days is inside the {AGGREGATE_REFRESH_DAYS}-day refresh window "
            f"of the aggregates: keep raw readings longer than {AGGREGATE_REFRESH_DAYS} days"
        )
    with psycopg.connect(database_url, autocommit=True) as conn:
        backend = current_backend(conn)
        now = datetime.now(UTC)
        start = now - timedelta(days=AGGREGATE_REFRESH_DAYS)
        refresh_range(conn, start, now)
        window = "the whole views" if backend == "postgresql" else f"{start:%Y-%m-%d %H:%M} .. {now:%Y-%m-%d %H:%M} UTC"
        yield f"backend={backend} aggregates readings_1h, readings_1d refreshed over {window}"
        cutoff = now - timedelta(days=retention_days)
        if backend == "timescaledb":
            chunks = [r[0] for r in conn.execute(_TS_UNCOMPRESSED_BEFORE, ("readings", start)).fetchall()]
            for chunk in chunks:
                conn.execute(_TS_COMPRESS, (chunk,))
            yield f"chunks compressed now: {len(chunks)} (raw chunks older than {AGGREGATE_REFRESH_DAYS} days)"
            expired = [r[0] for r in conn.execute(_TS_EXPIRED, ("readings", cutoff)).fetchall()]
            rows = 0
            for chunk in expired:
                counted = conn.execute(f"SELECT count(*) FROM {chunk}".encode()).fetchone()
                rows += int(counted[0]) if counted else 0
            dropped = conn.execute(_TS_DROP, ("readings", cutoff)).fetchone()
            yield (f"raw chunks older than {retention_days} days dropped: {dropped[0] if dropped else 0} "
                   f"({rows} readings; aggregates kept)")
        else:
            cur = conn.execute("DELETE FROM readings WHERE time < %s", (cutoff,))
            yield f"raw readings older than {retention_days} days deleted: {cur.rowcount} (aggregates kept)"
        conn.execute("DELETE FROM latest_readings WHERE time < %s", (cutoff,))  # their readings are gone
        cur = conn.execute(
            "DELETE FROM rejected_messages WHERE received_at < %s", (now - timedelta(days=dead_letter_days),)
        )
        yield f"dead letters older than {dead_letter_days} days deleted: {cur.rowcount}"
