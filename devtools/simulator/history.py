"""The demo's past: days of the simulated fleet, stored through the gateway's own pipeline.

Each reading of the past becomes the payload-v1 message the device would have published, with
the time the gateway would have received it, and goes through `Pipeline.prepare` (decode,
validation, registry, calibration) and `BatchWriter.write` (stuck/spike flags, the merge), as
live messages do; there is no second INSERT path, so the history has the same flags and
calibrated values a gateway running all along would have stored. The aggregates are then
refreshed over the range written (`ingest.aggregates.refresh_range`).

History is sparser than live data (one reading per device and hour, against every 10 s live):
two weeks of 200 boxes are 83,000 messages, written in ~15-20 s on a 2-core machine (every 30 min
it was 20-40 s, every 15 min 48 s: the pipeline's decoding and calibration are the cost). A demo
restarted on the same data folder writes only what is missing: the time before its oldest
stored reading and the time since its newest (as if it had run all along).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import psycopg

from devtools.simulator.colocation import CAMPAIGN_START, COLOCATED_BOX, campaign_hours
from devtools.simulator.fleet import FleetModel
from gateway.anomaly_flags import STUCK_SPIKE_RULE
from gateway.calibration_step import Calibrator
from gateway.device_registry import DeviceRegistry
from gateway.mqtt_session import Inbound, MqttSession
from gateway.pipeline import Pipeline
from ingest.aggregates import refresh_range
from ingest.batch_writer import Batch, BatchWriter

HISTORY_STEP_S = 3600.0
MESSAGES_PER_BATCH = 5000  # the gateway's default CITYSENSE_BATCH_MAX_MESSAGES
RECEIVE_DELAY_S = 0.5  # a device's message reaches the gateway about this long after it measured


@dataclass(frozen=True)
class HistoryReport:
    """What `write_history` stored, and how long it took."""

    messages: int
    readings: int
    parking_events: int
    windows: tuple[tuple[float, float], ...]  # [start, end) Unix s, written in this order
    seconds: float


def missing_windows(
    database_url: str, device_id: str, start: float, end: float, step_s: float
) -> list[tuple[float, float]]:
    """The parts of [start, end) not covered by `device_id`'s stored pm25 readings: all of it for a
    new database; before the oldest and after the newest stored reading for one used before."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(time))::float8, extract(epoch FROM max(time))::float8 FROM readings "
            "WHERE device_id = %s AND metric = 'pm25' AND time >= to_timestamp(%s) AND time < to_timestamp(%s)",
            (device_id, start, end),
        ).fetchone()
    oldest, newest = row if row is not None else (None, None)
    if oldest is None or newest is None:
        return [(start, end)]
    windows = []
    if oldest - start >= step_s:
        windows.append((start, oldest - step_s / 2))
    if end - newest > step_s + 1.0:  # from the reading that would have come next (ts are whole seconds)
        windows.append((newest + step_s, end))
    return windows


def fleet_messages(model: FleetModel, start: float, end: float, step_s: float) -> Iterator[Inbound]:
    """The fleet's messages for [start, end), oldest first, as the gateway would have received them."""
    now = start
    while now < end:
        for kind, device_id, item in model.step(now, step_s):
            payload = orjson.dumps({"v": 1, "id": device_id, **item})
            yield Inbound(f"citysense/v1/{kind}/{device_id}/up", payload, 0, 0, now + RECEIVE_DELAY_S, 1)
        now += step_s


