"""gateway/mqtt_session.py against a real Mosquitto, under MQTT 3.1.1 and 5: the persistent
session keeps QoS 1 messages while the gateway is away, a PUBACK goes out only when the
caller says so (and never for a previous connection), reading stops at the queue bound,
keep-alive holds an idle link, the session comes back after the broker restarts, and it
speaks TLS with a password. Messages are published by mosquitto_pub (tests/fault_tools.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from pathlib import Path

import pytest

from devtools.local_broker import LocalMosquitto
from devtools.ports import free_port
from gateway.mqtt_session import Inbound, MqttSession
from tests.fault_tools import message_count, publish, v1_stream

TOPICS = ["citysense/v1/+/+/up"]
PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])


async def subscribe_once(url: str, client_id: str, protocol: str) -> None:
    """Create the persistent session (and its subscription) at the broker, then leave."""
    async with MqttSession(url, client_id, TOPICS, protocol=protocol) as session:
        await asyncio.wait_for(session.subscribed.wait(), 10)


async def receive(session: MqttSession, want: int, *, ack: bool, timeout: float = 20.0) -> list[Inbound]:
    """Take messages until `want` arrived or `timeout` passed; PUBACK each batch if `ack`."""
    got: list[Inbound] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < want and loop.time() < deadline:
        await session.wait_for_data(0.2)
        batch = session.take(5000)
        if ack:
            assert session.ack(batch) == sum(m.qos == 1 for m in batch)  # QoS 0 has nothing to acknowledge
        got.extend(batch)
    return got


def keys(messages: list[Inbound]) -> set[tuple[str, bytes]]:
    return {(m.topic, m.payload) for m in messages}


@PROTOCOLS
async def test_persistent_session_keeps_qos1_messages_while_the_gateway_is_away(
    mosquitto: LocalMosquitto, protocol: str
) -> None:
    await subscribe_once(mosquitto.url, "s-away", protocol)
    stream = v1_stream(devices=10, per_device=300, prefix="aw")
    total = message_count(stream)
    await asyncio.to_thread(publish, mosquitto.port, stream)  # nobody connected: the broker queues them
    async with MqttSession(mosquitto.url, "s-away", TOPICS, protocol=protocol) as session:
        got = await receive(session, total, ack=True)
        assert session.session_present
    assert len(got) == total and len(keys(got)) == total
    assert all(m.qos == 1 and m.generation == 1 for m in got)
    async with MqttSession(mosquitto.url, "s-away", TOPICS, protocol=protocol) as session:  # acked = gone
        await asyncio.wait_for(session.subscribed.wait(), 10)
        assert await receive(session, 1, ack=True, timeout=1.5) == []


@PROTOCOLS
async def test_only_the_messages_acknowledged_are_gone_the_rest_come_back_after_reconnect(
    mosquitto: LocalMosquitto, protocol: str
) -> None:
    await subscribe_once(mosquitto.url, "s-half", protocol)
    stream = v1_stream(devices=4, per_device=250, prefix="hf")
    total = message_count(stream)
    await asyncio.to_thread(publish, mosquitto.port, stream)
    async with MqttSession(mosquitto.url, "s-half", TOPICS, protocol=protocol) as session:
        got = await receive(session, total, ack=False)
        acked, kept = got[::2], got[1::2]
        assert session.ack(acked) == len(acked)
    assert len(got) == total
    async with MqttSession(mosquitto.url, "s-half", TOPICS, protocol=protocol) as session:
        again = await receive(session, len(kept), ack=True)
        assert await receive(session, 1, ack=True, timeout=1.0) == []  # and nothing more
    assert keys(again) == keys(kept)


@PROTOCOLS
async def test_after_a_broker_restart_the_session_reconnects_and_acks_of_the_old_connection_are_not_sent(
    tmp_path: Path, protocol: str
) -> None:
    broker = LocalMosquitto(tmp_path / "mosquitto", free_port())
    broker.start()
    try:
        stream = v1_stream(devices=2, per_device=100, prefix="rs")
        total = message_count(stream)
        async with MqttSession(broker.url, "s-restart", TOPICS, protocol=protocol) as session:
            await asyncio.wait_for(session.subscribed.wait(), 10)
            await asyncio.to_thread(publish, broker.port, stream)
            first = await receive(session, total, ack=False)
            assert len(first) == total and {m.generation for m in first} == {1}
            await asyncio.to_thread(broker.restart)  # persistence on: the session and its in-flight survive
            await asyncio.wait_for(session.subscribed.wait(), 30)
            assert session.generation == 2 and session.session_present
            assert session.ack(first) == 0  # their packet ids belong to the dead connection
            again = await receive(session, total, ack=True)
            assert {m.generation for m in again} == {2}
            assert keys(again) == keys(first)  # redelivered on the new connection
        async with MqttSession(broker.url, "s-restart", TOPICS, protocol=protocol) as session:
            await asyncio.wait_for(session.subscribed.wait(), 10)
            assert await receive(session, 1, ack=True, timeout=1.0) == []
    finally:
        broker.stop()


@PROTOCOLS
async def test_reading_stops_at_the_queue_bound_and_the_broker_keeps_the_rest(
    mosquitto: LocalMosquitto, protocol: str
) -> None:
    await subscribe_once(mosquitto.url, "s-bound", protocol)
    stream = v1_stream(devices=10, per_device=300, prefix="bd")
    total = message_count(stream)
    await asyncio.to_thread(publish, mosquitto.port, stream)
    bound = 100
    async with MqttSession(mosquitto.url, "s-bound", TOPICS, protocol=protocol, max_queue=bound) as session:
        await asyncio.wait_for(session.connected.wait(), 10)
        await asyncio.sleep(1.0)  # far longer than reading 3,000 small messages takes
        assert len(session.queue) == bound
        got: list[Inbound] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(got) < total and loop.time() < deadline:
            await session.wait_for_data(0.2)
            assert len(session.queue) <= bound
            batch = session.take(30)  # slower than the broker: the queue refills to its bound
            session.ack(batch)
            got.extend(batch)
            await asyncio.sleep(0.001)
    assert len(got) == total and len(keys(got)) == total


@PROTOCOLS
async def test_keepalive_pings_hold_an_idle_connection(mosquitto: LocalMosquitto, protocol: str) -> None:
    # Mosquitto drops a client that sends nothing for 1.5 keep-alive intervals
    async with MqttSession(mosquitto.url, "s-idle", TOPICS, protocol=protocol, keepalive_s=1) as session:
        await asyncio.wait_for(session.subscribed.wait(), 10)
        await asyncio.sleep(4.0)
        assert session.connected.is_set() and session.generation == 1
        stream = v1_stream(devices=1, per_device=5, prefix="ka")
        await asyncio.to_thread(publish, mosquitto.port, stream)
        assert len(await receive(session, 5, ack=True, timeout=5)) == 5
        assert session.generation == 1


async def test_a_broker_that_stops_answering_pings_is_left_and_reconnected() -> None:
    """A peer that answers CONNECT and SUBSCRIBE, then goes silent (what a half-open TCP
    connection looks like; Mosquitto itself always answers)."""
    connections = 0

    async def silent_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readexactly(2)  # CONNECT's first bytes; its length fits one byte here
        writer.write(b"\x20\x03\x00\x00\x00")
        await asyncio.sleep(0.2)
        data = await reader.read(4096)  # SUBSCRIBE
        writer.write(b"\x90\x04" + data[data.index(b"\x82") + 2 :][:2] + b"\x00\x01")
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):  # PINGREQs, never answered
                pass
        writer.close()

    server = await asyncio.start_server(silent_broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with MqttSession(f"mqtt://127.0.0.1:{port}", "s-silent", TOPICS, keepalive_s=1) as session:
        await asyncio.wait_for(session.subscribed.wait(), 5)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        while connections < 2 and loop.time() < deadline:
            await asyncio.sleep(0.1)
        assert connections >= 2  # dropped after ~1.5 s of silence, and connected again
    server.close()
    await server.wait_closed()


@PROTOCOLS
async def test_publish_at_qos_1_returns_on_the_brokers_puback_and_qos_0_is_sent(
    mosquitto: LocalMosquitto, protocol: str
) -> None:
    async with MqttSession(mosquitto.url, "s-pub", ["rx/#"], protocol=protocol) as session:
        await asyncio.wait_for(session.subscribed.wait(), 10)
        await asyncio.wait_for(
            asyncio.gather(*(session.publish(f"rx/{i}", b"r%d" % i, qos=1) for i in range(50))), 10
        )
        await session.publish("rx/zero", b"q0", qos=0)
        got = await receive(session, 51, ack=True, timeout=10)
    assert {(m.topic, m.payload) for m in got} == {(f"rx/{i}", b"r%d" % i) for i in range(50)} | {("rx/zero", b"q0")}


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI): (cert, key, password file)."""
    cert, key, passwords = directory / "cert.pem", directory / "key.pem", directory / "passwords"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "gw", "s3cret"], check=True, capture_output=True)
    return cert, key, passwords


