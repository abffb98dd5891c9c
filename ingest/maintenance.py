"""`citysense db maintain`: the jobs TimescaleDB would run in the background, run now.

Some PostgreSQL minor releases break TimescaleDB's background workers, and nothing in
the API may depend on them, so an operator (or cron) runs this in the foreground.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg

from ingest.aggregates import refresh_range
from ingest.migrate import current_backend

# TimescaleDB-only statements (kept beside the *.timescale.sql migrations in spirit: the
# only other TimescaleDB SQL in the project).
_TS_COMPRESS = (
    "SELECT count(compress_chunk(c, if_not_compressed => true)) "
    "FROM show_chunks(%s::regclass, older_than => %s::interval) c"
)
_TS_DROP = "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s::interval)"


def run_maintenance(database_url: str, retention_days: int) -> Iterator[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        backend = current_backend(conn)
        now = datetime.now(UTC)
        refresh_range(conn, now - timedelta(days=7), now)
        yield f"backend={backend} aggregates refreshed (readings_1h, readings_1d)"
        keep = timedelta(days=retention_days)
        if backend == "timescaledb":
            row = conn.execute(_TS_COMPRESS, ("readings", timedelta(days=7))).fetchone()
            yield f"compressed chunks: {row[0] if row else 0}"
            row = conn.execute(_TS_DROP, ("readings", keep)).fetchone()
            yield f"dropped raw chunks older than {retention_days} days: {row[0] if row else 0}"
        else:
            cur = conn.execute("DELETE FROM readings WHERE time < now() - %s::interval", (keep,))
            yield f"deleted raw readings older than {retention_days} days: {cur.rowcount}"
