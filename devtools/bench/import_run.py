"""`citysense import` measured: a co-location CSV into plain PostgreSQL, beside a raw COPY of the same rows.

One bounded run (a minute or so on a 2-core machine) that can be repeated on a loaded machine,
because it reports ratios and CPU per reading, not only wall-clock speed:

1. ``fresh``: the CSV (`devtools.colocation`: boxes x days of 1-minute PM2.5 and RH) imported
   into an empty, migrated database through `HistoryImporter`, exactly the path of `citysense
   import` (validation, registry, calibration, stuck/spike flags, the batch writer);
2. ``again``: the same file imported a second time (every row already stored: nothing added);
3. ``overlap``: the file imported into a database holding its first half already;
4. ``copy``: the rows the fresh import stored, written with nothing but asyncpg's binary COPY
   into the empty `readings` of another database, one transaction per importer chunk;
5. ``reference_year``: a year of a reference station's hourly PM2.5 and RH in the MOENV station
   layout (`citysense import --format moenv`), into a database of its own.

For each phase: wall readings/s, the importer's CPU seconds (`time.process_time`, every thread
of this process) and PostgreSQL's (the backends serving the phase's database, and every server
process, by `CpuMeter`), so readings per importer CPU-second and per PostgreSQL CPU-second, and
the fresh import's rate against the COPY's. On a loaded machine the wall figures move with the
load; the ratio to the COPY in the same run and the CPU per reading are what to compare.

    citysense bench import [--boxes 8] [--days 60] [--csv /tmp/colo.csv]
    python -m devtools.bench.import_run --boxes 8 --days 60 [--csv /tmp/colo.csv] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import psycopg

from devtools.bench.limits import COLUMNS
from devtools.bench.report import import_table, show
from devtools.bench.servers import BenchServers, CpuMeter, with_children
from devtools.colocation import generate, write_readings_csv, write_reference_moenv
from gateway.history_formats import CHUNK_ROWS, HistoryChunk, read_csv, read_moenv_station
from gateway.history_import import HistoryImporter, ImportReport
from ingest.calibration_store import refresh_aggregates
from ingest.device_store import DeviceFields, register_devices


@dataclass
class Phase:
    """One measured phase: rows handled, wall seconds, CPU seconds of the importer and of PostgreSQL."""

    rows: int
    stored: int
    wall_s: float
    importer_cpu_s: float
    postgres_cpu_s: float  # the backends serving the phase's database
    server_cpu_s: float  # every server process (checkpointer, WAL writer, autovacuum too)

    def as_json(self) -> dict[str, Any]:
        def per(cpu: float) -> float | None:
            return round(self.rows / cpu) if cpu > 0 else None

        return {
            "rows": self.rows, "stored": self.stored, "wall_s": round(self.wall_s, 2),
            "readings_s": round(self.rows / self.wall_s) if self.wall_s > 0 else None,
            "importer_cpu_s": round(self.importer_cpu_s, 2), "postgres_cpu_s": round(self.postgres_cpu_s, 2),
            "server_cpu_s": round(self.server_cpu_s, 2),
            "readings_per_importer_cpu_s": per(self.importer_cpu_s),
            "readings_per_postgres_cpu_s": per(self.postgres_cpu_s),
        }


def default_csv(boxes: int, days: int) -> Path:
    """Where a campaign's CSV is kept between runs (in the temp folder, named for its size)."""
    return Path(tempfile.gettempdir()) / f"citysense-import-bench-{boxes}x{days}.csv"


def write_campaign_csv(path: Path, boxes: int, days: int, seed: int = 19) -> int:
    """The import CSV of a campaign (reused when it exists: generating it costs more than importing it)."""
    if path.exists():
        with path.open("rb") as f:
            return sum(1 for _ in f) - 1
    return write_readings_csv(generate(seed, days=days, boxes=boxes), path)


def _backends(servers: BenchServers, database: str) -> list[psutil.Process]:
    """The server processes serving `database` (their title is ``postgres: user database ...``)."""
    found = []
    for proc in with_children(servers.postgres_pid()):
        try:
            if f" {database} " in " ".join(proc.cmdline()) + " ":
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _measure(
    servers: BenchServers, database: str, work: Callable[[], Coroutine[Any, Any, tuple[int, int]]]
) -> Phase:
    meter = CpuMeter({
        "postgres": lambda: with_children(servers.postgres_pid()), "backends": lambda: _backends(servers, database),
    }, refresh_s=0.5)
    meter.start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    rows, stored = asyncio.run(work())
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    meter.stop()
    return Phase(rows, stored, wall, cpu, meter.seconds.get("backends", 0.0), meter.seconds.get("postgres", 0.0))


