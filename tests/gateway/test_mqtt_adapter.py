"""The gateway's MQTT adapter against a real Mosquitto: a persistent session's backlog
arrives in the same reads as CONNACK, through the adapter's own PUBLISH parser, and every
message it acknowledges is gone from the session for good."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.mqtt_adapter import Inbound, MqttSource
from tests.fault_tools import message_count, publish, v1_stream

TOPIC = "citysense/v1/+/+/up"


async def _session(url: str, client_id: str, want: int, ack: bool, timeout: float = 20.0) -> list[Inbound]:
    """Connect with the persistent session, read up to `want` messages, ack them or not."""
    source = MqttSource(url, client_id, [TOPIC], max_queue=100_000)
    stop = asyncio.Event()
    runner = asyncio.create_task(source.run(stop))
    got: list[Inbound] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await asyncio.wait_for(source.connected.wait(), 10)
    if not want:
        await asyncio.sleep(0.5)  # the SUBACK: the session now holds the subscription
    while len(got) < want and loop.time() < deadline:
        await source.wait_for_data(0.2)
        batch = source.take(5000)
        if ack:
            assert source.ack(batch) == len(batch)
        got.extend(batch)
    stop.set()
    await runner
    await source.close()
    return got


def test_backlog_read_with_connack_is_acknowledged_exactly_once(mosquitto: Any) -> None:
    client_id = "adapter-backlog"
    assert asyncio.run(_session(mosquitto.url, client_id, 0, ack=True, timeout=1.0)) == []  # creates the session
    stream = v1_stream(devices=10, per_device=1500, prefix="ad")
    total = message_count(stream)
    publish(mosquitto.port, stream)  # queued by the broker for the offline session
    first = asyncio.run(_session(mosquitto.url, client_id, total, ack=True))
    assert len(first) == total
    assert len({(m.topic, m.payload) for m in first}) == total
    assert all(m.qos == 1 and m.generation == 1 for m in first)
    # acknowledged means gone: a new connection on the same session gets nothing back
    assert asyncio.run(_session(mosquitto.url, client_id, 1, ack=True, timeout=3.0)) == []


def test_unacknowledged_messages_come_back_on_the_next_connection(mosquitto: Any) -> None:
    client_id = "adapter-redeliver"
    asyncio.run(_session(mosquitto.url, client_id, 0, ack=True, timeout=1.0))
    stream = v1_stream(devices=4, per_device=500, prefix="ar")
    total = message_count(stream)
    publish(mosquitto.port, stream)
    unacked = asyncio.run(_session(mosquitto.url, client_id, total, ack=False))
    again = asyncio.run(_session(mosquitto.url, client_id, total, ack=True))
    assert len(unacked) == len(again) == total
    assert {(m.topic, m.payload) for m in again} == {(m.topic, m.payload) for m in unacked}
