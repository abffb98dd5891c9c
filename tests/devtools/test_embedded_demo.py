"""The pip-only embedded default: amqtt broker + gateway on MQTT 3.1.1, and `citysense demo` itself."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson
import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts.topics import school_flag_topic
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


def _demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(CITYSENSE_DATA_DIR=str(tmp_path / "data"), CITYSENSE_API_PORT=str(free_port()), PYTHONPATH=str(REPO))
    return env


def _stop_demo_tree(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 90) -> str:
    """Stop the demo in every outcome: its signal first, then, if it hangs, every process it started.

    The demo's children run in sessions of their own, so killing the demo alone would leave a
    second stack running; psutil finds them by parentage before anything is killed.
    """
    tree = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out = proc.communicate(timeout=timeout)[0] or ""
    except subprocess.TimeoutExpired:
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        proc.kill()
        out = proc.communicate()[0] or ""
        pytest.fail(f"demo did not stop within {timeout:.0f} s of {signal.Signals(sig).name}: {out[-2000:]}")
    return out


def _wait_for_api(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        m = re.search(r"API\s+(http://127\.0\.0\.1:\d+)", line)
        if m:
            return m.group(1)
    pytest.fail("demo did not print the API URL:\n" + "".join(seen[-30:]))


@pytest.mark.slow
def test_citysense_demo_serves_two_hundred_boxes_within_60_s(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "citysense", "demo", "--interval", "5", "--history", "2"], env=_demo_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        api = _wait_for_api(proc)
        assert proc.stdout is not None
        banner = []
        for line in proc.stdout:
            banner.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        school_page = re.search(r"school page +(http://\S+)", "".join(banner[:2]))
        assert school_page, "the demo prints no school page after the live map"
        flag_light = re.search(r"flag light +.* --broker (\S+) --school (.+)$", "".join(banner), re.MULTILINE)
        assert flag_light, "the demo prints no flag-light command"

        def map_full() -> bool:
            fc = httpx.get(f"{api}/v1/latest", params={"metric": "pm25"}, timeout=5).json()
            return sum(1 for f in fc["features"] if f["properties"]["value"] is not None) >= 200

        wait_until(map_full, max(1.0, 60 - (time.monotonic() - started)), interval=1.0, what=">= 200 features")
        assert httpx.get(f"{api}/v1/health", timeout=5).json()["status"] == "ok"
        assert httpx.get(school_page.group(1), timeout=5).status_code == 200
        summary = httpx.get(school_page.group(1).replace("/schools/", "/v1/schools/"), timeout=10).json()
        assert summary["devices"], summary
        print(f"demo: 200 boxes on the map after {time.monotonic() - started:.1f} s")
        _assert_demo_broker_is_closed(tmp_path / "data")
        wait_until(lambda: _device_has_readings(api, "fw-airbox-01"), 30, interval=1.0,
                   what="readings of a firmware host device, logged in with its own token")
        flag = _retained_flag(flag_light.group(1), shlex.split(flag_light.group(2))[0], timeout=90)
        assert flag["school"] == shlex.split(flag_light.group(2))[0] and flag["rgb"].startswith("#"), flag
    finally:
        out = _stop_demo_tree(proc, signal.SIGINT)
    assert proc.returncode == 0, out[-2000:]
    assert "stopped." in out


def _assert_demo_broker_is_closed(data: Path) -> None:
    """The demo's Mosquitto admits no anonymous client: the simulator, the gateway and the
    firmware devices that fill the map each logged in with an account of their own."""
    conf = (data / "mosquitto" / "mosquitto.conf").read_text()
    port = re.search(r"^listener (\d+)", conf, re.MULTILINE)
    assert port is not None and "use_username_as_clientid true" in conf.splitlines()
    anonymous = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", port.group(1), "-q", "1", "-t",
         "citysense/v1/airbox/tp-school-0000/up", "-m", "{}"], check=False, capture_output=True, timeout=10,
    )
    assert anonymous.returncode != 0, "an anonymous client published to the demo broker"


def _retained_flag(broker_url: str, school: str, timeout: float) -> dict[str, Any]:
    """The school's retained flag, read on the closed broker with the display account the banner
    printed: the demo's alert evaluator set it through its own account."""
    url = urlsplit(broker_url)
    got: list[bytes] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-flag-light")
    client.username_pw_set(unquote(url.username or ""), unquote(url.password or ""))
    client.on_connect = lambda c, *_: c.subscribe(school_flag_topic(school), qos=1)
    client.on_message = lambda c, u, m: got.append(bytes(m.payload))
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()
    try:
        wait_until(lambda: bool(got), timeout, interval=0.5, what=f"the retained flag of {school}")
    finally:
        client.disconnect()
        client.loop_stop()
    flag: dict[str, Any] = json.loads(got[0])
    return flag


def _device_has_readings(api: str, device_id: str) -> bool:
    fc = httpx.get(f"{api}/v1/latest", params={"metric": "pm25"}, timeout=5).json()
    return any(f["properties"].get("device_id") == device_id and f["properties"]["value"] is not None
               for f in fc["features"])


@pytest.mark.slow
def test_demo_stops_every_child_on_sigterm_with_sigint_ignored_and_stdout_closed(tmp_path: Path) -> None:
    """As a background job of a script: SIGINT ignored, and the reader of stdout gone before SIGTERM."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child, as a shell would
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "citysense", "demo", "--interval", "5", "--airboxes", "5", "--parking", "2"],
            env=_demo_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        _wait_for_api(proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 5, [c.name() for c in children]  # broker, database, gateway, API, fleet...
        assert proc.stdout is not None
        proc.stdout.close()  # every later print of the demo meets a broken pipe
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"still running after the demo stopped: {[c.pid for c in alive]}"
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            proc.kill()
            proc.wait()
