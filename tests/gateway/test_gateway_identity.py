"""Each gateway replica is its own broker account and session: no device can take it over.

Real gateway processes against a closed Mosquitto (the production listener: accounts, ACL,
use_username_as_clientid) and PostgreSQL; rows are counted exactly.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from contracts.ids import RESERVED_ID_PREFIX
from ingest.device_store import DeviceFields, register_devices
from tests.conftest import StartClosedBroker, wait_until
from tests.fault_tools import (
    METRICS_PER_MESSAGE,
    BackgroundPublisher,
    Credentials,
    distinct_readings,
    message_count,
    publish,
    readings,
    v1_stream,
)

GATEWAYS = {"citysense-gateway-1": "gw-1-pass", "citysense-gateway-2": "gw-2-pass"}


def _register_stream_devices(database_url: str, stream: dict[str, list[bytes]], *extra: str) -> Credentials:
    """Register the device of every topic (and `extra` ids); topic (or id) -> its login."""
    ids = [topic.split("/")[3] for topic in stream] + list(extra)
    done = register_devices(database_url, [(d, DeviceFields(kind="airbox", owner="test")) for d in ids])
    logins = {reg.device_id: (reg.device_id, token) for reg, token in done}
    return {**{topic: logins[topic.split("/")[3]] for topic in stream}, **{d: logins[d] for d in extra}}


def _start_gateway(start_gateway: Any, broker: Any, database_url: str, account: str, **extra: str) -> Any:
    return start_gateway(
        broker.url_for(account, GATEWAYS[account]), database_url, CITYSENSE_MQTT_CLIENT_ID=account,
        CITYSENSE_ACCEPT_UNKNOWN_DEVICES="false", **extra,
    )


class SessionThief:
    """A registered device with its own valid token that connects once a second with the
    gateway's client id, counting the connections the broker accepted."""

    def __init__(self, port: int, login: tuple[str, str], client_id: str) -> None:
        self.port, self.login, self.client_id = port, login, client_id
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _attempt(self) -> None:
        connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.username_pw_set(*self.login)

        def on_connect(c: mqtt.Client, u: object, flags: object, rc: ReasonCode, props: object) -> None:
            if not rc.is_failure:
                self.accepted += 1
            connected.set()

        client.on_connect = on_connect
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        connected.wait(3)
        client.loop_stop()
        client.disconnect()

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self._attempt()
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


@pytest.mark.slow
def test_a_device_using_the_gateways_client_id_cannot_take_its_session(
    closed_mosquitto: StartClosedBroker, database_url: str, start_gateway: Any
) -> None:
    """While a registered device connects every second for ~20 s with the gateway's client id,
    a 2,000-message stream published meanwhile is stored exactly, and the gateway's session
    is never broken (one connection in its log).

    On an open broker the same attack evicted the gateway 13 times and lost 194 of 2,000."""
    stream = v1_stream(devices=20, per_device=100, prefix="tk")
    logins = _register_stream_devices(database_url, stream, "tk-thief")
    broker = closed_mosquitto(database_url, {"citysense-gateway-1": GATEWAYS["citysense-gateway-1"]}, ())
    gw = _start_gateway(start_gateway, broker, database_url, "citysense-gateway-1").wait_subscribed()
    thief = SessionThief(broker.port, logins["tk-thief"], "citysense-gateway-1")
    thief.thread.start()
    started = time.monotonic()
    publisher = BackgroundPublisher(broker.port, stream, chunks=10, pause_s=1.8, credentials=logins).start()
    publisher.join()
    expected = message_count(stream) * METRICS_PER_MESSAGE
    wait_until(lambda: readings(database_url) >= expected, 60, interval=0.2, what=f"{expected} rows")
    thief.stop.wait(max(0.0, 20.0 - (time.monotonic() - started)))
    thief.stop.set()
    thief.thread.join(10)
    time.sleep(1.0)  # a late duplicate, or a reconnection, would show now
    print(f"{thief.accepted} takeover attempts accepted as the device itself over "
          f"{time.monotonic() - started:.0f} s; {readings(database_url)}/{expected} rows")
    assert thief.accepted >= 15, "the thief did not get in: the test proves nothing"
    assert readings(database_url) == expected
    assert distinct_readings(database_url) == expected
    assert gw.log().count("event=mqtt_connected") == 1, "the gateway's session was broken"
    assert gw.alive()


def test_two_gateway_accounts_each_keep_their_own_persistent_session(
    closed_mosquitto: StartClosedBroker, database_url: str, start_gateway: Any
) -> None:
    """Two replicas on a shared subscription, each its own account: both stop, a stream is
    queued for them, both come back to their own session and the stream is stored exactly."""
    stream = v1_stream(devices=10, per_device=100, prefix="tg")
    logins = _register_stream_devices(database_url, stream)
    broker = closed_mosquitto(database_url, GATEWAYS, ())
    extra = {"CITYSENSE_MQTT_SHARED_GROUP": "citysense"}
    gateways = [_start_gateway(start_gateway, broker, database_url, a, **extra).wait_subscribed() for a in GATEWAYS]
    for gw in gateways:
        assert gw.terminate() == 0
    publish(broker.port, stream, credentials=logins)
    gateways = [_start_gateway(start_gateway, broker, database_url, a, **extra) for a in GATEWAYS]
    expected = message_count(stream) * METRICS_PER_MESSAGE
    wait_until(lambda: readings(database_url) >= expected, 60, interval=0.2, what=f"{expected} rows")
    time.sleep(1.0)
    assert readings(database_url) == distinct_readings(database_url) == expected
    for gw in gateways:
        assert "session_present=True" in gw.log(), gw.log()[-2000:]
        assert gw.log().count("event=mqtt_connected") == 1


def test_a_topic_naming_a_reserved_id_is_dead_lettered_with_the_reason(
    mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    """On an open broker anyone may publish as `citysense-gateway-1`; the gateway refuses to
    make it a device (open mode would otherwise register it)."""
    gw = start_gateway(mosquitto.url, database_url)
    gw.wait_subscribed()
    device = f"{RESERVED_ID_PREFIX}gateway-1"
    payload = orjson.dumps({"v": 1, "id": device, "seq": 1, "ts": int(time.time()), "m": {"pm25": 7}})
    publish(mosquitto.port, {f"citysense/v1/airbox/{device}/up": [payload]})
    wait_until(lambda: readings_or_letters(database_url) > 0, 20, what="the message handled")
    with psycopg.connect(database_url) as conn:
        reasons = [r[0] for r in conn.execute("SELECT reason FROM rejected_messages")]
        devices = conn.execute("SELECT count(*) FROM devices WHERE device_id = %s", (device,)).fetchone()
    assert len(reasons) == 1 and "reserved for gateway and operator broker accounts" in reasons[0], reasons
    assert devices == (0,)
    assert readings(database_url) == 0


def readings_or_letters(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM readings) + (SELECT count(*) FROM rejected_messages)")
        found = row.fetchone()
    return int(found[0]) if found else 0
