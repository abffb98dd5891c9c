"""`citysense bench backfill`: a fleet's 24-hour flash queues replayed through the gateway.

After a day without network every box replays its queue oldest first in `batch` messages
(firmware/lib/device.py: up to 20 records, 2 KiB per message). This bench publishes exactly
that for every simulated box, as fast as the broker takes it, through the real gateway (QoS 1,
ack after commit, receipts as configured), and reports readings/s from the first publish to
the last row committed, beside asyncpg's raw COPY of the same rows in the same run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from devtools.bench.ingest_run import ROWS, machine_facts, register_devices
from devtools.bench.limits import copy_limit
from devtools.bench.loadgen import METRICS_PER_MESSAGE, QosOnePublisher, device_id, topic_for
from devtools.bench.profile import Profiler
from devtools.bench.servers import BenchServers, CpuMeter, GatewayGroup, with_children

log = logging.getLogger(__name__)

ITEMS_PER_BATCH = 20  # firmware/lib/flashqueue.py peek(max_items=20, max_bytes=2048)
_ITEM = b'{"seq":%d,"ts":%.3f,"m":{"pm1":%d,"pm25":%d,"pm10":%d,"t":%.1f,"rh":%.1f}}'


@dataclass(frozen=True)
class BackfillOptions:
    devices: int = 200
    hours: float = 24.0
    interval_s: float = 60.0
    profile: bool = False  # py-spy on the gateway while the queues replay

    @property
    def records_per_device(self) -> int:
        return int(self.hours * 3600 / self.interval_s)


def batch_payloads(index: int, start: float, records: int, interval_s: float) -> list[bytes]:
    """One box's queue as the firmware replays it: `{"v":1,"id":..,"batch":[...]}` of 20 records."""
    dev = device_id(index).encode()
    out = []
    for first in range(0, records, ITEMS_PER_BATCH):
        items = []
        for seq in range(first + 1, min(records, first + ITEMS_PER_BATCH) + 1):
            k = index * 7 + seq * 3
            items.append(_ITEM % (seq, start + seq * interval_s, 3 + k % 20, 5 + k % 40, 8 + k % 60,
                                  18.0 + (k % 90) / 10, 40.0 + (k % 400) / 10))
        out.append(b'{"v":1,"id":"%s","batch":[%s]}' % (dev, b",".join(items)))
    return out


def _publish_all(port: int, options: BackfillOptions, start: float) -> tuple[int, int, float]:
    """Every box's queue, interleaved box by box (as a fleet coming back online): sent, acked, CPU s."""
    queues = [batch_payloads(i, start, options.records_per_device, options.interval_s)
              for i in range(options.devices)]
    topics = [topic_for("citysense", device_id(i)).encode() for i in range(options.devices)]
    client = QosOnePublisher("127.0.0.1", port, f"bench-backfill-{int(start)}")
    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    order = [(d, q) for q in range(max(len(x) for x in queues)) for d in range(options.devices) if q < len(queues[d])]
    sent = 0
    while sent < len(order):
        due = min(len(order), client.acked + client.window, sent + 200)
        if due > sent:
            client.send([client.packet(topics[d], queues[d][q]) for d, q in order[sent:due]])
            sent = due
        client.read_acks(0.0 if sent - client.acked < client.window else 0.002)
    deadline = time.monotonic() + 120
    while client.acked < sent and time.monotonic() < deadline:
        client.read_acks(0.05)
    acked = client.acked
    client.close()
    return sent, acked, sum(proc.cpu_times()[:2]) - cpu0


def run_backfill(options: BackfillOptions) -> dict[str, Any]:
    servers = BenchServers(fsync=True)
    started = time.time()
    results: dict[str, Any] = {"kind": "backfill", "options": asdict(options), "machine": machine_facts()}
    try:
        results["machine"]["backend"] = servers.start_postgres()
        db = servers.database("bench_backfill")
        register_devices(db, options.devices)
        broker = servers.start_broker("backfill")
        gw = GatewayGroup(1, broker.url, db, servers.root)
        try:
            gw.wait_ready()
            expected = options.devices * options.records_per_device * METRICS_PER_MESSAGE
            meter = CpuMeter({
                "gateway": gw.processes, "broker": lambda: with_children(servers.broker_pid(broker)),
                "postgres": lambda: with_children(servers.postgres_pid()),
            })
            start_data = time.time() - options.hours * 3600 - 600  # the day before the box came back
            meter.start()
            profiler = (Profiler(gw.members[0].proc.pid, 8.0, servers.root / "gateway-profile.txt")
                        if options.profile else None)
            t0 = time.monotonic()
            sent, acked, pub_cpu = _publish_all(broker.port, options, start_data)
            deadline = time.monotonic() + 300
            while gw.metric(ROWS) < expected and time.monotonic() < deadline:
                time.sleep(0.1)
            seconds = time.monotonic() - t0
            cpu = meter.stop()
            stored = gw.metric(ROWS)
            if profiler is not None:
                results["profile"] = profiler.summary()
        finally:
            gw.stop()
            broker.stop()
        cpu["publisher"] = round(100 * pub_cpu / max(1e-9, seconds), 1)
        target = servers.database("bench_backfill_copy")
        limit = copy_limit(db, target, 5000 * METRICS_PER_MESSAGE)
        results["replay"] = {
            "messages": sent, "broker_acked": acked, "readings_expected": expected, "readings_stored": int(stored),
            "seconds": round(seconds, 2), "readings_s": round(stored / seconds, 1),
            "messages_s": round(sent / seconds, 1), "cpu_pct": cpu,
        }
        results["limit_copy"] = {"rows": limit.rows, "rows_s": round(limit.rows_s, 1)}
        results["ratio_vs_copy"] = round(stored / seconds / limit.rows_s, 3) if limit.rows_s else None
    finally:
        servers.close()
    results["elapsed_s"] = round(time.time() - started, 1)
    return results
