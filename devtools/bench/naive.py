"""The naive baseline: a paho subscriber doing one autocommit INSERT (5 rows) per message.

This is what a first version of a gateway usually is; the gateway must beat it by a wide
margin to justify its batching. It parses the JSON and nothing else (no validation).
"""

from __future__ import annotations

import multiprocessing as mp
import select
import socket
import time
from typing import Any, cast

import orjson
import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from devtools.bench.limits import SubscriberResult

_INSERT = (
    "INSERT INTO readings (time, device_id, metric, raw, value, flags) VALUES "
    + ", ".join(["(to_timestamp(%s), %s, %s, %s, %s, 0)"] * 5)
)


def _naive_subscriber(
    host: str, port: int, topic: str, database_url: str, window_s: float, ready: Any, out: Any
) -> None:
    conn = psycopg.connect(database_url, autocommit=True)
    count = rows = 0
    first = last = 0.0

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count, rows, first, last
        doc = orjson.loads(msg.payload)
        params: list[object] = []
        for name, value in doc["m"].items():
            params += [doc["ts"], doc["id"], name, value, value]
        if len(params) == 25:
            conn.execute(_INSERT, params)
            rows += 5
        last = time.time()
        if count == 0:
            first = last
        count += 1

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive", protocol=mqtt.MQTTv311)
    client.on_message = on_message
    cpu = pump(
        client, host, port, topic, ready, lambda now: bool(count) and (now - first > window_s or now - last > 2.0),
        lambda: count,
    )
    conn.close()
    out.put(SubscriberResult(count, first, last, cpu, rows))


def pump(
    client: mqtt.Client, host: str, port: int, topic: str, ready: Any, done: Any, seen: Any,
    after_read: Any = None,
) -> float:
    """Subscribe at QoS 1 and read until `done(now)`; returns the CPU seconds spent reading.

    paho's `loop()` and `loop_read()` read one packet per call; like the gateway, this calls
    `loop_read` while it still yields messages (`seen()` counts them), paho at its fastest.
    """
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    client.connect(host, port, keepalive=60)
    while not ready.is_set():
        client.loop(0.05)
    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    sock = cast(socket.socket, client.socket())
    hard_stop = time.time() + 600
    next_misc = time.time() + 1
    while True:
        readable, _, _ = select.select([sock], [], [], 0.05)
        for _ in range(2000 if readable else 0):
            before = seen()
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or seen() == before:
                break
        if after_read is not None:
            after_read(client)
        if client.want_write():  # PUBACKs queued while a callback held paho's lock
            client.loop_write()
        now = time.time()
        if done(now) or now > hard_stop:
            break
        if now > next_misc:
            client.loop_misc()
            next_misc = now + 1
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    client.disconnect()
    return cpu


class NaiveSubscriber:
    """The naive baseline in its own process."""

    def __init__(self, host: str, port: int, topic: str, database_url: str, window_s: float) -> None:
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        self._out = ctx.Queue()
        self.process = ctx.Process(
            target=_naive_subscriber, args=(host, port, topic, database_url, window_s, ready, self._out), daemon=True
        )
        self.process.start()
        if not ready.wait(30):
            raise TimeoutError("naive subscriber did not subscribe within 30 s")

    def result(self, timeout: float) -> SubscriberResult:
        res: SubscriberResult = self._out.get(timeout=timeout)
        self.process.join(10)
        return res
