"""The two ceilings the gateway is compared with, measured on the same machine and rows.

- `copy_limit`: the rows the gateway stored, written again with nothing but asyncpg's
  binary COPY into an empty `readings` of another database, one transaction per batch of
  the gateway's size (the database's share of the work, with no decoding at all).
- pass-through: the same payload stream through Mosquitto to a Python paho subscriber at
  QoS 1 that only counts and acknowledges: the gateway's own MQTT session with nothing
  behind it (the broker's and the client library's share).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import psutil

COLUMNS = ["time", "device_id", "metric", "raw", "value", "flags", "calibration_id"]


@dataclass
class CopyLimit:
    rows: int
    batch_rows: int
    seconds: float

    @property
    def rows_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


async def _copy(source_url: str, target_url: str, batch_rows: int, max_rows: int) -> CopyLimit:
    src = await asyncpg.connect(source_url)
    try:
        records = [
            tuple(r)
            for r in await src.fetch(
                f"SELECT {', '.join(COLUMNS)} FROM readings ORDER BY time LIMIT $1", max_rows
            )
        ]
    finally:
        await src.close()
    dst = await asyncpg.connect(target_url)
    try:
        started = time.perf_counter()
        for i in range(0, len(records), batch_rows):
            async with dst.transaction():
                await dst.copy_records_to_table("readings", records=records[i : i + batch_rows], columns=COLUMNS)
        seconds = time.perf_counter() - started
    finally:
        await dst.close()
    return CopyLimit(len(records), batch_rows, seconds)


def copy_limit(source_url: str, target_url: str, batch_rows: int, max_rows: int = 3_000_000) -> CopyLimit:
    """Time COPY of the source's readings into the (empty, same-schema) target, batch by batch."""
    return asyncio.run(_copy(source_url, target_url, batch_rows, max_rows))


@dataclass
class SubscriberResult:
    messages: int
    first: float
    last: float
    cpu_s: float
    extra: int = 0  # rows written, for subscribers that write

    @property
    def rate(self) -> float:
        span = self.last - self.first
        return (self.messages - 1) / span if span > 0 and self.messages > 1 else 0.0


def _counting_subscriber(host: str, port: int, topic: str, window_s: float, ready: Any, out: Any) -> None:
    """Child process: the gateway's own MQTT session, acknowledging what it reads at once.

    Same session as the gateway (MQTT 5, persistent, receive maximum 65535, manual acks,
    uvloop when installed) and nothing else: no decoding, no database. Counts QoS 1
    messages for `window_s` from the first one, or until 2 s without one.
    """
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_count_with_gateway_session(host, port, topic, window_s, ready, out))


async def _count_with_gateway_session(host: str, port: int, topic: str, window_s: float, ready: Any, out: Any) -> None:
    from gateway.mqtt_session import MqttSession  # noqa: PLC0415 - the child process needs it, the parent not

    source = MqttSession(f"mqtt://{host}:{port}", "bench-counter", [topic])
    source.start()
    await source.subscribed.wait()
    ready.set()
    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    count = 0
    first = last = 0.0
    while True:
        await source.wait_for_data(0.2)
        messages = source.take(100_000)
        now = time.time()
        if messages:
            if not count:
                first = now
            count += len(messages)
            last = now
            source.ack(messages)
        if count and (now - first > window_s or now - last > 2.0):
            break
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    await source.close()
    out.put(SubscriberResult(count, first, last, cpu))


class CountingSubscriber:
    """The pass-through subscriber in its own process."""

    def __init__(self, host: str, port: int, topic: str, window_s: float) -> None:
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        self._out = ctx.Queue()
        self.process = ctx.Process(
            target=_counting_subscriber, args=(host, port, topic, window_s, ready, self._out), daemon=True
        )
        self.process.start()
        if not ready.wait(30):
            raise TimeoutError("pass-through subscriber did not subscribe within 30 s")

    def result(self, timeout: float) -> SubscriberResult:
        res: SubscriberResult = self._out.get(timeout=timeout)
        self.process.join(10)
        return res
