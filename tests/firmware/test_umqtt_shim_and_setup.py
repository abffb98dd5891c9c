"""The host's umqtt.simple stand-in (exact bytes on the wire) and the WiFi setup portal."""

from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import log
import pytest
from config import Config
from umqtt.simple import MQTTClient, MQTTException, encode_remaining_length
from wifi import SetupPortal, parse_form, url_decode


class OneShotBroker:
    """Reads one CONNECT, answers with `connack`, then records what the client sends."""

    def __init__(self, connack: bytes = b"\x20\x02\x00\x00", replies: bytes = b"") -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.received = b""
        self.connack = connack
        self.replies = replies
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        conn.settimeout(2)
        with conn:
            self.received += conn.recv(4096)
            conn.sendall(self.connack)
            if self.replies:
                conn.sendall(self.replies)
            try:
                while chunk := conn.recv(4096):
                    self.received += chunk
            except OSError:
                pass


def test_remaining_length_encoding_follows_mqtt_3_1_1() -> None:
    assert encode_remaining_length(0) == b"\x00"
    assert encode_remaining_length(127) == b"\x7f"
    assert encode_remaining_length(128) == b"\x80\x01"
    assert encode_remaining_length(16383) == b"\xff\x7f"
    assert encode_remaining_length(2097152) == b"\x80\x80\x80\x01"


def test_connect_sends_will_user_and_password_exactly() -> None:
    broker = OneShotBroker()
    c = MQTTClient("dev-1", "127.0.0.1", port=broker.port, user="dev-1", password="tok", keepalive=60)
    c.set_last_will("s/t", b'{"online":false}', retain=True, qos=1)
    assert c.connect() is False
    c.disconnect()
    broker.thread.join(3)
    body = (
        b"\x00\x04MQTT\x04"
        + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02])
        + b"\x00\x3c"
        + b"\x00\x05dev-1"
        + b"\x00\x03s/t"
        + b"\x00\x10"
        + b'{"online":false}'
        + b"\x00\x05dev-1"
        + b"\x00\x03tok"
    )
    assert broker.received == b"\x10" + bytes([len(body)]) + body + b"\xe0\x00"


def test_qos1_publish_waits_for_puback() -> None:
    broker = OneShotBroker(replies=b"\x40\x02\x00\x01")
    c = MQTTClient("dev-1", "127.0.0.1", port=broker.port)
    c.connect()
    c.publish("a/b", b"hi", qos=1)
    c.disconnect()
    broker.thread.join(3)
    assert b"\x32\x09\x00\x03a/b\x00\x01hi" in broker.received


def test_refused_credentials_raise_with_the_return_code() -> None:
    broker = OneShotBroker(connack=b"\x20\x02\x00\x04")
    c = MQTTClient("dev-1", "127.0.0.1", port=broker.port, user="x", password="bad")
    with pytest.raises(MQTTException) as err:
        c.connect()
    assert err.value.args[0] == 4


def test_qos2_is_refused() -> None:
    c = MQTTClient("dev-1", "127.0.0.1")
    with pytest.raises(AssertionError):
        c.publish("a", b"b", qos=2)


def test_setup_form_parsing_decodes_urlencoding() -> None:
    assert url_decode("caf%C3%A9+wifi%21") == "café wifi!"
    fields = parse_form(b"wifi_ssid=School+WiFi&wifi_password=p%26ss&id=tp-01&mqtt_port=8883&evil=1")
    assert fields == {"wifi_ssid": "School WiFi", "wifi_password": "p&ss", "id": "tp-01", "mqtt_port": 8883}


def test_setup_portal_saves_valid_answers_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "sink", lambda line: None)
    cfg = Config(str(tmp_path / "config.json"))
    portal = SetupPortal(cfg, socket, "not configured")
    stop = threading.Event()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(done=portal.serve(port=0, stop=stop.is_set)))
    thread.start()
    try:
        for _ in range(100):
            if hasattr(portal, "port"):
                break
            threading.Event().wait(0.02)
        url = f"http://127.0.0.1:{portal.port}/"
        page = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "citysense setup" in page and "not configured" in page
        bad = urllib.parse.urlencode({"wifi_ssid": "net", "id": "Bad Id", "mqtt_host": "b"}).encode()
        try:
            urllib.request.urlopen(url, data=bad, timeout=5)
            raise AssertionError("expected 400")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400 and "must match" in exc.read().decode()
        good = urllib.parse.urlencode(
            {
                "wifi_ssid": "net",
                "wifi_password": "pw",
                "id": "tp-01",
                "mqtt_host": "b.example",
                "mqtt_port": "1883",
                "mqtt_password": "tok",
            }
        ).encode()
        assert "Saved" in urllib.request.urlopen(url, data=good, timeout=5).read().decode()
    finally:
        stop.set()
        thread.join(5)
    assert result["done"] is True
    again = Config(str(tmp_path / "config.json"))
    assert again.is_provisioned() and again["mqtt_password"] == "tok"


def test_check_msg_delivers_subscribed_messages_from_a_real_broker(mosquitto: Any) -> None:
    """As umqtt.simple: retained messages arrive while subscribe() waits, live ones through check_msg()."""
    import time

    import paho.mqtt.client as mqtt

    other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    other.connect(mosquitto.host, mosquitto.port)
    other.loop_start()
    other.publish("citysense/v1/airbox/shim-01/receipt", b'{"seq":3}', qos=1, retain=True).wait_for_publish(5)
    got: list[tuple[bytes, bytes]] = []
    c = MQTTClient("shim-01", mosquitto.host, port=mosquitto.port, keepalive=30)
    c.set_callback(lambda topic, msg: got.append((topic, msg)))
    c.connect()
    c.subscribe("citysense/v1/airbox/shim-01/receipt", qos=1)
    other.publish("citysense/v1/airbox/shim-01/receipt", b'{"seq":4}', qos=1).wait_for_publish(5)
    end = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < end:
        c.check_msg()
        time.sleep(0.02)
    c.disconnect()
    other.loop_stop()
    other.disconnect()
    topic = b"citysense/v1/airbox/shim-01/receipt"
    assert got == [(topic, b'{"seq":3}'), (topic, b'{"seq":4}')]
