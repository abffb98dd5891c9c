"""Paced payload-v1 publishers, each in its own process with its own paho client.

Each process owns a disjoint set of devices and publishes their messages in turn at a
fixed rate, QoS 1. A message's `ts` is the time it was *scheduled* to be sent (ms
precision), not the time it left: a publisher that falls behind shows up as latency, so
the measurement does not hide its own stalls (no coordinated omission). Per device the
scheduled times are `devices / rate` seconds apart, so (device, metric, time) is unique.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

METRICS_PER_MESSAGE = 5
INFLIGHT_WINDOW = 2000  # QoS 1 messages sent but not yet PUBACKed, per process
_PAYLOAD = b'{"v":1,"id":"%s","seq":%d,"ts":%.3f,"m":{"pm1":%d,"pm25":%d,"pm10":%d,"t":%.1f,"rh":%.1f}}'


def device_id(index: int) -> str:
    return f"bench-{index:05d}"


def topic_for(prefix: str, device: str) -> str:
    return f"{prefix}/v1/airbox/{device}/up"


def payload(device: bytes, device_index: int, seq: int, ts: float) -> bytes:
    """One v1 message with five metrics; values vary per device and seq but stay in range."""
    k = device_index * 7 + seq * 3
    return _PAYLOAD % (
        device, seq, ts, 3 + k % 20, 5 + k % 40, 8 + k % 60, 18.0 + (k % 90) / 10, 40.0 + (k % 400) / 10,
    )


@dataclass(frozen=True)
class LoadSpec:
    """What one run of the generator publishes; `rate=None` publishes as fast as it can."""

    host: str
    port: int
    devices: int
    rate: float | None
    duration_s: float
    processes: int = 2
    topic_prefix: str = "citysense"
    seq_offset: int = 0  # lets a second phase continue each device's seq
    time_offset_s: float = 0.0  # shifts ts, e.g. to keep two phases' times apart


@dataclass
class LoadResult:
    published: int = 0
    acked: int = 0
    first_send: float = 0.0
    last_send: float = 0.0
    cpu_s: float = 0.0
    max_lag_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        span = self.last_send - self.first_send
        return self.published / span if span > 0 else 0.0


def _publisher(spec: LoadSpec, part: int, start_at: float, out: Any) -> None:
    """Child process: connect, wait for `start_at`, publish this part's devices, report."""
    mine = [i for i in range(spec.devices) if i % spec.processes == part]
    ids = [device_id(i).encode() for i in mine]
    topics = [topic_for(spec.topic_prefix, device_id(i)) for i in mine]
    rate = None if spec.rate is None else spec.rate / spec.processes
    total = int(rate * spec.duration_s) if rate is not None else 10**9
    acked = 0

    def on_publish(client: mqtt.Client, userdata: object, mid: int, rc: Any, props: Any) -> None:
        nonlocal acked
        acked += 1

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{part}-{int(start_at)}", protocol=mqtt.MQTTv311
    )
    client.max_inflight_messages_set(INFLIGHT_WINDOW)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    result = LoadResult()
    try:
        client.connect(spec.host, spec.port, keepalive=60)
        while not client.is_connected():
            client.loop(0.05)
        proc = psutil.Process()
        while time.time() < start_at:
            client.loop(min(0.05, max(0.0, start_at - time.time())))
        cpu0 = sum(proc.cpu_times()[:2])
        n = len(mine)
        sent = 0
        end_at = start_at + spec.duration_s
        result.first_send = time.time()
        while sent < total:
            now = time.time()
            if rate is None and now >= end_at:
                break
            due = total if rate is None else min(total, int((now - start_at) * rate) + 1)
            while sent < due and sent - acked < INFLIGHT_WINDOW:
                slot = sent % n
                seq = spec.seq_offset + sent // n + 1
                ts = (start_at + sent / rate if rate is not None else time.time()) + spec.time_offset_s
                client.publish(topics[slot], payload(ids[slot], mine[slot], seq, ts), qos=1)
                sent += 1
                if sent % 256 == 0:
                    client.loop(0.0)
            if rate is not None:
                result.max_lag_s = max(result.max_lag_s, now - (start_at + sent / rate))
                client.loop(max(0.0, min(0.005, start_at + sent / rate - time.time())))
            else:
                client.loop(0.0 if sent - acked < INFLIGHT_WINDOW else 0.002)
        result.last_send = time.time()
        deadline = time.monotonic() + 60
        while acked < sent and time.monotonic() < deadline:
            client.loop(0.05)
        result.cpu_s = sum(proc.cpu_times()[:2]) - cpu0
        result.published, result.acked = sent, acked
        if acked < sent:
            result.errors.append(f"publisher {part}: {sent - acked} messages not PUBACKed by the broker")
        client.disconnect()
    except OSError as exc:
        result.errors.append(f"publisher {part}: {exc}")
    out.put(result)


def run_load(spec: LoadSpec, start_at: float) -> LoadResult:
    """Publish `spec` from `spec.processes` child processes from `start_at` (wall time); block until done."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_publisher, args=(spec, p, start_at, out), daemon=True) for p in range(spec.processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=spec.duration_s + max(0.0, start_at - time.time()) + 120) for _ in procs]
    for p in procs:
        p.join(10)
    total = LoadResult()
    for r in results:
        total.published += r.published
        total.acked += r.acked
        total.cpu_s += r.cpu_s
        total.max_lag_s = max(total.max_lag_s, r.max_lag_s)
        total.errors.extend(r.errors)
    total.first_send = min(r.first_send for r in results)
    total.last_send = max(r.last_send for r in results)
    return total


class BackgroundLoad:
    """`run_load` in a thread, so the caller can sample meters while it runs."""

    def __init__(self, spec: LoadSpec, start_delay_s: float = 1.5) -> None:
        import threading  # noqa: PLC0415 - only the background form needs it

        self.spec = spec
        self.result: LoadResult | None = None
        self.started_at = time.time() + start_delay_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.result = run_load(self.spec, self.started_at)

    def join(self) -> LoadResult:
        self._thread.join()
        assert self.result is not None
        return self.result