async def test_mqtts_with_a_password_connects_and_a_wrong_password_is_refused(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    cert, key, passwords = _tls_files(tmp_path)
    tls_port = free_port()
    broker = LocalMosquitto(
        tmp_path / "mosquitto", free_port(),
        extra_config=(
            f"allow_anonymous false\npassword_file {passwords}\n"
            f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
        ),
    )
    broker.start()
    context = ssl.create_default_context(cafile=str(cert))
    try:
        for protocol in ("3.1.1", "5"):
            url = f"mqtts://gw:s3cret@127.0.0.1:{tls_port}"
            async with MqttSession(url, f"s-tls-{protocol}", ["rx/#"], protocol=protocol, ssl_context=context) as s:
                await asyncio.wait_for(s.subscribed.wait(), 15)
                await asyncio.wait_for(s.publish("rx/tls", b"sealed"), 5)
                got = await receive(s, 1, ack=True, timeout=5)
                assert [(m.topic, m.payload) for m in got] == [("rx/tls", b"sealed")]
        wrong = f"mqtts://gw:nope@127.0.0.1:{tls_port}"
        async with MqttSession(wrong, "s-tls-wrong", ["rx/#"], ssl_context=context) as refused:
            await asyncio.sleep(1.5)
            assert not refused.connected.is_set()
    finally:
        broker.stop()


async def test_a_shared_subscription_splits_the_stream_between_two_sessions(mosquitto: LocalMosquitto) -> None:
    shared = [f"$share/gw/{t}" for t in TOPICS]
    stream = v1_stream(devices=10, per_device=100, prefix="sh")
    total = message_count(stream)
    async with (
        MqttSession(mosquitto.url, "s-share-a", shared) as a,
        MqttSession(mosquitto.url, "s-share-b", shared) as b,
    ):
        await asyncio.wait_for(asyncio.gather(a.subscribed.wait(), b.subscribed.wait()), 10)
        await asyncio.to_thread(publish, mosquitto.port, stream)
        got: list[Inbound] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(got) < total and loop.time() < deadline:
            for session in (a, b):
                await session.wait_for_data(0.05)
                batch = session.take(5000)
                session.ack(batch)
                got.extend(batch)
    assert len(got) == total and len(keys(got)) == total

