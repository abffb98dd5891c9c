"""CPU per message of each stage of the gateway's write path, measured in one process.

A bounded timing script (seconds), not a test and not `citysense bench`:
`python -m devtools.bench.write_path_cost [messages] [batch_messages]`. It starts its own
PostgreSQL (fsync off), registers the load generator's boxes as the bench does (PMS5003, so
the default calibration applies), and feeds `messages` payload-v1 messages of
`devtools.bench.loadgen` (five metrics each) through the functions the gateway runs, batch
by batch, timing each stage with `time.process_time` (this process's CPU only):

- decode: `gateway.codecs.decode` of every message (JSON, validation, row tuples);
- prepare: the pipeline's whole `prepare` (decode, registry, flag assembly, calibration);
  "registry + assembly" is prepare less decode and calibration;
- calibration: `Calibrator.rh_index` + `Calibrator.apply` on the batch's rows;
- flags: `series_of` + `flag_new_rows` (the stuck/spike rule) on the batch's rows, windows carried over;
- latest rows: `latest_readings.newest_per_series` of the batch;
- write: `BatchWriter.write` with the stuck/spike rule, client CPU (it includes flags and
  latest rows; the rest is the COPY records' encoding and the statements' arguments) and wall time;
- write (PostgreSQL backend): the CPU the writer's server process spent in that write (user +
  system, read from /proc by psutil): the database's share of each message, without the
  checkpointer and other background processes;
- latest upsert: `latest_readings.upsert_newest` alone in a transaction (the batch's rows a
  millisecond later), wall ms per batch and client CPU, against a warm latest_readings table
  (every series moves forward in every batch).

The collector is tuned as the gateway tunes it (`gateway.pipeline.collect_garbage_per_batch`);
"cyclic GC" is the CPU its collections took during each batch's stages (a `gc.callbacks` clock),
already counted inside the stage that happened to trigger them.
Every figure is given as the median and the least over the timed batches (the first batch warms
up and is not counted).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import asyncpg
import psutil

from contracts.records import ReadingRow
from devtools.bench.ingest_run import register_devices
from devtools.bench.loadgen import METRICS_PER_MESSAGE, device_id, payload, topic_for
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port
from gateway.anomaly_flags import STUCK_SPIKE_RULE
from gateway.calibration_step import Calibrator
from gateway.codecs import decode
from gateway.device_registry import DeviceRegistry
from gateway.mqtt_session import Inbound, MqttSession
from gateway.pipeline import CHUNK_ROWS, Pipeline, collect_garbage_per_batch
from ingest import latest_readings, series_windows
from ingest.batch_writer import BatchWriter
from ingest.migrate import migrate
from ingest.series_windows import DeviceWindows

DEVICES = 1000
SPACING_S = 10.0  # per device, the time between two messages


def messages(count: int, devices: int = DEVICES) -> list[Inbound]:
    """`count` messages of `devices` boxes in turn, each box's `SPACING_S` apart, ending a minute ago."""
    rounds = -(-count // devices)
    start = time.time() - 60.0 - rounds * SPACING_S
    out: list[Inbound] = []
    for n in range(count):
        index, seq = n % devices, n // devices
        ts = start + seq * SPACING_S + index * SPACING_S / devices
        device = device_id(index)
        out.append(Inbound(topic_for("citysense", device), payload(device.encode(), index, seq, ts), n % 65535 + 1,
                           1, ts + 0.05, 1))
    return out


class StageClock:
    """CPU seconds per stage and batch (process_time), and wall seconds where asked."""

    def __init__(self) -> None:
        self.cpu: dict[str, list[float]] = defaultdict(list)
        self.wall: dict[str, list[float]] = defaultdict(list)
        self.collecting = 0.0  # CPU seconds in the cyclic collector, summed
        self._collection_started = 0.0

    def on_collection(self, phase: str, _info: dict[str, int]) -> None:
        """A `gc.callbacks` hook: adds each collection's CPU time to `collecting`."""
        if phase == "start":
            self._collection_started = time.process_time()
        else:
            self.collecting += time.process_time() - self._collection_started

    def us_per_message(self, stage: str, per_batch: int) -> tuple[float, float]:
        """(median, least) CPU µs per message over the timed batches: on a loaded machine the
        least is the steadier figure (other processes only ever add to it)."""
        timed = self.cpu[stage][1:]
        return statistics.median(timed) / per_batch * 1e6, min(timed) / per_batch * 1e6


async def measure(url: str, work: list[list[Inbound]]) -> StageClock:
    clock = StageClock()
    registry = DeviceRegistry(url, accept_unknown=False)
    await registry.refresh()
    calibrator = Calibrator(url)
    await calibrator.refresh()
    writer = BatchWriter(url, STUCK_SPIKE_RULE)
    pipeline = Pipeline(MqttSession("mqtt://127.0.0.1:9", "write-path-cost", []), writer, registry, calibrator)
    stored: dict[str, DeviceWindows] = {}
    conn = await asyncpg.connect(url)
    await conn.execute(latest_readings.STAGING_DDL)
    collect_garbage_per_batch()  # as the gateway does after start-up
    backend: psutil.Process | None = None
    gc.callbacks.append(clock.on_collection)
    try:
        for batch_messages in work:
            collected = clock.collecting
            t0 = time.process_time()
            for m in batch_messages:
                decode(m.topic, m.payload, m.received_at)
            t1 = time.process_time()
            prepared = await pipeline.prepare(batch_messages)
            t2 = time.process_time()
            rows = prepared.batch.readings
            rh_at = calibrator.rh_index(rows)
            for start in range(0, len(rows), CHUNK_ROWS):
                calibrator.apply(rows[start : start + CHUNK_ROWS], rh_at)
            t3 = time.process_time()
            groups, _repeated = series_windows.series_of(STUCK_SPIKE_RULE, rows)
            _flagged, plan = series_windows.flag_new_rows(STUCK_SPIKE_RULE, rows, groups, stored, copy_windows=False)
            stored.update(series_windows.devices_to_save(stored, plan.windows))
            t4 = time.process_time()
            latest_readings.newest_per_series(rows)
            t5 = time.process_time()
            if backend is None:
                await writer.connect()
                backend = psutil.Process(await _writer_backend(conn))
            b0 = sum(backend.cpu_times()[:2])
            w0 = time.perf_counter()
            await writer.write(prepared.batch)
            w1 = time.perf_counter()
            t6 = time.process_time()
            clock.cpu["write (PostgreSQL backend)"].append(sum(backend.cpu_times()[:2]) - b0)
            clock.cpu["cyclic GC"].append(clock.collecting - collected)
            shifted: list[ReadingRow] = [(r[0] + 0.001, *r[1:]) for r in rows]  # type: ignore[misc]
            u0, c0 = time.perf_counter(), time.process_time()
            async with conn.transaction():
                await latest_readings.upsert_newest(conn, shifted)
            u1, c1 = time.perf_counter(), time.process_time()
            for stage, took in (("decode", t1 - t0), ("prepare", t2 - t1), ("calibration", t3 - t2),
                                ("flags", t4 - t3), ("latest rows", t5 - t4), ("write", t6 - t5),
                                ("latest upsert (client)", c1 - c0)):
                clock.cpu[stage].append(took)
            clock.wall["write"].append(w1 - w0)
            clock.wall["latest upsert"].append(u1 - u0)
    finally:
        gc.callbacks.remove(clock.on_collection)
        await conn.close()
        await writer.close()
    return clock


async def _writer_backend(conn: asyncpg.Connection) -> int:
    """The server process of the batch writer's connection: the one client backend besides `conn`
    (the registry and the calibrator close theirs after loading)."""
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        " AND datname = current_database()"
    )
    if len(pids) != 1:
        raise RuntimeError(f"expected the batch writer's backend alone, found {len(pids)} client backends")
    return int(pids[0][0])


