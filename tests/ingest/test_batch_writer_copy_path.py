"""The batch writer's COPY fast path and its merge fallback store exactly the same rows."""

from __future__ import annotations

import asyncio
import time

import psycopg

from contracts.records import ReadingRow
from ingest.batch_writer import MERGE_BATCHES_AFTER_CONFLICT, Batch, BatchWriter


def _rows(device: str, start: float, n: int) -> list[ReadingRow]:
    # ms-precision float times, as devices send them, including values that round at the µs edge
    return [(round(start + i * 0.001 + 0.0000005, 7), device, "pm25", 10.0 + i, 10.0 + i, 0, None) for i in range(n)]


def _stored(url: str) -> list[tuple[str, float]]:
    with psycopg.connect(url) as conn:
        return [(d, float(t)) for d, t in conn.execute(
            b"SELECT device_id, extract(epoch FROM time)::float8 FROM readings ORDER BY device_id, time"
        ).fetchall()]


def test_copy_path_then_redelivery_then_overlap_store_each_row_once(database_url: str) -> None:
    async def scenario() -> list[int]:
        writer = BatchWriter(database_url)
        base = time.time() - 3600
        first = _rows("wb-box-1", base, 500)
        inserted = [(await writer.write(Batch(readings=first))).readings_inserted]  # fast path
        inserted.append((await writer.write(Batch(readings=first))).readings_inserted)  # conflict -> merge
        overlap = first[250:] + _rows("wb-box-1", base + 10, 100)
        inserted.append((await writer.write(Batch(readings=overlap))).readings_inserted)
        for k in range(MERGE_BATCHES_AFTER_CONFLICT):  # back on the fast path afterwards
            inserted.append((await writer.write(Batch(readings=_rows(f"wb-box-{k + 2}", base, 10)))).readings_inserted)
        dup_inside = _rows("wb-box-99", base, 5)
        inserted.append((await writer.write(Batch(readings=dup_inside + dup_inside[:2]))).readings_inserted)
        await writer.close()
        return inserted

    inserted = asyncio.run(scenario())
    assert inserted[:3] == [500, 0, 100]
    assert inserted[3:-1] == [10] * MERGE_BATCHES_AFTER_CONFLICT
    assert inserted[-1] == 5
    stored = _stored(database_url)
    assert len(stored) == len(set(stored)) == 500 + 100 + 10 * MERGE_BATCHES_AFTER_CONFLICT + 5


def test_both_paths_store_the_same_timestamp_for_the_same_float(database_url: str) -> None:
    async def scenario() -> None:
        writer = BatchWriter(database_url)
        rows = _rows("wb-same-1", time.time() - 7200, 300)
        await writer.write(Batch(readings=rows))  # COPY path
        writer._merge_only = 5  # force the merge path for the same rows: nothing may be new
        assert (await writer.write(Batch(readings=rows))).readings_inserted == 0
        await writer.close()

    asyncio.run(scenario())
    assert len(_stored(database_url)) == 300
