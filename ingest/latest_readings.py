"""The newest reading of every (device, metric): the rules of the latest_readings table (migration 0013).

The city map (/v1/latest) reads devices x metrics rows from it instead of probing the readings
per device. Three ways keep it right, each in one place:
- the batch writer moves a row forward in the transaction that stores the readings
  (`upsert_newest`): only to a newer time, so late data, imports and redeliveries leave it be;
- a trigger (in the migration) follows an UPDATE of the newest reading (series flags,
  `calibrate apply`);
- `rebuild` fills it from the readings already stored: after migrations, and for any writer
  that bypasses the batch writer (test seeds, the API bench's bulk load).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

import asyncpg
import psycopg

from contracts.records import ReadingRow

# A large batch's newest row of each series is COPYed in (asyncpg checks every element of an array
# parameter in Python: seven 5,000-element arrays cost more client CPU than the COPY of the rows);
# a small one (the isolation path writes message by message) travels as array parameters, which
# spares the COPY's round trips. The layout is the batch writer's reading rows
# (contracts.records.ReadingRow), time as Unix seconds.
STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS stage_latest (
    ts double precision, device_id text, metric text, raw double precision,
    value double precision, flags integer, calibration_id integer
) ON COMMIT DELETE ROWS;
"""
COPY_FROM_ROWS = 500  # newest rows from which they are COPYed rather than passed as arrays
_STAGED = "stage_latest AS s"
_PASSED = ("unnest($1::float8[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::int4[], $7::int4[])"
           " AS s(ts, device_id, metric, raw, value, flags, calibration_id)")


# The rule, written once for both row sources `s`: a row moves only to a newer time, never past the
# future bound. An UPDATE joined to the rows writes one WAL record per row where INSERT ... ON
# CONFLICT DO UPDATE writes two (it locks the conflicting row first); a concurrent writer's update
# of the same row is waited for and the time test re-read on the new version, so the newer time wins.
def _move_forward(source: str) -> str:
    return f"""
UPDATE latest_readings AS l
   SET time = to_timestamp(s.ts), raw = s.raw, value = s.value, flags = s.flags, calibration_id = s.calibration_id
  FROM {source}
 WHERE l.metric = s.metric AND l.device_id = s.device_id AND l.time < to_timestamp(s.ts)
   AND to_timestamp(s.ts) <= now() + interval '10 minutes'
"""


# The series that have no row yet (a new device or metric); run only when the update did not move
# every row. Another writer inserting the same series meanwhile meets the conflict clause, which
# keeps the newer time.
def _insert_new(source: str) -> str:
    return f"""
INSERT INTO latest_readings AS l (device_id, metric, time, raw, value, flags, calibration_id)
SELECT s.device_id, s.metric, to_timestamp(s.ts), s.raw, s.value, s.flags, s.calibration_id
  FROM {source}
 WHERE to_timestamp(s.ts) <= now() + interval '10 minutes'
   AND NOT EXISTS (SELECT FROM latest_readings AS k WHERE k.metric = s.metric AND k.device_id = s.device_id)
ON CONFLICT (metric, device_id) DO UPDATE
   SET time = EXCLUDED.time, raw = EXCLUDED.raw, value = EXCLUDED.value, flags = EXCLUDED.flags,
       calibration_id = EXCLUDED.calibration_id
 WHERE l.time < EXCLUDED.time
"""


_STATEMENTS = {source: (_move_forward(source), _insert_new(source)) for source in (_STAGED, _PASSED)}

_REBUILD = """
INSERT INTO latest_readings AS l (device_id, metric, time, raw, value, flags, calibration_id)
SELECT DISTINCT ON (device_id, metric) device_id, metric, time, raw, value, flags, calibration_id
FROM readings
WHERE time <= now() + interval '10 minutes'
ORDER BY device_id, metric, time DESC
ON CONFLICT (metric, device_id) DO UPDATE
   SET time = EXCLUDED.time, raw = EXCLUDED.raw, value = EXCLUDED.value, flags = EXCLUDED.flags,
       calibration_id = EXCLUDED.calibration_id
 WHERE l.time IS DISTINCT FROM EXCLUDED.time OR l.value IS DISTINCT FROM EXCLUDED.value
    OR l.flags IS DISTINCT FROM EXCLUDED.flags OR l.calibration_id IS DISTINCT FROM EXCLUDED.calibration_id
"""


_TIME = itemgetter(0)
_SERIES = itemgetter(1, 2)


def newest_per_series(readings: Sequence[ReadingRow]) -> list[ReadingRow]:
    """The newest row of every (device, metric) in a batch.

    C-level loops only (a stable sort by time, then a dict keyed by series keeps each series'
    last, i.e. newest, row): a per-row Python loop cost ~6 % of the gateway's CPU at full load.
    Timsort is linear on a batch that arrives mostly in time order."""
    ordered = sorted(readings, key=_TIME)
    return list(dict(zip(map(_SERIES, ordered), ordered, strict=True)).values())


async def upsert_newest(conn: asyncpg.Connection, readings: Sequence[ReadingRow]) -> None:
    """Inside the batch's transaction: each series' newest row in the batch, if newer than the stored one.

    `conn` holds `STAGING_DDL`'s table (the batch writer creates it when it connects)."""
    rows = newest_per_series(readings)
    if not rows:
        return
    args: tuple[list[object], ...] = ()
    if len(rows) >= COPY_FROM_ROWS:
        await conn.copy_records_to_table("stage_latest", records=rows)
        move, insert = _STATEMENTS[_STAGED]
    else:
        move, insert = _STATEMENTS[_PASSED]
        args = ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
                [r[4] for r in rows], [int(r[5]) for r in rows], [r[6] for r in rows])  # flags may be an
        # IntFlag, which asyncpg's array encoder would iterate as a nested array
    moved = await conn.execute(move, *args)
    if int(moved.rsplit(" ", 1)[-1]) < len(rows):  # some series are new, late or in the future
        await conn.execute(insert, *args)


def rebuild(conn: psycopg.Connection[object]) -> int:
    """Make every row equal to the newest stored reading of its series; returns the rows changed."""
    return conn.execute(_REBUILD.encode()).rowcount
