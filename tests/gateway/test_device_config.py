"""The server's retained config message reaches a device subscribing later."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.device_config import parse_assignments, publish_config


def test_retained_config_is_delivered_to_a_device_that_connects_later(mosquitto: Any) -> None:
    topic = publish_config(mosquitto.url, "airbox", "cfg-box-01", 3, {"interval_s": 120})
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cfg-box-01")

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        done.set()

    c.on_message = on_message
    c.connect("127.0.0.1", mosquitto.port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    assert done.wait(5)
    c.loop_stop()
    c.disconnect()
    assert orjson.loads(got[0]) == {"version": 3, "interval_s": 120}


@pytest.mark.parametrize(
    ("pairs", "fragment"),
    [(["interval_s"], "not key=value"), (["wifi_ssid=x"], "cannot be set remotely"), (["interval_s=ten"], "integer")],
)
def test_bad_config_assignments_are_refused(pairs: list[str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_assignments(pairs)