def _import(
    url: str, path: Path, report_out: list[ImportReport], read: Callable[[Path], Iterator[HistoryChunk]] = read_csv
) -> Callable[[], Coroutine[Any, Any, tuple[int, int]]]:
    async def work() -> tuple[int, int]:
        async with HistoryImporter(url, kind="airbox", accept_unknown=True) as importer:
            report = await importer.import_chunks(read(path))
        report_out.append(report)
        return report.rows_read, report.rows_stored

    return work


REFERENCE_DEVICE = "ref-banqiao"
"""The id the reference station's readings are stored under (`citysense import --device`)."""


def _reference_year(servers: BenchServers, reports: list[ImportReport]) -> Phase:
    """A year of a reference station's hourly file (MOENV layout) imported into a database of its own."""
    path = servers.root / "reference-year.csv"
    write_reference_moenv(generate(23, days=365, boxes=1).reference, path)
    url = servers.database("bench_import_reference")
    register_devices(url, [(REFERENCE_DEVICE, DeviceFields(lat=25.0129, lon=121.4580, sensor_type=None))])
    return _measure(servers, "bench_import_reference",
                    _import(url, path, reports, lambda p: read_moenv_station(p, device=REFERENCE_DEVICE)))


def _copy(source_url: str, target_url: str, batch_rows: int) -> tuple[list[tuple[Any, ...]], Callable[
    [], Coroutine[Any, Any, tuple[int, int]]
]]:
    """The fresh import's rows, and the COPY of them into `target_url` (one transaction per batch)."""
    with psycopg.connect(source_url) as conn:
        records = [tuple(r) for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM readings ORDER BY time".encode())]

    async def work() -> tuple[int, int]:
        dst = await asyncpg.connect(target_url)
        try:
            for i in range(0, len(records), batch_rows):
                async with dst.transaction():
                    await dst.copy_records_to_table("readings", records=records[i : i + batch_rows], columns=COLUMNS)
        finally:
            await dst.close()
        return len(records), len(records)

    return records, work


def _half_file(path: Path, out: Path) -> Path:
    """The first half of the CSV's lines (with the header): the rows an overlapping import finds stored."""
    lines = path.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[: 1 + (len(lines) - 1) // 2]))
    return out


def run_import_bench(csv_path: Path, boxes: int, days: int) -> dict[str, Any]:
    """The four phases of the module docstring, on one PostgreSQL with fsync on."""
    rows = write_campaign_csv(csv_path, boxes, days)
    servers = BenchServers(fsync=True)
    results: dict[str, Any] = {"kind": "import", "csv": str(csv_path), "csv_rows": rows, "chunk_rows": CHUNK_ROWS}
    try:
        results["backend"] = servers.start_postgres()
        fresh_db = servers.database("bench_import")
        boxes_ids = sorted({line.split(b",", 1)[0].decode() for line in csv_path.read_bytes().splitlines()[1:]})
        fleet = [(d, DeviceFields(lat=25.0, lon=121.5, sensor_type="pms5003")) for d in boxes_ids]
        register_devices(fresh_db, fleet)
        reports: list[ImportReport] = []
        fresh = _measure(servers, "bench_import", _import(fresh_db, csv_path, reports))
        started = time.perf_counter()
        with psycopg.connect(fresh_db) as conn:
            for first_day, last_day in reports[-1].day_ranges():
                refresh_aggregates(conn, first_day, last_day)
        results["aggregates_refresh_s"] = round(time.perf_counter() - started, 2)
        again = _measure(servers, "bench_import", _import(fresh_db, csv_path, reports))
        overlap_db = servers.database("bench_import_overlap")
        register_devices(overlap_db, fleet)
        half = _half_file(csv_path, servers.root / "half.csv")
        asyncio.run(_import(overlap_db, half, reports)())
        overlap = _measure(servers, "bench_import_overlap", _import(overlap_db, csv_path, reports))
        copy_db = servers.database("bench_import_copy")
        _records, copy_work = _copy(fresh_db, copy_db, CHUNK_ROWS)
        copy = _measure(servers, "bench_import_copy", copy_work)
        reference = _reference_year(servers, reports)
        results["phases"] = {
            "fresh": fresh.as_json(), "again": again.as_json(), "overlap": overlap.as_json(), "copy": copy.as_json(),
            "reference_year": reference.as_json(),
        }
        results["fresh_vs_copy"] = round(copy.wall_s / fresh.wall_s, 3) if fresh.wall_s > 0 else None
        results["fresh_vs_copy_postgres_cpu"] = (
            round(copy.postgres_cpu_s / fresh.postgres_cpu_s, 3) if fresh.postgres_cpu_s > 0 else None
        )
    finally:
        servers.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--boxes", type=int, default=8)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run_import_bench(args.csv or default_csv(args.boxes, args.days), args.boxes, args.days)
    if args.json:
        print(json.dumps(results))
        return
    show(import_table(results))


if __name__ == "__main__":
    main()
