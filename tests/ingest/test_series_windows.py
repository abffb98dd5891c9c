"""Stuck/spike flags set in the batch transaction depend only on the stored readings.

The same readings written in any order, split into any batches, with copies and
redeliveries, end with the flags the rule gives the series judged once in time order;
a write that rolls back leaves the windows as they were.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.flags import Flag
from contracts.records import ReadingRow
from gateway.anomaly_flags import STUCK_SPIKE_RULE, flag_run
from ingest.batch_writer import Batch, BatchWriter, OncePayload
from ingest.series_windows import SeriesWindow, WindowStore

BASE = 1_763_000_000.0
METRICS = ("pm25", "t")


def _stream(seed: int, per_series: int) -> list[ReadingRow]:
    """Two devices x two metrics: calm values, stuck runs, spikes and a few sentinels."""
    rng = random.Random(seed)
    rows: list[ReadingRow] = []
    for device in ("sw-a", "sw-b"):
        for metric in METRICS:
            k = 0
            while k < per_series:
                kind = rng.random()
                if kind < 0.1:  # a stuck run
                    value = float(rng.randint(5, 30))
                    for _ in range(rng.randint(15, 30)):
                        rows.append((BASE + k, device, metric, value, value, 0, None))
                        k += 1
                    continue
                if kind < 0.15:
                    value = 400.0  # a spike
                elif kind < 0.17:
                    rows.append((BASE + k, device, metric, -999.0, None, int(Flag.SENTINEL), None))
                    k += 1
                    continue
                else:
                    value = round(rng.uniform(8, 14), 1)
                rows.append((BASE + k, device, metric, value, value, 0, None))
                k += 1
    return rows


def _expected(rows: list[ReadingRow]) -> dict[tuple[str, str, float], int]:
    """Each row's flags from the rule over its series in time order (the definition)."""
    out = {}
    for device in ("sw-a", "sw-b"):
        for metric in METRICS:
            series = sorted(r for r in rows if r[1] == device and r[2] == metric)
            judged = [r for r in series if STUCK_SPIKE_RULE.feeds_window(metric, r[5])]
            bits = flag_run(SeriesWindow(), metric, [r[3] for r in judged])
            out.update({(r[1], r[2], r[0]): r[5] for r in series})
            out.update({(r[1], r[2], r[0]): r[5] | b for r, b in zip(judged, bits, strict=True)})
    return out


def _stored(url: str) -> dict[tuple[str, str, float], int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(b"SELECT device_id, metric, extract(epoch FROM time)::float8, flags FROM readings")
        return {(d, m, t): f for d, m, t, f in rows}


async def _write_all(url: str, batches: list[list[ReadingRow]], writers: int = 1) -> None:
    """Batches dealt round-robin to `writers` writers (replicas): each writer's memory of the
    windows it saved goes stale whenever another one saves the same device."""
    replicas = [BatchWriter(url, STUCK_SPIKE_RULE) for _ in range(writers)]
    try:
        for n, batch in enumerate(batches):
            await replicas[n % writers].write(Batch(readings=batch))
    finally:
        for writer in replicas:
            await writer.close()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10_000), batches=st.integers(1, 12), copies=st.floats(0, 0.2), writers=st.integers(1, 3))
