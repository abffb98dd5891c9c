"""The MQTT adapter's reading paths against a scripted broker on loopback: a burst far larger
than one receive chunk and than the queue bound, so packets are cut by chunk ends, reading
pauses with bytes still buffered and resumes, and bursts stop at their bound; under MQTT
3.1.1 and 5. Every message arrives once, in order, and every PUBACK goes back in order."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.mqtt_adapter import RECV_CHUNK, MqttSource
from tests.mqtt_packets import publish

N = 6000


def _publish(i: int, mqtt5: bool) -> bytes:
    topic = f"citysense/v1/airbox/box-{i % 37:03d}/up".encode()
    payload = b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 200))  # lengths cross the 128-byte varint step
    return publish(topic, payload, 1, i % 65535 + 1, b"" if mqtt5 else None)


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    command = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return command, await reader.readexactly(length)


class ScriptedBroker:
    """CONNACK, SUBACK, then N QoS 1 PUBLISH packets in one write; records the PUBACKs."""

    def __init__(self, mqtt5: bool) -> None:
        self.mqtt5 = mqtt5
        self.acked: list[int] = []
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command, _ = await _read_packet(reader)
        assert command == 0x10
        writer.write(b"\x20\x03\x00\x00\x00" if self.mqtt5 else b"\x20\x02\x00\x00")
        command, body = await _read_packet(reader)
        assert command & 0xF0 == 0x80
        mid = body[:2]
        writer.write((b"\x90\x04" + mid + b"\x00\x01") if self.mqtt5 else (b"\x90\x03" + mid + b"\x01"))
        stream = b"".join(_publish(i, self.mqtt5) for i in range(N))
        assert len(stream) > 2 * RECV_CHUNK
        writer.write(stream)
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while len(self.acked) < N:
                command, body = await _read_packet(reader)
                if command == 0x40:
                    self.acked.append(int.from_bytes(body[:2], "big"))
        self.done.set()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while (await _read_packet(reader))[0] != 0xE0:  # until DISCONNECT
                pass
        writer.close()


async def _run(protocol: str, max_queue: int) -> tuple[list[bytes], list[int]]:
    broker = ScriptedBroker(protocol == "5")
    server = await asyncio.start_server(broker.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = MqttSource(f"mqtt://127.0.0.1:{port}", "reader-test", ["citysense/v1/+/+/up"], protocol=protocol,
                        max_queue=max_queue)
    stop = asyncio.Event()
    runner = asyncio.create_task(source.run(stop))
    payloads: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(payloads) < N and loop.time() < deadline:
        await source.wait_for_data(0.2)
        batch = source.take(300)  # slower than the reader: the queue fills and reading pauses
        payloads.extend(m.payload for m in batch)
        source.ack(batch)
        await asyncio.sleep(0.001)
    await asyncio.wait_for(broker.done.wait(), 10)
    stop.set()
    await runner
    await source.close()
    server.close()
    await server.wait_closed()
    return payloads, broker.acked


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("max_queue", [500, 100_000])  # reading pauses when full / stops at its burst bound
def test_a_burst_larger_than_chunk_and_queue_arrives_once_in_order_and_is_acked_in_order(
    protocol: str, max_queue: int
) -> None:
    payloads, acked = asyncio.run(_run(protocol, max_queue))
    assert [int(p.split(b",")[0][5:]) for p in payloads] == list(range(N))
    assert acked == [i % 65535 + 1 for i in range(N)]