def campaign_messages(model: FleetModel, step_s: float) -> Iterator[Inbound]:
    """COLOCATED_BOX's readings during the co-location campaign (devtools/simulator/colocation.py):
    the air of each hour as the reference station measured it, read through the box's bias."""
    box = next((b for b in model.boxes if b.device_id == COLOCATED_BOX), None)
    if box is None:
        return
    per_hour = max(1, round(3600.0 / step_s))
    seq = 0
    for hour in campaign_hours():
        for k in range(per_hour):
            seq += 1
            ts = int(hour.start + k * 3600.0 / per_hour)
            m = box.measure(ts, hour.true_pm * (1.0 + box.rng.gauss(0, 0.04)), hour.t, hour.rh)
            payload = orjson.dumps({"v": 1, "id": box.device_id, "seq": seq, "ts": ts, "m": m})
            yield Inbound(f"citysense/v1/airbox/{box.device_id}/up", payload, 0, 0, ts + RECEIVE_DELAY_S, 1)


async def _store(database_url: str, messages: Iterator[Inbound]) -> tuple[int, int, int]:
    """Run `messages` through the gateway's pipeline and batch writer in batches, preparing the next
    batch while the last one commits (as the gateway's batcher and committer do)."""
    # The pipeline reads live messages from an MQTT session; here they come from the model, so the
    # session is only the pipeline's source and is never started.
    registry = DeviceRegistry(database_url, accept_unknown=True)
    calibrator = Calibrator(database_url)
    await registry.refresh()
    await calibrator.refresh()
    writer = BatchWriter(database_url, STUCK_SPIKE_RULE)
    pipeline = Pipeline(MqttSession("mqtt://127.0.0.1:1", "citysense-demo-history", []), writer, registry, calibrator)
    total = readings = parking = 0
    pending: asyncio.Task[tuple[int, int]] | None = None

    async def commit(batch_task: asyncio.Task[tuple[int, int]] | None) -> None:
        nonlocal readings, parking
        if batch_task is not None:
            r, p = await batch_task
            readings, parking = readings + r, parking + p

    async def write(batch: Batch) -> tuple[int, int]:
        result = await writer.write(batch)
        return result.readings_inserted, result.parking_inserted

    try:
        chunk: list[Inbound] = []
        for message in messages:
            chunk.append(message)
            if len(chunk) < MESSAGES_PER_BATCH:
                continue
            prepared = await pipeline.prepare(chunk)
            await commit(pending)
            pending = asyncio.create_task(write(prepared.batch))
            total += len(chunk)
            chunk = []
        if chunk:
            prepared = await pipeline.prepare(chunk)
            await commit(pending)
            pending = asyncio.create_task(write(prepared.batch))
            total += len(chunk)
        await commit(pending)
    finally:
        await writer.close()
    return total, readings, parking


def write_history(
    database_url: str, model: FleetModel, days: float, step_s: float = HISTORY_STEP_S, end: float | None = None
) -> HistoryReport:
    """Store the fleet's last `days` days before `end` (default now) that are not stored yet, and the
    co-location campaign; then refresh the aggregates over what was written."""
    started = time.monotonic()
    end = time.time() if end is None else end
    start = end - days * 86400.0
    probe = model.boxes[0].device_id if model.boxes else COLOCATED_BOX
    windows = missing_windows(database_url, probe, start, end, step_s)
    campaign_start = CAMPAIGN_START.timestamp()
    campaign = (campaign_start, campaign_start + 86400.0 * len(campaign_hours()) / 24)
    # fixed times: stored once, by the first start that has the box (a restart would only meet conflicts)
    with_campaign = any(b.device_id == COLOCATED_BOX for b in model.boxes) and missing_windows(
        database_url, COLOCATED_BOX, *campaign, step_s
    ) == [campaign]

    def everything() -> Iterator[Inbound]:
        if with_campaign:
            yield from campaign_messages(model, step_s)
        for lo, hi in windows:
            yield from fleet_messages(model, lo, hi, step_s)

    messages, readings, parking = asyncio.run(_store(database_url, everything()))
    with psycopg.connect(database_url, autocommit=True) as conn:
        for lo, hi in ([campaign] if with_campaign else []) + windows:
            refresh_range(conn, datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi + step_s, UTC))
    return HistoryReport(messages, readings, parking, tuple(windows), time.monotonic() - started)