def test_flags_do_not_depend_on_arrival_order_batches_copies_or_writers(
    database_url: str, seed: int, batches: int, copies: float, writers: int
) -> None:
    rows = _stream(seed, 150)
    rng = random.Random(seed + 1)
    arrival = list(rows) + [r for r in rows if rng.random() < copies]  # LASS-like second copies
    # mostly in order, with stretches shuffled (round-robin replicas, store-and-forward replays)
    for start in range(0, len(arrival), 40):
        if rng.random() < 0.4:
            part = arrival[start : start + 40]
            rng.shuffle(part)
            arrival[start : start + 40] = part
    cut = sorted(rng.sample(range(1, len(arrival)), batches - 1)) if batches > 1 else []
    split = [arrival[a:b] for a, b in zip([0, *cut], [*cut, len(arrival)], strict=True)]
    redelivered = split + split[: max(1, len(split) // 3)]  # a crash after commit: batches come again
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, series_windows")
    asyncio.run(_write_all(database_url, redelivered, writers))
    assert _stored(database_url) == _expected(rows)


def test_a_rolled_back_write_feeds_no_window(database_url: str) -> None:
    """A batch the database refuses, written again without its poison row, gives the flags of
    a clean run: the refused attempt left the windows unchanged."""
    rows = _stream(7, 120)
    poison: ReadingRow = (BASE + 5000, "sw-a", "pm25", 666.0, 666.0, 0, None)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE readings ADD CONSTRAINT no_666 CHECK (raw <> 666)")

    async def scenario() -> None:
        writer = BatchWriter(database_url, STUCK_SPIKE_RULE)
        try:
            await writer.write(Batch(readings=rows[:200]))
            with pytest.raises(asyncpg.CheckViolationError):
                await writer.write(Batch(readings=[*rows[200:400], poison]))
            await writer.write(Batch(readings=rows[200:400]))
            await writer.write(Batch(readings=rows[400:]))
        finally:
            await writer.close()

    asyncio.run(scenario())
    assert _stored(database_url) == _expected(rows)


def test_a_payload_written_by_two_writers_or_twice_in_one_instant_is_stored_once(database_url: str) -> None:
    """Payload digests live in the database: the second copy is dropped whichever writer gets it,
    also when both copies were received in the same instant (so their rows share one key)."""
    line = b"|device_id=FT1_900|s_d0=12.00|"

    def copy(received_at: float) -> Batch:
        rows: list[ReadingRow] = [(received_at, "FT1_900", "pm25", 12.0, 12.0, int(Flag.NO_CLOCK), None)]
        return Batch(readings=rows, once=[OncePayload.of(line, received_at, "FT1_900", received_at)])

    async def scenario() -> list[int]:
        one, two = BatchWriter(database_url, STUCK_SPIKE_RULE), BatchWriter(database_url, STUCK_SPIKE_RULE)
        try:
            same_instant = copy(BASE)
            same_instant.readings += copy(BASE).readings
            same_instant.once += copy(BASE).once
            written = [await one.write(same_instant), await two.write(copy(BASE + 1)),
                       await one.write(copy(BASE + 601))]  # past the memory: a new reading
            return [w.readings_inserted for w in written]
        finally:
            await one.close()
            await two.close()

    assert asyncio.run(scenario()) == [1, 0, 1]


def test_a_loaded_window_row_deleted_before_the_save_is_stored_again(database_url: str) -> None:
    """`save` updates the rows `load` found; one that vanished meanwhile is inserted, not lost."""
    window = SeriesWindow(newest_us=5, last=3.0, repeats=1, recent=[2.0, 3.0])

    async def scenario() -> dict[str, dict[str, SeriesWindow]]:
        store = WindowStore()
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await store.save(conn, {"sw-gone": {"pm25": SeriesWindow()}, "sw-kept": {"pm25": SeriesWindow()}})
            store.committed()
            async with conn.transaction():
                await store.lock(conn, ["sw-gone", "sw-kept"])
                assert set(await store.load(conn, ["sw-gone", "sw-kept"])) == {"sw-gone", "sw-kept"}
                await conn.execute("DELETE FROM series_windows WHERE device_id = 'sw-gone'")
                await store.save(conn, {"sw-gone": {"pm25": window}, "sw-kept": {"t": window}})
            store.committed()
            return await WindowStore().load(conn, ["sw-gone", "sw-kept"])
        finally:
            await conn.close()

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE series_windows")
    assert asyncio.run(scenario()) == {"sw-gone": {"pm25": window}, "sw-kept": {"t": window}}
