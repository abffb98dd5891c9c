"""Per-device credentials and ACLs, enforced by a real Mosquitto from files we generate."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devtools.local_broker import LocalMosquitto
from devtools.ports import free_port
from ingest.broker_files import mosquitto_hash, verify, write_broker_files
from ingest.device_store import register_device


def _client(port: int, user: str, password: str) -> tuple[mqtt.Client, ReasonCode | None]:
    done = threading.Event()
    result: dict[str, object] = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.monotonic_ns()}")
    c.username_pw_set(user, password)

    def on_connect(client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
        result["rc"] = rc
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(5)
    return c, result.get("rc")  # type: ignore[return-value]


def test_mosquitto_hash_round_trips() -> None:
    stored = mosquitto_hash("tok-123")
    assert stored.startswith("$7$101$") and verify("tok-123", stored) and not verify("tok-124", stored)


def test_device_may_publish_only_under_its_own_id(database_url: str, tmp_path: Path) -> None:
    for dev, tok in (("acl-box-a", "token-a"), ("acl-box-b", "token-b")):
        register_device(database_url, device_id=dev, kind="airbox", name=None, school=None, lat=None, lon=None,
                        sensor_type="pms5003", owner="test", token=tok)
    passwords, acl, n = write_broker_files(database_url, tmp_path / "auth", "citysense-gateway", "gw-pass")
    assert n == 2
    broker = LocalMosquitto(
        tmp_path / "mq", free_port(),
        extra_config=f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n",
    )
    broker.start()
    try:
        received: list[str] = []
        gw, rc = _client(broker.port, "citysense-gateway", "gw-pass")
        assert rc is not None and not rc.is_failure
        gw.on_message = lambda c, u, m: received.append(m.topic)
        gw.subscribe("citysense/v1/#", qos=1)
        time.sleep(0.5)
        dev_a, rc = _client(broker.port, "acl-box-a", "token-a")
        assert rc is not None and not rc.is_failure
        dev_a.publish("citysense/v1/airbox/acl-box-a/up", b"own", qos=1).wait_for_publish(5)
        dev_a.publish("citysense/v1/airbox/acl-box-b/up", b"spoof", qos=1).wait_for_publish(5)
        time.sleep(1.0)
        assert received == ["citysense/v1/airbox/acl-box-a/up"]
        intruder, rc = _client(broker.port, "acl-box-a", "wrong-token")
        assert rc is None or rc.is_failure
        for c in (gw, dev_a, intruder):
            c.loop_stop()
            c.disconnect()
    finally:
        broker.stop()


def test_device_reads_only_its_own_receipt_and_only_the_gateway_writes_receipts(
    database_url: str, tmp_path: Path
) -> None:
    for dev, tok in (("rcpt-box-a", "token-a"), ("rcpt-box-b", "token-b")):
        register_device(database_url, device_id=dev, kind="airbox", name=None, school=None, lat=None, lon=None,
                        sensor_type="pms5003", owner="test", token=tok)
    passwords, acl, _ = write_broker_files(database_url, tmp_path / "auth", "citysense-gateway", "gw-pass")
    broker = LocalMosquitto(
        tmp_path / "mq", free_port(),
        extra_config=f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n",
    )
    broker.start()
    clients: list[mqtt.Client] = []

    def connect(user: str, password: str, *subscriptions: str) -> tuple[mqtt.Client, list[tuple[str, bytes]]]:
        c, rc = _client(broker.port, user, password)
        assert rc is not None and not rc.is_failure
        seen: list[tuple[str, bytes]] = []
        c.on_message = lambda cl, u, m: seen.append((m.topic, bytes(m.payload)))
        for topic in subscriptions:
            c.subscribe(topic, qos=1)
        clients.append(c)
        return c, seen

    receipt_a, receipt_b = "citysense/v1/airbox/rcpt-box-a/receipt", "citysense/v1/airbox/rcpt-box-b/receipt"
    try:
        _, seen_a = connect("rcpt-box-a", "token-a", receipt_a)
        _, seen_b = connect("rcpt-box-b", "token-b", receipt_b)
        _, snooped = connect("rcpt-box-b", "token-b", receipt_a, "citysense/v1/+/+/receipt")  # b reads a's?
        time.sleep(0.5)
        gw, _ = connect("citysense-gateway", "gw-pass")
        for topic in (receipt_a, receipt_b):
            gw.publish(topic, b'{"seq":7}', qos=1, retain=True).wait_for_publish(5)
        # a device may not forge a receipt, for another device or for itself; one client per attempt
        # and QoS 0, since Mosquitto 2.0.11 answers a denied QoS 1 publish with a v5 reason code in
        # a 3.1.1 PUBACK (paho hangs up) and may drop the connection of a client that was refused
        for topic in (receipt_b, receipt_a):
            forger, _ = connect("rcpt-box-a", "token-a")
            assert forger.is_connected()
            forger.publish(topic, b'{"seq":999}', qos=0).wait_for_publish(5)
        time.sleep(1.0)
        assert seen_a == [(receipt_a, b'{"seq":7}')]
        assert seen_b == [(receipt_b, b'{"seq":7}')]
        assert snooped == [(receipt_b, b'{"seq":7}')]  # its own, through the wildcard; never a's
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        broker.stop()


@pytest.mark.parametrize("bad", ["Upper", "a", "x" * 65, "has space"])
def test_registration_refuses_bad_ids(database_url: str, bad: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        register_device(database_url, device_id=bad, kind="airbox", name=None, school=None, lat=None, lon=None,
                        sensor_type=None, owner=None, token="t")
