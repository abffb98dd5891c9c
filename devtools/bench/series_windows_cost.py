"""What the series windows cost the batch writer: rows/s with and without the stuck/spike step.

A bounded timing script (a few seconds of writes per variant), not a test:
`python -m devtools.bench.series_windows_cost [batches]`. It starts its own PostgreSQL,
writes the same in-order batches (1,000 devices x 5 metrics, 5,000 rows per batch, as a
gateway batch of 1,000 messages carries) into fresh databases through `BatchWriter`
without a rule, with `STUCK_SPIKE_RULE`, and with the rule and 2 % of each batch's rows
arriving late (out of order, so their series are recomputed), and prints rows/s.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from contracts.records import ReadingRow
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port
from gateway.anomaly_flags import STUCK_SPIKE_RULE
from ingest.batch_writer import Batch, BatchWriter
from ingest.migrate import migrate
from ingest.series_windows import SeriesRule

DEVICES = 1000
METRICS = ("pm1", "pm25", "pm10", "t", "rh")
BASE = 1_763_000_000.0


def batches(count: int, late_share: float, seed: int = 3) -> list[list[ReadingRow]]:
    """`count` batches of one reading per device and metric each, one second apart; with
    `late_share`, that share of a batch's rows is held back and sent in the next batch."""
    rng = random.Random(seed)
    out: list[list[ReadingRow]] = []
    held: list[ReadingRow] = []
    for b in range(count):
        rows: list[ReadingRow] = []
        for d in range(DEVICES):
            for m in METRICS:
                v = round(rng.uniform(5, 40), 1)
                rows.append((BASE + b, f"bench-{d:04d}", m, v, v, 0, None))
        late = [r for r in rows if rng.random() < late_share]
        kept = [r for r in rows if r not in set(late)] if late else rows
        out.append(kept + held)
        held = late
    if held:
        out.append(held)
    return out


async def rows_per_second(url: str, rule: SeriesRule | None, work: list[list[ReadingRow]]) -> float:
    writer = BatchWriter(url, rule)
    await writer.write(Batch(readings=work[0]))  # connect and warm up outside the timing
    started = time.perf_counter()
    for rows in work[1:]:
        await writer.write(Batch(readings=rows))
    took = time.perf_counter() - started
    await writer.close()
    return sum(len(r) for r in work[1:]) / took


def main(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="citysense-swcost-") as tmp:
        server = LocalPostgres(Path(tmp) / "data", free_port(), fsync=False)
        server.start()
        try:
            variants = [("no series step", None, 0.0), ("series windows", STUCK_SPIKE_RULE, 0.0),
                        ("series windows, 2% late rows", STUCK_SPIKE_RULE, 0.02)]
            for i, (name, rule, late) in enumerate(variants):
                url = server.create_database(f"swcost{i}")
                migrate(url)
                rate = asyncio.run(rows_per_second(url, rule, batches(count, late)))
                print(f"{name:32s} {rate:9,.0f} rows/s  ({count} batches of {DEVICES * len(METRICS)} rows)")
        finally:
            server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