def report(clock: StageClock, per_batch: int) -> None:
    us = {stage: clock.us_per_message(stage, per_batch) for stage in clock.cpu}
    us["registry + assembly"] = tuple(  # type: ignore[assignment]
        p - d - c for p, d, c in zip(us["prepare"], us["decode"], us["calibration"], strict=True))
    us["write less flags, latest rows"] = tuple(  # type: ignore[assignment]
        w - f - la for w, f, la in zip(us["write"], us["flags"], us["latest rows"], strict=True))
    us["prepare + write (gateway total)"] = tuple(  # type: ignore[assignment]
        p + w for p, w in zip(us["prepare"], us["write"], strict=True))
    print(f"{len(clock.cpu['decode']) - 1} timed batches of {per_batch} messages "
          f"({per_batch * METRICS_PER_MESSAGE} readings), {DEVICES} devices; CPU µs per message, median and least:")
    for stage in ("decode", "registry + assembly", "calibration", "prepare", "flags", "latest rows",
                  "write less flags, latest rows", "write", "prepare + write (gateway total)",
                  "latest upsert (client)", "write (PostgreSQL backend)", "cyclic GC"):
        print(f"  {stage:32s} {us[stage][0]:7.2f} {us[stage][1]:7.2f}")
    for stage, label in (("write", "write wall ms per batch"), ("latest upsert", "latest upsert wall ms per batch")):
        timed = clock.wall[stage][1:]
        print(f"  {label:32s} {statistics.median(timed) * 1000:7.1f} {min(timed) * 1000:7.1f}")


def main(count: int, per_batch: int) -> None:
    inbound = messages(count)
    work = [inbound[i : i + per_batch] for i in range(0, len(inbound), per_batch)]
    with tempfile.TemporaryDirectory(prefix="citysense-wpcost-") as tmp:
        server = LocalPostgres(Path(tmp) / "data", free_port(), fsync=False)
        server.start()
        try:
            url = server.create_database("wpcost")
            migrate(url)
            register_devices(url, DEVICES)
            clock = asyncio.run(measure(url, work))
        finally:
            server.stop()
    report(clock, per_batch)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000, int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
