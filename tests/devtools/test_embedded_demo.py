"""The pip-only embedded default: amqtt broker + gateway on MQTT 3.1.1, and `citysense demo` itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devtools.local_broker import LocalAmqtt
from devtools.ports import free_port
from tests.conftest import REPO, count, wait_until


def test_gateway_stores_readings_through_the_amqtt_broker(
    database_url: str, start_gateway: Any, tmp_path: Path
) -> None:
    broker = LocalAmqtt(tmp_path / "amqtt", free_port())
    broker.start()
    try:
        start_gateway(broker.url, database_url, CITYSENSE_MQTT_PROTOCOL="3.1.1").wait_subscribed()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="amqtt-pub", protocol=mqtt.MQTTv311)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        now = int(time.time())
        for i in range(100):
            doc = {"v": 1, "id": "amqtt-box", "seq": i, "ts": now - 1000 + i, "m": {"pm25": 5.0 + i, "t": 20.0}}
            client.publish("citysense/v1/airbox/amqtt-box/up", orjson.dumps(doc), qos=1).wait_for_publish(10)
        client.loop_stop()
        client.disconnect()
        wait_until(lambda: count(database_url, "SELECT count(*) FROM readings") == 200, 30, what="200 readings")
    finally:
        broker.stop()


@pytest.mark.slow
def test_citysense_demo_serves_two_hundred_boxes_within_60_s(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(CITYSENSE_DATA_DIR=str(tmp_path / "data"), CITYSENSE_API_PORT=str(free_port()), PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "citysense", "demo", "--interval", "5"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        api = None
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.search(r"API\s+(http://127\.0\.0\.1:\d+)", line)
            if m:
                api = m.group(1)
                break
        assert api, "demo did not print the API URL"

        def map_full() -> bool:
            fc = httpx.get(f"{api}/v1/latest", params={"metric": "pm25"}, timeout=5).json()
            return sum(1 for f in fc["features"] if f["properties"]["value"] is not None) >= 200

        wait_until(map_full, max(1.0, 60 - (time.monotonic() - started)), interval=1.0, what=">= 200 features")
        assert httpx.get(f"{api}/v1/health", timeout=5).json()["status"] == "ok"
        print(f"demo: 200 boxes on the map after {time.monotonic() - started:.1f} s")
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, out[-2000:]
    assert "stopped." in out
