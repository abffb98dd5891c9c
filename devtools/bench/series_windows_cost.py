"""What the series windows cost the batch writer: rows/s with and without the stuck/spike step.

A bounded timing script (well under a minute), not a test:
`python -m devtools.bench.series_windows_cost [batches] [repetitions]`. It starts its own
PostgreSQL (fsync off) and writes batches through `BatchWriter` into fresh databases,
without a rule and with `STUCK_SPIKE_RULE`, in two shapes:

- `gateway`: what a gateway batch of 5,000 messages carries: 25,000 rows over 1,000
  devices x 5 metrics (5 readings per series per batch), in time order, and a variant
  with 2 % of the messages held back to the next batch (late, so their series are recomputed);
- `thin`: 5,000-row batches with one reading per series (the shape of the first measurement).

The variants run interleaved, `repetitions` times each; it prints the median rows/s of
each and the step's rows/s as a share of the run without it (same shape, same run).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from contracts.records import ReadingRow
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port
from gateway.anomaly_flags import STUCK_SPIKE_RULE
from ingest.batch_writer import Batch, BatchWriter
from ingest.migrate import migrate
from ingest.series_windows import SeriesRule

DEVICES = 1000
BASE = 1_763_000_000.0
# plausible readings of an air box: PM steady with noise, temperature and humidity drifting slowly
METRICS = {"pm1": (6.0, 2.0), "pm25": (12.0, 3.0), "pm10": (18.0, 4.0), "t": (24.0, 0.3), "rh": (65.0, 1.5)}


@dataclass(frozen=True)
class Shape:
    name: str
    per_series: int  # readings of each series in one batch
    late_share: float  # share of messages held back to the next batch


def batches(count: int, shape: Shape, seed: int = 3) -> list[list[ReadingRow]]:
    """`count` batches as a gateway sees them: message after message (one reading of each
    metric of one device), devices interleaved, each device one reading a second; held-back
    messages come at the end of the next batch."""
    rng = random.Random(seed)
    out: list[list[ReadingRow]] = []
    held: list[ReadingRow] = []
    for b in range(count):
        rows: list[ReadingRow] = []
        late: list[ReadingRow] = []
        for k in range(shape.per_series):
            ts = BASE + b * shape.per_series + k
            for d in range(DEVICES):
                message = []
                for metric, (centre, spread) in METRICS.items():
                    v = round(rng.gauss(centre, spread), 1)
                    message.append((ts, f"bench-{d:04d}", metric, v, v, 0, None))
                (late if rng.random() < shape.late_share else rows).extend(message)
        out.append(rows + held)
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


SHAPES = (Shape("gateway, in order", 5, 0.0), Shape("gateway, 2% late", 5, 0.02), Shape("thin, in order", 1, 0.0))


def main(count: int, repetitions: int) -> None:
    work = {s.name: batches((count + 1) * (5 // s.per_series), s) for s in SHAPES}  # the same rows per run
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="citysense-swcost-") as tmp:
        server = LocalPostgres(Path(tmp) / "data", free_port(), fsync=False)
        server.start()
        try:
            migrate(server.create_database("swcost_template"))
            n = 0
            for _ in range(repetitions):
                for shape in SHAPES:
                    for step, rule in (("without step", None), ("with step", STUCK_SPIKE_RULE)):
                        n += 1
                        url = server.create_database(f"swcost{n}", template="swcost_template")
                        rate = asyncio.run(rows_per_second(url, rule, work[shape.name]))
                        rates.setdefault((shape.name, step), []).append(rate)
        finally:
            server.stop()
    print(f"median of {repetitions} interleaved runs; {count} timed batches of 25,000 rows (thin: 5x as many "
          f"of 5,000), {DEVICES} devices x {len(METRICS)} metrics")
    for shape in SHAPES:
        without = statistics.median(rates[(shape.name, "without step")])
        with_step = statistics.median(rates[(shape.name, "with step")])
        spread = ", ".join(f"{r:,.0f}" for r in rates[(shape.name, "with step")])
        print(f"{shape.name:20s} without {without:9,.0f} rows/s   with {with_step:9,.0f} rows/s   "
              f"ratio {with_step / without:4.2f}   (with: {spread})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
